"""``python -m reference_services.loadgen --users N --duration S --host URL [--mix M]``.

Runs Locust headless for a bounded time and prints, per page, the request
rate, failures and p50/p95/p99 latency (``--json PATH`` also writes them).
The mix is the upstream-style anonymous visitors, visitors with accounts, or
both, half and half.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
from locust import User  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.stats import StatsEntry  # noqa: E402

from reference_services.loadgen.accounts import AccountVisitor  # noqa: E402
from reference_services.loadgen.visitor import Visitor  # noqa: E402

PAGES = (
    *("home", "sign up page", "sign up", "account", "log out", "log in page", "log in"),
    *("product", "cart", "add to cart", "set currency", "checkout", "orders", "order", "cancel"),
)
MIXES: dict[str, list[type[User]]] = {
    "upstream": [Visitor],
    "accounts": [AccountVisitor],
    "both": [Visitor, AccountVisitor],
}


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def _shop_url(text: str) -> str:
    """``http(s)://host[:port]`` without a path: the shop to load."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http(s) URL such as http://127.0.0.1:18018"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"{text!r} must be the shop's root URL, without a path")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return f"{parts.scheme}://{netloc}"


def reachable(host: str, timeout: float = 5.0) -> str | None:
    """None when the shop answers its ``/_healthz``, else why not."""
    try:
        response = requests.get(f"{host}/_healthz", timeout=timeout)
    except requests.RequestException as error:
        return f"cannot reach {host}/_healthz ({type(error).__name__}): is the shop running?"
    if response.status_code != 200:
        return f"{host}/_healthz answered {response.status_code}, not 200"
    return None


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m reference_services.loadgen")
    p.add_argument("--users", type=_positive(int), default=10, help="simulated visitors")
    p.add_argument("--duration", type=_positive(float), default=60.0, help="seconds of load")
    p.add_argument(
        "--host", type=_shop_url, required=True, help="the shop, e.g. http://127.0.0.1:18018"
    )
    p.add_argument("--spawn-rate", type=_positive(float), default=10.0, help="visitors/second")
    p.add_argument(
        "--mix",
        choices=sorted(MIXES),
        default="upstream",
        help="anonymous visitors as upstream's, visitors with accounts, or both",
    )
    p.add_argument("--json", type=Path, help="also write the summary as JSON here")
    return p


def summarise(entry: StatsEntry, seconds: float) -> dict[str, float]:
    """Rate, failures and latency percentiles (ms) of one page."""
    count = entry.num_requests
    return {
        "requests": count,
        "failures": entry.num_failures,
        "rps": count / seconds if seconds else 0.0,
        "error_rate": entry.num_failures / count if count else 0.0,
        "p50_ms": entry.get_response_time_percentile(0.50) if count else 0.0,
        "p95_ms": entry.get_response_time_percentile(0.95) if count else 0.0,
        "p99_ms": entry.get_response_time_percentile(0.99) if count else 0.0,
    }


def run(
    users: int, duration: float, host: str, spawn_rate: float, mix: str = "upstream"
) -> dict[str, Any]:
    """Load the shop with ``mix``'s visitors and return the summary: per page and ``total``."""
    env = Environment(user_classes=MIXES[mix], host=host.rstrip("/"))
    runner = env.create_local_runner()
    started = time.monotonic()
    runner.start(users, spawn_rate=spawn_rate)
    gevent.spawn_later(duration, runner.quit)
    runner.greenlet.join()
    seconds = time.monotonic() - started
    pages = {
        name: summarise(entry, seconds)
        for (name, _method), entry in sorted(env.stats.entries.items())
    }
    errors = {f"{e.method} {e.name}: {e.error}": e.occurrences for e in env.stats.errors.values()}
    return {
        "users": users,
        "mix": mix,
        "seconds": round(seconds, 2),
        "pages": pages,
        "total": summarise(env.stats.total, seconds),
        "errors": errors,
    }


def render(summary: dict[str, Any]) -> str:
    """The printed table."""
    lines = [
        f"{summary['users']} visitors ({summary['mix']} mix) for {summary['seconds']} s",
        f"{'page':<14}{'requests':>9}{'fails':>7}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
    ]
    rows = [(name, summary["pages"][name]) for name in PAGES if name in summary["pages"]]
    rows += [(name, s) for name, s in summary["pages"].items() if name not in PAGES]
    for name, s in [*rows, ("total", summary["total"])]:
        lines.append(
            f"{name:<14}{s['requests']:>9}{s['failures']:>7}{s['rps']:>8.2f}"
            f"{s['p50_ms']:>9.0f}{s['p95_ms']:>9.0f}{s['p99_ms']:>9.0f}"
        )
    total = summary["total"]
    lines.append(
        f"{total['rps']:.2f} requests/s, {total['error_rate']:.2%} failed, "
        f"p50 {total['p50_ms']:.0f} ms, p95 {total['p95_ms']:.0f} ms, p99 {total['p99_ms']:.0f} ms"
    )
    for error, count in summary["errors"].items():
        lines.append(f"error x{count}: {error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when no request failed, 1 otherwise, 2 on bad arguments or an
    unreachable shop."""
    args = parser().parse_args(argv)
    problem = reachable(args.host)
    if problem is not None:
        print(f"loadgen: {problem}", file=sys.stderr)
        return 2
    summary = run(args.users, args.duration, args.host, args.spawn_rate, args.mix)
    print(render(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["total"]["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
