"""The OpenTelemetry SDK's own log records, routed into clue's pipeline without floods.

The SDK and its exporters log through stdlib loggers named ``opentelemetry.*``,
some of them once per failed batch. One handler on the ``opentelemetry``
logger hands their records to clue.log's stdlib bridge (same outputs and
format as every other entry), letting each message template through at most once per
interval and telling how many were suppressed in between.
"""

from __future__ import annotations

import logging
import threading
import time

from clue.log import ClueHandler
from clue.telemetry.forked import in_child


class RateLimitedForwarder(logging.Handler):
    """Hands records to clue.log, each (logger, template) at most once per interval."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self._target = ClueHandler()
        self._guard = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        in_child(self._renew_lock)

    def _renew_lock(self) -> None:
        self._guard = threading.Lock()  # an SDK thread of the parent may have held it

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._guard:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.suppressed_since_last = suppressed
        self._target.handle(record)


def route(interval: float, level: int = logging.WARNING) -> None:
    """Install (or retune) the forwarder on the ``opentelemetry`` logger.

    Records below ``level`` are dropped; records are not propagated any further,
    so nothing is written twice.
    """
    otel = logging.getLogger("opentelemetry")
    otel.setLevel(level)
    otel.propagate = False
    for handler in otel.handlers:
        if isinstance(handler, RateLimitedForwarder):
            handler.interval = interval
            return
    otel.addHandler(RateLimitedForwarder(interval))
