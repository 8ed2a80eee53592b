"""SIGTERM to exit of a service whose collector is a black hole (bounded shutdown).

A real process with ``configure(handle_sigterm=True)`` and 50 spans, 50 log
records and a counter queued exports over OTLP/gRPC or OTLP/HTTP to a server
that accepts connections and never answers. Measured here: from the signal to
the exit, three rounds per protocol.

Goal: core.shutdown_blackhole_s, the slowest round of both protocols, at most
2 s (the default shutdown bound). Info: the same with the collector's port
closed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _goal import goal, info

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
SERVICE = textwrap.dedent(
    """
    import sys, time
    import clue
    from clue import log, telemetry
    from opentelemetry import trace

    log.configure(outputs=[log.Output(sys.stderr)])
    clue.configure("bench-shutdown", handle_sigterm=True)
    for i in range(50):
        with trace.get_tracer("bench").start_as_current_span(f"span-{i}"):
            log.info("handled", i=i)
    telemetry.meter("bench").create_counter("handled").add(50)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def black_hole() -> int:
    """Start a server that accepts connections and never answers; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sigterm_to_exit(script: Path, protocol: str, port: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        OTEL_TRACES_SAMPLER="always_on",
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise SystemExit("the service did not start")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    return time.monotonic() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "service.py"
        script.write_text(SERVICE)
        hole = black_hole()
        worst: dict[str, float] = {}
        for protocol in ("grpc", "http/protobuf"):
            rounds = [sigterm_to_exit(script, protocol, hole) for _ in range(ROUNDS)]
            closed = max(sigterm_to_exit(script, protocol, closed_port()) for _ in range(ROUNDS))
            worst[protocol] = max(rounds)
            info(
                f"core.shutdown_{protocol.split('/')[0]}",
                blackhole_s=max(rounds),
                closed_port_s=closed,
            )
    goal("core.shutdown_blackhole_s", max(worst.values()), "<=", 2.0)


if __name__ == "__main__":
    main()
