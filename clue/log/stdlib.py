"""Bridge from the stdlib ``logging`` module into clue's pipeline.

One handler on the root logger turns every record (uvicorn, grpc, httpx, the
OpenTelemetry SDK, user code) into a clue entry: same outputs and format,
same request buffering, same trace ids.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from time import time_ns
from typing import Any

from opentelemetry.context import get_current

from clue.log.scopes import CURRENT, route
from clue.log.state import DEBUG, ERROR, FATAL, INFO, STATE, WARN, Entry

# Record attributes that are not ``extra=`` fields (uvicorn's color_message repeats msg in ANSI).
_NOT_FIELDS = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",
    }
)


# Set on an exception that a clue middleware or interceptor logged as a request's unhandled
# error (built-in exceptions take no weak references, but every exception has a __dict__).
_REPORTED = "_clue_reported"


def mark_reported(exc: BaseException) -> None:
    """Say that clue wrote ``exc`` (with its request's fields and trace ids): the server's own
    error record of the same exception, which comes later through this bridge, is dropped."""
    with contextlib.suppress(Exception):  # an exception type that refuses attributes
        setattr(exc, _REPORTED, True)


def _level(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return FATAL
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARN
    if levelno >= logging.INFO:
        return INFO
    return DEBUG


class ClueHandler(logging.Handler):
    """Routes stdlib log records through clue (installed on the root logger)."""

    def emit(self, record: logging.LogRecord) -> None:
        level = _level(record.levelno)
        if level == DEBUG and not STATE.debug:
            return
        try:
            kv: dict[str, Any] = {"logger": record.name}
            for key, value in record.__dict__.items():
                if key not in _NOT_FIELDS and not key.startswith("_"):
                    kv[key] = value
            exc = record.exc_info[1] if record.exc_info else None
            if level >= ERROR and getattr(exc, _REPORTED, False) is True:
                return  # already written by clue, once and with more context
            file_line = (
                f"{os.path.basename(record.pathname)}:{record.lineno}" if STATE.file_line else None
            )
            route(
                Entry(
                    (
                        level,
                        record.getMessage(),
                        kv,
                        int(record.created * 1e9) if record.created else time_ns(),
                        CURRENT.get()[0],
                        get_current(),
                        file_line,
                        exc,
                        exc is not None,
                    )
                )
            )
        except Exception:
            self.handleError(record)


def _handlers() -> list[ClueHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, ClueHandler)]


def _writes_to_console(handler: logging.Handler) -> bool:
    if type(handler) is not logging.StreamHandler:
        return False  # files, sockets, queues, test captures: kept
    stream = handler.stream
    if stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        return True
    try:
        return stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):
        return False


def install_bridge() -> None:
    """Put one clue handler on the root logger and take over console logging.

    Console handlers (plain ``StreamHandler`` to stdout/stderr, as left by
    ``logging.basicConfig()`` or uvicorn's default config) are removed from
    every logger, and the loggers that had one propagate to the root again, so
    that each record is printed once, by clue.
    """
    root = logging.getLogger()
    loggers = [
        root,
        *(x for x in root.manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    for logger in loggers:
        console = [h for h in logger.handlers if _writes_to_console(h)]
        for handler in console:
            logger.removeHandler(handler)
        if console and logger is not root:
            logger.propagate = True
    for handler in _handlers():
        root.removeHandler(handler)
    root.addHandler(ClueHandler())
    debug_changed()


def uninstall_bridge() -> None:
    """Remove clue's root handler."""
    root = logging.getLogger()
    for handler in _handlers():
        root.removeHandler(handler)


def debug_changed() -> None:
    """Let debug records reach the handler while debug is on (root level DEBUG, else INFO)."""
    if _handlers():
        logging.getLogger().setLevel(logging.DEBUG if STATE.debug else logging.INFO)
