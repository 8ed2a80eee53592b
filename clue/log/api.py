"""The logging calls: debug, info, warn, error, fatal and print."""

from __future__ import annotations

import os
import sys
from time import time_ns
from typing import Any

from opentelemetry.context import get_current

from clue.log import pipeline, stdlib
from clue.log.scopes import CURRENT, route
from clue.log.state import DEBUG, ERROR, FATAL, INFO, STATE, WARN, Entry


def _caller(depth: int) -> str:
    frame = sys._getframe(depth)
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _log(level: int, msg: str, kv: dict[str, Any], exc: Any = None, tb: bool = False) -> None:
    route(
        Entry(
            (
                level,
                msg,
                kv,
                time_ns(),
                CURRENT.get()[0],
                get_current(),
                _caller(3) if STATE.file_line else None,
                exc,
                tb,
            )
        )
    )


def debug(msg: str, /, **kv: Any) -> None:
    """Log a debug entry: written only while debug is on, never buffered."""
    if STATE.debug:
        _log(DEBUG, msg, kv)


# info and warn build their entry inline: a buffered call must cost little more than an append.


def info(msg: str, /, **kv: Any) -> None:
    """Log an info entry (buffered inside a request scope)."""
    file_line = _caller(2) if STATE.file_line else None
    fields, scope = CURRENT.get()
    entry = Entry((INFO, msg, kv, time_ns(), fields, get_current(), file_line, None, False))
    if scope is None or not scope.keep(entry):
        pipeline.write_entry(entry)


def warn(msg: str, /, **kv: Any) -> None:
    """Log a warning (buffered inside a request scope)."""
    file_line = _caller(2) if STATE.file_line else None
    fields, scope = CURRENT.get()
    entry = Entry((WARN, msg, kv, time_ns(), fields, get_current(), file_line, None, False))
    if scope is None or not scope.keep(entry):
        pipeline.write_entry(entry)


def error(
    msg: str, /, exc: BaseException | None = None, *, traceback: bool = False, **kv: Any
) -> None:
    """Log an error, with ``exc``'s type and message (and traceback if asked).

    Inside a request scope the buffered entries are written first.
    """
    _log(ERROR, msg, kv, exc, traceback)


def report_unhandled(exc: BaseException) -> None:
    """Log ``exc`` with its traceback as the unhandled error of the current request (its
    buffered entries first); the server's own later report of it is not written again."""
    _log(ERROR, "unhandled exception", {}, exc, True)
    stdlib.mark_reported(exc)


def fatal(
    msg: str, /, exc: BaseException | None = None, *, traceback: bool = False, **kv: Any
) -> None:
    """Log at fatal severity, like :func:`error`. It does not exit: that is the caller's call."""
    _log(FATAL, msg, kv, exc, traceback)


def print(msg: str, /, **kv: Any) -> None:
    """Write an info entry, never buffered in the request scope (access lines, start-up
    messages); with a write delay it may wait like any entry below error."""
    pipeline.write_entry(
        Entry(
            (
                INFO,
                msg,
                kv,
                time_ns(),
                CURRENT.get()[0],
                get_current(),
                _caller(2) if STATE.file_line else None,
                None,
                False,
            )
        )
    )


def set_debug(on: bool) -> None:
    """Turn debug logging on or off for the whole process (on: debug written, nothing buffered)."""
    STATE.debug = bool(on)
    stdlib.debug_changed()


def debug_enabled() -> bool:
    """Whether debug logging is on."""
    return STATE.debug
