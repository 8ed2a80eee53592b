"""Process-wide logging state read on every call: levels, settings, outputs."""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry._logs import Logger

    from clue.log.output import Output

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
FATAL = 50

LEVEL_NAMES = {DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error", FATAL: "fatal"}

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "authorization",
        "cookie",
        "set-cookie",
        "credit_card_number",
        "credit_card_cvv",
        "token",
        "secret",
        "api_key",
    }
)

DEFAULT_WRITE_DELAY = 0.0


class Entry(tuple[int, str, dict[str, Any], int, dict[str, Any], Any, "str | None", Any, bool]):
    """A log call kept raw until written, its fields read by name; ``otel_context`` is the
    OpenTelemetry context current at the call (it holds the span). Rendering is deferred
    so that buffering costs an append.

    Made as ``Entry((level, msg, kv, time_ns, fields, otel_context, file_line, exc,
    with_traceback))``: one is made by every log call, and a plain tuple subclass is made
    in C where a ``NamedTuple``'s constructor is a Python function.
    """

    __slots__ = ()
    level: int
    msg: str
    kv: dict[str, Any]
    time_ns: int
    fields: dict[str, Any]
    otel_context: Any
    file_line: str | None
    exc: Any
    with_traceback: bool


# The fields are read by the getters of a namedtuple of the same fields: C-level, as cheap
# as an index (a property would be a Python call per read).
_getters: Any = namedtuple("_getters", list(Entry.__annotations__))  # type: ignore[misc]
_field: str
for _field in _getters._fields:
    setattr(Entry, _field, getattr(_getters, _field))


class State:
    """Settings of the logging pipeline; one instance, ``STATE``, per process."""

    __slots__ = (
        "buffer_size",
        "configured",
        "debug",
        "file_line",
        "max_value_size",
        "otel_logger",
        "outputs",
        "sensitive_keys",
        "write_delay",
    )

    def __init__(self) -> None:
        self.configured = False  # set by clue.log.configure()
        self.debug = False
        self.outputs: tuple[Output, ...] | None = None  # None: default output on first write
        self.sensitive_keys = DEFAULT_SENSITIVE_KEYS
        self.max_value_size = 1024
        self.buffer_size = 1000
        self.file_line = False
        self.otel_logger: Logger | None = None
        self.write_delay = DEFAULT_WRITE_DELAY  # seconds an entry below error may wait


STATE = State()
