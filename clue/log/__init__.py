"""Context-carried structured logging with per-request buffering (structlog underneath).

>>> from clue import log
>>> log.configure(format="json")
>>> with log.context(user="ana"):
...     log.info("signed in", method="password")

See docs/logging.md.
"""

from clue.log.api import debug, debug_enabled, error, fatal, info, print, set_debug, warn
from clue.log.configuration import configure, set_logger_provider
from clue.log.output import Output
from clue.log.pipeline import sync
from clue.log.renderers import Renderer
from clue.log.scopes import RequestScope, context, flush, request_scope
from clue.log.state import DEFAULT_SENSITIVE_KEYS
from clue.log.structlog_bridge import structlog_processor

__all__ = [
    "DEFAULT_SENSITIVE_KEYS",
    "Output",
    "Renderer",
    "RequestScope",
    "configure",
    "context",
    "debug",
    "debug_enabled",
    "error",
    "fatal",
    "flush",
    "info",
    "print",
    "request_scope",
    "set_debug",
    "set_logger_provider",
    "structlog_processor",
    "sync",
    "warn",
]
