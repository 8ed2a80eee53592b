"""Export of written entries as OpenTelemetry log records, tied to their span.

Records about the export itself stay local (written, never exported): the
OpenTelemetry SDK's own (loggers ``opentelemetry.*``) and clue's reports about
its exporters (``clue.telemetry.*``: failed exports, dropped items). Sent
through the exporter they are about, they would wait on the collector that
failed, at shutdown too.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from opentelemetry._logs import Logger, SeverityNumber

from clue.log.state import DEBUG, ERROR, FATAL, INFO, LEVEL_NAMES, WARN, Entry

_SEVERITY = {
    DEBUG: SeverityNumber.DEBUG,
    INFO: SeverityNumber.INFO,
    WARN: SeverityNumber.WARN,
    ERROR: SeverityNumber.ERROR,
    FATAL: SeverityNumber.FATAL,
}
_SKIPPED = frozenset({"time", "level", "msg", "trace_id", "span_id"})
_LOCAL_ONLY = ("opentelemetry", "clue.telemetry")  # logger names whose records stay local
_RENAMED = {
    "error": "exception.message",
    "error_type": "exception.type",
    "traceback": "exception.stacktrace",
    "file": "code.file_line",
}


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str)


def emit(logger: Logger, entry: Entry, event: dict[str, Any]) -> None:
    """Emit ``entry`` (its sanitized ``event``) on ``logger``, unless it is a record about
    the export itself (see the module docstring); exporter errors are swallowed."""
    source = entry.kv.get("logger")
    if type(source) is str and source.startswith(_LOCAL_ONLY):
        return
    attributes = {
        _RENAMED.get(key, key): _attribute(value)
        for key, value in event.items()
        if key not in _SKIPPED
    }
    with contextlib.suppress(Exception):  # a broken exporter must never break the code that logs
        logger.emit(
            timestamp=entry.time_ns,
            observed_timestamp=time.time_ns(),
            context=entry.otel_context,
            severity_number=_SEVERITY[entry.level],
            severity_text=LEVEL_NAMES[entry.level].upper(),
            body=event["msg"],
            attributes=attributes,
        )
