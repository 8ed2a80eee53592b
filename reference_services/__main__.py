"""``python -m reference_services up|status|down|demo|events``: run the boutique locally.

- ``demo``: start everything in the foreground, print the addresses, stop it all
  on Ctrl-C or SIGTERM (what ``make demo`` runs);
- ``up``: start everything in the background;
- ``status``: show each process of a running ``up`` or ``demo``, healthy or not;
- ``down``: stop what ``up`` or ``demo`` started;
- ``events list-dead-letters|replay-dead-letters``: the consumers' dead letters
  (see `reference_services.dead_letters`).

Both record the running boutique in ``state.json`` under the data dir.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from reference_services.launcher import (
    DEFAULT_BASE_PORT,
    DEFAULT_DATA_DIR,
    STATE_FILE,
    STOP_GRACE,
    Boutique,
    LaunchError,
    alive,
    is_healthy,
    print_columns,
    print_running,
    read_state,
    recorded_processes,
    still_up,
    stop_order,
    terminate,
    wait_or_kill,
    write_state,
)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m reference_services", description=__doc__.split("\n")[0]
    )
    p.add_argument("command", choices=["up", "status", "down", "demo", "events"])
    p.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="logs, SQLite files, state"
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="first port of the plan: each service takes two (0: any free ports)",
    )
    p.add_argument(
        "--no-collector", action="store_true", help="do not start the local trace viewer"
    )
    return p


def _boutique(args: argparse.Namespace) -> Boutique:
    return Boutique(
        args.data_dir, base_port=args.base_port, collector=False if args.no_collector else None
    )


def _already_up(data_dir: Path) -> bool:
    """Whether a boutique recorded under ``data_dir`` still runs (then say so)."""
    state = read_state(data_dir)
    if state and still_up(state):
        print(f"already up (see {data_dir / STATE_FILE}); run `down` first", file=sys.stderr)
        return True
    return False


def _progress(step: str) -> None:
    print(f"  {step}", flush=True)


def _started(boutique: Boutique) -> None:
    print("The boutique is running:")
    print_running(boutique.state(), sys.stdout)
    if not boutique.with_collector:
        print("  (no trace viewer: clue.collector is not importable; telemetry stays local)")
    sys.stdout.flush()


def demo(args: argparse.Namespace) -> int:
    """Run in the foreground until Ctrl-C or SIGTERM (or `down`)."""
    if _already_up(args.data_dir):
        return 1
    boutique = _boutique(args)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        print("Starting the boutique...", flush=True)
        boutique.start(_progress)
        write_state(boutique, launcher=os.getpid())
        _started(boutique)
        print("Press Ctrl-C to stop.", flush=True)
        reported: set[str] = set()
        while True:
            time.sleep(0.5)
            for name in boutique.processes:
                child = boutique.child(name)
                if child is not None and child.poll() is not None and name not in reported:
                    reported.add(name)
                    print(f"! {name} exited with code {child.returncode}", flush=True)
    except KeyboardInterrupt:
        print("\nStopping the boutique...", flush=True)
    except LaunchError as error:
        print(f"the boutique did not start: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        boutique.stop()
        recorded = read_state(args.data_dir)
        if recorded and recorded.get("launcher") == os.getpid():
            (args.data_dir / STATE_FILE).unlink()
    print("Stopped.")
    return 0


def up(args: argparse.Namespace) -> int:
    """Start in the background and record the processes."""
    if _already_up(args.data_dir):
        return 1
    boutique = _boutique(args)
    try:
        boutique.start(_progress)
    except LaunchError as error:
        print(f"the boutique did not start: {error}", file=sys.stderr)
        return 1
    write_state(boutique)
    _started(boutique)
    return 0


def status(args: argparse.Namespace) -> int:
    """Print each recorded process; 0 when all are alive and healthy."""
    state = read_state(args.data_dir)
    if state is None:
        print("not up")
        return 3
    healthy = True
    launcher = state.get("launcher")
    if launcher:
        print(f"demo (pid {launcher}) {'running' if alive(launcher) else 'gone'}")
    rows = [("process", "pid", "gRPC", "admin", "state")]
    for proc in recorded_processes(state):
        live = alive(proc.pid)
        ok = live and is_healthy(proc)
        healthy &= ok
        label = "healthy" if ok else ("running, not healthy" if live else "stopped")
        rows.append((proc.name, str(proc.pid), proc.grpc_address, proc.admin_url, label))
    print_columns(rows, sys.stdout, indent="")
    print_columns(state["urls"], sys.stdout)
    return 0 if healthy else 1


def down(args: argparse.Namespace) -> int:
    """Stop what ``up`` or ``demo`` started, frontend first, viewer last (a demo's
    launcher is asked to: SIGTERM, as Ctrl-C)."""
    state = read_state(args.data_dir)
    if state is None:
        print("not up")
        return 0
    recorded = {proc.name: proc for proc in recorded_processes(state)}
    launcher = state.get("launcher")
    if launcher and alive(launcher):
        was_up = [p for p in recorded.values() if alive(p.pid)]
        terminate(launcher, STOP_GRACE * (len(stop_order()) + 1))
        print(f"stopped the demo (pid {launcher})")
        for proc in was_up:
            if not alive(proc.pid):
                print(f"stopped {proc.name} (pid {proc.pid})")
    for group in stop_order():
        running = [
            recorded[name] for name in group if name in recorded and alive(recorded[name].pid)
        ]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for proc in running:
            wait_or_kill(proc.pid, STOP_GRACE)
            print(f"stopped {proc.name} (pid {proc.pid})")
    (Path(args.data_dir) / STATE_FILE).unlink(missing_ok=True)  # a demo removes its own
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["events"]:  # its own command line, read by the module
        from reference_services.dead_letters import main as events

        return events(argv[1:])
    args = parser().parse_args(argv)
    command = {"up": up, "status": status, "down": down, "demo": demo}[args.command]
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
