"""Process-wide logging state read on every call: levels, settings, outputs."""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Callable, Mapping
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

_second: tuple[int, str] = (-1, "")  # the last second formatted ("...T03:04:05."), as a whole


def _rfc3339_second(sec: int) -> str:
    global _second
    cached_sec, text = _second
    if cached_sec != sec:
        text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        _second = (sec, text)
    return text


def format_rfc3339_us(ns: int) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. ``2026-01-02T03:04:05.123456Z``."""
    sec, rem = divmod(ns, 1_000_000_000)
    cached_sec, text = _second  # the default format: the cache read inline, no second call
    if cached_sec != sec:
        text = _rfc3339_second(sec)
    return text + str(1_000_000 + rem // 1000)[1:] + "Z"  # cheaper than a :06d format


def format_rfc3339_ms(ns: int) -> str:
    """RFC 3339 UTC timestamp with milliseconds, e.g. ``2026-01-02T03:04:05.123Z``."""
    sec, rem = divmod(ns, 1_000_000_000)
    return _rfc3339_second(sec) + str(1_000 + rem // 1_000_000)[1:] + "Z"


def format_rfc3339_s(ns: int) -> str:
    """RFC 3339 UTC timestamp in whole seconds, e.g. ``2026-01-02T03:04:05Z``."""
    return _rfc3339_second(ns // 1_000_000_000)[:-1] + "Z"


TIME_FORMATS: dict[str, Callable[[int], Any]] = {
    "rfc3339_us": format_rfc3339_us,
    "rfc3339_ms": format_rfc3339_ms,
    "rfc3339": format_rfc3339_s,
    "epoch": lambda ns: ns / 1e9,  # seconds, a float
    "epoch_ms": lambda ns: ns // 1_000_000,  # milliseconds, an integer
    "epoch_ns": lambda ns: ns,
}


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
        "computed",
        "configured",
        "debug",
        "disable_buffering",
        "file_line",
        "format_time",
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
        self.computed: tuple[Callable[[], Mapping[str, Any]], ...] = ()  # fields per written entry
        self.format_time: Callable[[int], Any] = format_rfc3339_us  # the "time" of an event
        self.disable_buffering: Callable[[dict[str, Any]], bool] | None = None  # see configure()


STATE = State()
