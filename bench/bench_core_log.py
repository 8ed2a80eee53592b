"""clue.log per-call cost against structlog's fast configuration and stdlib logging.

Goals (ratios measured in the same run):
- core.log_buffered_info: a buffered ``log.info`` inside a request scope, at most
  0.1x structlog's written call (rendering is deferred to the flush);
- core.log_written_info: a written ``log.info`` (JSON to a null sink), at most 1.0x
  structlog's written call (JSON to the same sink, cached filtering bound logger);
- core.log_filtered_debug: ``log.debug`` with debug off, at most 1.5x stdlib's
  filtered ``logger.debug``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).parent))
from _goal import goal

from clue import log

N = 20_000
REPEAT = 15


class NullSink:
    """A text stream that discards everything (isolates the logging cost from I/O)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


Call = tuple[Callable[[], None], int, contextvars.Context]


def best_per_call_us(calls: dict[str, Call]) -> dict[str, float]:
    """Best cost of one call of each function, in microseconds.

    The functions are timed in interleaved rounds so that a burst of load on
    the machine hits baseline and candidate alike; each runs its loop inside
    its own context (so one of them can run inside a request scope).
    """
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(REPEAT):
        for name, (fn, number, ctx) in calls.items():
            seconds = ctx.run(timeit.timeit, fn, number=number)
            best[name] = min(best[name], seconds / number * 1e6)
    return best


def main() -> None:
    sink = NullSink()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    slog = structlog.get_logger().bind()  # the concrete bound logger: no proxy lookup per call
    std = logging.getLogger("bench.stdlib")
    std.setLevel(logging.INFO)
    log.configure(outputs=[log.Output(sink, "json")], debug=False, stdlib=False)

    plain = contextvars.copy_context()
    in_scope = contextvars.copy_context()
    in_scope.run(log.request_scope(request_id="r1").__enter__)
    best = best_per_call_us(
        {
            "structlog_written": (lambda: slog.info("hello", user="ana", items=3), N, plain),
            "clue_written": (lambda: log.info("hello", user="ana", items=3), N, plain),
            "clue_buffered": (lambda: log.info("hello", user="ana", items=3), N, in_scope),
            "stdlib_filtered": (lambda: std.debug("hello %s %d", "ana", 3), N * 10, plain),
            "clue_filtered": (lambda: log.debug("hello", user="ana", items=3), N * 10, plain),
        }
    )
    structlog_written, clue_written = best["structlog_written"], best["clue_written"]
    clue_buffered = best["clue_buffered"]
    std_filtered, clue_filtered = best["stdlib_filtered"], best["clue_filtered"]

    print(f"structlog written info     {structlog_written:8.3f} µs/call")
    print(f"clue written info          {clue_written:8.3f} µs/call")
    print(f"clue buffered info         {clue_buffered:8.3f} µs/call")
    print(f"stdlib filtered debug      {std_filtered:8.3f} µs/call")
    print(f"clue filtered debug        {clue_filtered:8.3f} µs/call")
    goal("core.log_buffered_info", clue_buffered / structlog_written, "<=", 0.1)
    goal("core.log_written_info", clue_written / structlog_written, "<=", 1.0)
    goal("core.log_filtered_debug", clue_filtered / std_filtered, "<=", 1.5)


if __name__ == "__main__":
    main()
