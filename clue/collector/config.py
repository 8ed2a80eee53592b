"""Settings of the local collector and the parsing of its command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

# ASCII digits only: \d alone would also take other scripts' digits (Arabic-Indic ones).
_DURATION = re.compile(r"^\s*([0-9]{1,20}(?:\.[0-9]{1,9})?)\s*(ns|us|µs|ms|s|m|h|d)?\s*$")
_DURATION_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_SIZE = re.compile(r"^\s*([0-9]{1,15})\s*(b|kib|kb|k|mib|mb|m|gib|gb|g)?\s*$", re.IGNORECASE)
_SIZE_BYTES = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20}
_SIZE_BYTES |= {"mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}
MAX_DURATION_NS = 36_500 * _DURATION_NS["d"]  # 100 years: any time minus it fits in 64 bits
MAX_REQUEST_BYTES = 2**31 - 1  # gRPC's largest message (sizes are signed 32-bit)


def parse_duration_ns(text: str, default_unit: str = "s") -> int:
    """Parse ``250ms``, ``1.5s``, ``15m``, ``2h``, ``7d`` (bare numbers use *default_unit*),
    at most 36500d (100 years)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{quote(text)} is not a duration (examples: 250ms, 1.5s, 15m, 2h, 7d)")
    unit = match.group(2) or default_unit
    ns = int(Decimal(match.group(1)) * _DURATION_NS[unit])
    if ns > MAX_DURATION_NS:
        raise ValueError(f"{quote(text)} is longer than 36500d (100 years)")
    return ns


def quote(text: str, most: int = 40) -> str:
    """*text* quoted for a message: whole when short, else a prefix and its length."""
    if len(text) <= most:
        return repr(text)
    return f"{text[:most]!r}... ({len(text)} characters)"


def parse_size(text: str) -> int:
    """Parse a byte size such as ``4194304``, ``512KiB`` or ``4MiB``."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{quote(text)} is not a size (examples: 65536, 512KiB, 4MiB)")
    return int(match.group(1)) * _SIZE_BYTES[(match.group(2) or "b").lower()]


@dataclass(frozen=True)
class Config:
    """Everything the collector needs to run; every field has a working default."""

    grpc_port: int = 4317
    http_port: int = 4318
    ui_port: int = 16686
    otlp_host: str = "127.0.0.1"
    ui_host: str = "127.0.0.1"
    db: str = ":memory:"
    max_spans: int = 100_000
    max_logs: int = 100_000
    max_points: int = 200_000
    max_age_ns: int = 24 * 3_600_000_000_000
    max_request_bytes: int = 16 << 20
    forward: str | None = None
    forward_queue: int = 256

    def __post_init__(self) -> None:
        for name in ("grpc_port", "http_port", "ui_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535, got {port}")
        for name in ("max_spans", "max_logs", "max_points", "max_age_ns", "max_request_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        upper = {"max_request_bytes": MAX_REQUEST_BYTES, "max_age_ns": MAX_DURATION_NS}
        for name, most in upper.items():
            if getattr(self, name) > most:
                raise ValueError(f"{name} must be at most {most}, got {getattr(self, name)}")
        if self.forward_queue <= 0:
            raise ValueError(f"forward_queue must be positive, got {self.forward_queue}")


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"\s*[0-9]{1,18}\s*", text):
        raise argparse.ArgumentTypeError(f"{quote(text)} is not an integer below 10**18")
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _port(text: str) -> int:
    if not re.fullmatch(r"\s*[0-9]{1,5}\s*", text) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a port between 0 and 65535")
    return int(text)


def _request_size(text: str) -> int:
    size = parse_size(text)
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"{quote(text)} is above gRPC's largest message, 2GiB - 1 byte")
    return size


def _converted(parse: Callable[[str], int]) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def argument_parser() -> argparse.ArgumentParser:
    """The ``clue-collector`` command line."""
    p = argparse.ArgumentParser(
        prog="clue-collector",
        description="Local OTLP collector and trace viewer for development "
        "(production: point exporters at a real OpenTelemetry Collector).",
    )
    d = Config()
    p.add_argument("--grpc-port", type=_port, default=d.grpc_port, help="OTLP/gRPC port (0: any)")
    p.add_argument("--http-port", type=_port, default=d.http_port, help="OTLP/HTTP port (0: any)")
    p.add_argument("--ui-port", type=_port, default=d.ui_port, help="web UI and /api port (0: any)")
    p.add_argument("--otlp-host", default=d.otlp_host, help="address the OTLP receivers bind to")
    p.add_argument("--ui-host", default=d.ui_host, help="address the web UI binds to")
    p.add_argument("--db", default=d.db, help="SQLite file (default: in memory)")
    p.add_argument("--max-spans", type=_positive_int, default=d.max_spans)
    p.add_argument("--max-logs", type=_positive_int, default=d.max_logs)
    p.add_argument("--max-points", type=_positive_int, default=d.max_points)
    p.add_argument(
        "--max-age", type=_converted(parse_duration_ns), default="24h", help="e.g. 30m, 24h, 7d"
    )
    p.add_argument(
        "--max-request-size",
        type=_converted(_request_size),
        default="16MiB",
        help="largest accepted OTLP request, e.g. 4MiB",
    )
    p.add_argument("--forward", metavar="HOST:PORT", help="also send everything to this OTLP/gRPC")
    p.add_argument("--forward-queue", type=_positive_int, default=d.forward_queue)
    return p


def config_from_args(argv: list[str] | None = None) -> Config:
    """Parse *argv* (default ``sys.argv[1:]``) into a :class:`Config`."""
    ns = argument_parser().parse_args(argv)
    return Config(
        grpc_port=ns.grpc_port,
        http_port=ns.http_port,
        ui_port=ns.ui_port,
        otlp_host=ns.otlp_host,
        ui_host=ns.ui_host,
        db=ns.db,
        max_spans=ns.max_spans,
        max_logs=ns.max_logs,
        max_points=ns.max_points,
        max_age_ns=ns.max_age,
        max_request_bytes=ns.max_request_size,
        forward=ns.forward,
        forward_queue=ns.forward_queue,
    )
