"""Context-carried structured logging with per-request buffering (structlog underneath).

Examples:
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

# isort: split
# clue's internal API: what clue's other packages use (the rule is in clue/__init__.py).
# Re-exported as "x as x" and left out of __all__: not for programs, may change any time.
from clue.log.api import report_unhandled as report_unhandled
from clue.log.configuration import configure_unless_configured as configure_unless_configured
from clue.log.configuration import write_delay_from_env as write_delay_from_env
from clue.log.pipeline import set_write_delay as set_write_delay
from clue.log.pipeline import write_entry as write_entry
from clue.log.sanitize import clean_value as clean_value
from clue.log.scopes import CURRENT as CURRENT
from clue.log.scopes import outgoing_request_id as outgoing_request_id
from clue.log.state import DEFAULT_WRITE_DELAY as DEFAULT_WRITE_DELAY
from clue.log.state import STATE as STATE
from clue.log.state import WARN as WARN
from clue.log.state import Entry as Entry
from clue.log.state import State as State
from clue.log.stdlib import ClueHandler as ClueHandler
from clue.log.stdlib import uninstall_bridge as uninstall_bridge

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
