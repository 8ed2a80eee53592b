"""Bridge from structlog loggers into clue's pipeline.

Code that already logs with ``structlog.get_logger()`` keeps doing so: put
:func:`structlog_processor` last in structlog's processor chain and its events
become clue entries (same outputs, buffering, trace ids, masking, OTLP).
"""

from __future__ import annotations

import sys
from time import time_ns
from typing import Any

import structlog
from opentelemetry.context import get_current

from clue.log.scopes import CURRENT, route
from clue.log.state import DEBUG, ERROR, FATAL, INFO, STATE, WARN, Entry

_LEVELS = {
    "debug": DEBUG,
    "info": INFO,
    "msg": INFO,
    "warn": WARN,
    "warning": WARN,
    "error": ERROR,
    "exception": ERROR,
    "err": ERROR,
    "critical": FATAL,
    "fatal": FATAL,
}


def structlog_processor(_logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
    """Hand a structlog event to clue, then drop it from structlog's own chain.

    ``event`` becomes the message, ``exc_info`` the error fields (with traceback),
    the other keys the entry's fields. Use it as the last processor::

        structlog.configure(processors=[log.structlog_processor])
    """
    level = _LEVELS.get(event_dict.pop("level", method_name), INFO)
    if level == DEBUG and not STATE.debug:
        raise structlog.DropEvent
    msg = str(event_dict.pop("event", ""))
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True or (method_name == "exception" and exc_info is None):
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if not isinstance(exc, BaseException):
        exc = None
    route(
        Entry(
            (
                level,
                msg,
                event_dict,
                time_ns(),
                CURRENT.get()[0],
                get_current(),
                None,
                exc,
                exc is not None,
            )
        )
    )
    raise structlog.DropEvent
