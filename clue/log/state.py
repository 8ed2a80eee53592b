"""Process-wide logging state read on every call: levels, settings, outputs."""

from __future__ import annotations

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

Entry = tuple[int, str, dict[str, Any], int, dict[str, Any], Any, "str | None", Any, bool]
"""A log call kept raw until written: (level, msg, kv, time_ns, fields, otel_context,
file_line, exception, with_traceback), where ``otel_context`` is the OpenTelemetry
context current at the call (it holds the span). Rendering is deferred so that
buffering costs an append."""


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
