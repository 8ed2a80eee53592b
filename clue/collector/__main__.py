"""``clue-collector`` / ``python -m clue.collector``: run the local collector and viewer."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from clue.collector.config import config_from_args
from clue.collector.server import Collector


def main(argv: list[str] | None = None) -> int:
    """Start the collector, print where it listens, run until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="clue-collector: %(message)s")
    config = config_from_args(argv)
    try:
        collector = Collector(config)
    except (OSError, ValueError) as exc:
        print(f"clue-collector: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    collector.start()
    print(
        f"clue-collector: OTLP gRPC on {config.otlp_host}:{collector.grpc_port}, "
        f"OTLP HTTP on {config.otlp_host}:{collector.http_port}, "
        f"UI on {collector.ui_url} (local development viewer)",
        flush=True,
    )
    stop.wait()
    collector.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
