"""``python -m reference_services up|status|down|demo``: run the boutique locally.

- ``demo``: start everything in the foreground, print the URLs, stop it all on
  Ctrl-C or SIGTERM (what ``make demo`` runs);
- ``up``: start everything in the background and record it under the data dir;
- ``status``: show each recorded process, alive and healthy or not;
- ``down``: stop what ``up`` started.
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
    print_urls,
    read_state,
    recorded_processes,
    stop_order,
    wait_or_kill,
    write_state,
)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m reference_services", description=__doc__.split("\n")[0]
    )
    p.add_argument("command", choices=["up", "status", "down", "demo"])
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


def _started(boutique: Boutique) -> None:
    print("The boutique is running:")
    print_urls(boutique.urls(), sys.stdout)
    print(f"  logs  {boutique.data_dir / 'logs'}")
    if not boutique.with_collector:
        print("  (no trace viewer: clue.collector is not importable; telemetry stays local)")
    sys.stdout.flush()


def demo(args: argparse.Namespace) -> int:
    """Run in the foreground until Ctrl-C or SIGTERM."""
    boutique = _boutique(args)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        print("Starting the boutique...", flush=True)
        boutique.start()
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
    print("Stopped.")
    return 0


def up(args: argparse.Namespace) -> int:
    """Start in the background and record the processes."""
    state = read_state(args.data_dir)
    if state and any(alive(p.pid) for p in recorded_processes(state)):
        print(f"already up (see {args.data_dir / STATE_FILE}); run `down` first", file=sys.stderr)
        return 1
    boutique = _boutique(args)
    try:
        boutique.start()
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
    print(f"{'process':<16}{'pid':>8}{'port':>7}{'admin':>7}  state")
    for proc in recorded_processes(state):
        running = alive(proc.pid)
        ok = running and is_healthy(proc)
        healthy &= ok
        label = "healthy" if ok else ("running, not healthy" if running else "stopped")
        print(f"{proc.name:<16}{proc.pid:>8}{proc.port:>7}{proc.admin_port:>7}  {label}")
    print_urls([tuple(pair) for pair in state["urls"]], sys.stdout)
    return 0 if healthy else 1


def down(args: argparse.Namespace) -> int:
    """Stop what ``up`` started, frontend first, viewer last."""
    state = read_state(args.data_dir)
    if state is None:
        print("not up")
        return 0
    recorded = {proc.name: proc for proc in recorded_processes(state)}
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
    (Path(args.data_dir) / STATE_FILE).unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    command = {"up": up, "status": status, "down": down, "demo": demo}[args.command]
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
