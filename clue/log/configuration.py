"""``configure()``: outputs, formats, debug, limits, redaction, stdlib bridge, OTLP."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clue.log import pipeline
from clue.log import stdlib as bridge
from clue.log.output import Output
from clue.log.renderers import FORMAT_NAMES, FORMATS, Renderer, format_from_env
from clue.log.state import DEFAULT_SENSITIVE_KEYS, DEFAULT_WRITE_DELAY, STATE, TIME_FORMATS

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def debug_from_env() -> bool | None:
    """``CLUE_DEBUG`` as a boolean if set; anything but 1/0/true/false/yes/no/on/off is an error."""
    value = os.environ.get("CLUE_DEBUG")
    if value is None:
        return None
    flag = value.strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    raise ValueError(f"CLUE_DEBUG={value!r} is not a boolean: use 1/true/on or 0/false/off")


def _delay(name: str, value: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value <= 60:
        raise ValueError(f"{name} must be a number of seconds from 0 to 60, got {value!r}")
    return float(value)


def write_delay_from_env() -> float | None:
    """``CLUE_LOG_WRITE_DELAY`` in seconds if set; anything but a number from 0 to 60 is an
    error."""
    value = os.environ.get("CLUE_LOG_WRITE_DELAY")
    if value is None:
        return None
    try:
        return _delay("CLUE_LOG_WRITE_DELAY", float(value))
    except ValueError:
        raise ValueError(
            f"CLUE_LOG_WRITE_DELAY={value!r} is not a number of seconds from 0 to 60"
        ) from None


def _delay_at_import() -> None:
    """Apply ``CLUE_LOG_WRITE_DELAY`` without ``configure()`` too (a bad value is reported by
    ``configure()``; without it, the default delay stays)."""
    with contextlib.suppress(ValueError):
        env_delay = write_delay_from_env()
        if env_delay is not None:
            STATE.write_delay = env_delay


def _positive(name: str, value: Any) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def configure(
    *,
    format: str | Renderer | None = None,
    outputs: Sequence[Output] | None = None,
    debug: bool | None = None,
    max_value_size: int = 1024,
    buffer_size: int = 1000,
    sensitive_keys: Iterable[str] | None = None,
    file_line: bool = False,
    stdlib: bool = True,
    write_delay: float = DEFAULT_WRITE_DELAY,
    fields: Sequence[Callable[[], Mapping[str, Any]]] = (),
    time_format: str | Callable[[int], Any] = "rfc3339_us",
    disable_buffering: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Set up clue's logging; calling it again replaces the previous set-up.

    ``format`` applies to the outputs that name none (default: one output to
    stdout). ``CLUE_LOG_FORMAT`` overrides it; with neither, a TTY gets the
    terminal format and anything else JSON. ``debug=None`` reads ``CLUE_DEBUG``
    (unset: unchanged). ``sensitive_keys`` replaces the default set (extend
    ``DEFAULT_SENSITIVE_KEYS`` to keep it); keys match case-insensitively,
    nested dicts included. ``stdlib`` routes the ``logging`` module through
    clue. ``write_delay`` lets entries below error wait up to that many
    seconds to be written together, which a busy server wants (0, the
    default, writes each at once); ``CLUE_LOG_WRITE_DELAY`` overrides it.
    ``fields`` are callables returning fields to add to every written entry
    (never to a buffered entry that is dropped), under the entry's own.
    ``time_format`` is one of ``TIME_FORMATS`` or a callable of the entry's
    time in nanoseconds. ``disable_buffering`` is given the fields of a
    request scope as it opens; true: the scope writes its entries at once.
    Bad values raise ``ValueError`` naming the setting.
    """
    env_format = format_from_env()
    if format is not None and not callable(format) and format not in FORMATS:
        raise ValueError(f"format={format!r} is not a log format: use one of {FORMAT_NAMES}")
    default_format = env_format or format
    chosen = [Output()] if outputs is None else list(outputs)
    if not chosen or not all(isinstance(o, Output) for o in chosen):
        raise ValueError("outputs must be a non-empty sequence of clue.log.Output")
    resolved = tuple(o.resolved(default_format) for o in chosen)
    size = _positive("max_value_size", max_value_size)
    buffer = _positive("buffer_size", buffer_size)
    if isinstance(sensitive_keys, str):
        raise ValueError("sensitive_keys must be a collection of key names, not one string")
    keys = DEFAULT_SENSITIVE_KEYS if sensitive_keys is None else sensitive_keys
    if isinstance(fields, Mapping) or not all(callable(f) for f in fields):
        raise ValueError("fields must be a sequence of callables returning a mapping of fields")
    format_time = time_format if callable(time_format) else TIME_FORMATS.get(time_format)
    if format_time is None:
        names = ", ".join(TIME_FORMATS)
        raise ValueError(f"time_format={time_format!r} is not a time format: use one of {names}")
    if disable_buffering is not None and not callable(disable_buffering):
        raise ValueError("disable_buffering must be a callable of the request scope's fields")
    env_debug = debug_from_env() if debug is None else None
    env_delay = write_delay_from_env()
    delay = env_delay if env_delay is not None else _delay("write_delay", write_delay)

    pipeline.sync()  # what waits was logged under the old set-up: written there
    STATE.configured = True
    STATE.outputs = resolved
    STATE.max_value_size = size
    STATE.buffer_size = buffer
    STATE.sensitive_keys = frozenset(str(k).lower() for k in keys)
    STATE.file_line = bool(file_line)
    STATE.computed = tuple(fields)
    STATE.format_time = format_time
    STATE.disable_buffering = disable_buffering
    pipeline.set_write_delay(delay)
    if debug is not None:
        STATE.debug = bool(debug)
    elif env_debug is not None:
        STATE.debug = env_debug
    if stdlib:
        bridge.install_bridge()
    else:
        bridge.uninstall_bridge()


def configure_unless_configured() -> None:
    """``configure()`` with its defaults, unless logging was configured already."""
    if not STATE.configured:
        configure()


def set_logger_provider(provider: LoggerProvider | None) -> None:
    """Also export written entries as OTLP log records through ``provider`` (None: stop)."""
    STATE.otel_logger = None if provider is None else provider.get_logger("clue.log")


_delay_at_import()
