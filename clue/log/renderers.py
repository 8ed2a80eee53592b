"""Renderers turn a sanitized event dict into one line of text.

A renderer has structlog's processor signature, ``(logger, method_name,
event_dict) -> str``, so any structlog renderer can be used as a custom format.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import structlog

Renderer = Callable[[Any, str, dict[str, Any]], str]

FORMATS = ("json", "logfmt", "terminal")
FORMAT_NAMES = ", ".join(FORMATS)

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
# The C encoder behind JSONEncoder, built once rather than per call (no cycle check: sanitized
# events are fresh trees). JSONEncoder.encode is the fallback where the C accelerator is absent.
_make_encoder: Callable[..., Callable[[Any, int], Any]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_chunks = (
    None
    if _make_encoder is None
    else _make_encoder(
        None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
)
# Non-ASCII characters that str.splitlines() (and some log shippers) treat as line breaks.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_BARE = re.compile(r"[!#-<>-\[\]-~]+")
_KEY_UNSAFE = re.compile(r"[^!#-<>-\[\]-~]")


def _encode_json(value: Any) -> str:
    if type(value) is str:
        text = json.encoder.encode_basestring(value)
    elif _orjson_dumps is None:
        text = _stdlib_json(value)
    else:
        try:
            text = _orjson_dumps(value).decode()
        except TypeError:  # an int beyond 64 bits
            text = _stdlib_json(value)
    return text if text.isascii() else text.translate(_LINE_BREAKS)


def _stdlib_json(value: Any) -> str:
    return "".join(_chunks(value, 0)) if _chunks is not None else _encoder.encode(value)


_orjson_dumps: Callable[[Any], bytes] | None
try:  # the "fast" extra: orjson, a faster encoder than json's C one, when installed
    from orjson import dumps as _orjson_dumps
except ImportError:
    _orjson_dumps = None


def render_json(_logger: Any, _method: str, event: dict[str, Any]) -> str:
    """One JSON object."""
    return _encode_json(event)


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        return "null"
    elif value is True:
        return "true"
    elif value is False:
        return "false"
    elif isinstance(value, int | float):
        return repr(value)
    else:
        text = _encode_json(value)
    if _BARE.fullmatch(text):
        return text
    return _encode_json(text)


def _logfmt_key(key: str) -> str:
    """``key`` with the characters logfmt cannot carry in a key replaced by ``_``."""
    if _BARE.fullmatch(key):
        return key
    return _KEY_UNSAFE.sub("_", key) or "_"


def render_logfmt(_logger: Any, _method: str, event: dict[str, Any]) -> str:
    """``key=value`` pairs; values with spaces, quotes, ``=`` or non-ASCII are JSON-quoted."""
    return " ".join(f"{_logfmt_key(k)}={_logfmt_value(v)}" for k, v in event.items())


_CONSOLE_SPECIAL_KEYS = ("exception", "exc_info", "stack")


class TerminalRenderer:
    """Coloured, human-oriented lines (structlog's ConsoleRenderer underneath)."""

    def __init__(self, colors: bool = True) -> None:
        styles = structlog.dev.ConsoleRenderer.get_default_level_styles(colors)
        styles["fatal"] = styles["critical"]
        self._console = structlog.dev.ConsoleRenderer(
            colors=colors,
            event_key="msg",
            timestamp_key="time",
            sort_keys=False,
            level_styles=styles,
            pad_event_to=40,
        )

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> str:
        event = dict(event)
        for special in _CONSOLE_SPECIAL_KEYS:  # keys structlog's console would interpret
            if special in event:
                event[f"{special}_"] = event.pop(special)
        if isinstance(event.get("traceback"), str):
            event["exception"] = event.pop("traceback")  # printed below the line
        return str(self._console(logger, method, event))


def renderer_for(fmt: str | Renderer) -> Renderer:
    """The renderer of a format name (``json``, ``logfmt``, ``terminal``: coloured unless
    ``NO_COLOR`` is set) or ``fmt`` itself."""
    if callable(fmt):
        return fmt
    if fmt == "json":
        return render_json
    if fmt == "logfmt":
        return render_logfmt
    if fmt == "terminal":
        return TerminalRenderer(colors=not os.environ.get("NO_COLOR"))
    raise ValueError(f"unknown log format {fmt!r}: use one of {FORMAT_NAMES} or a renderer")


def format_from_env() -> str | None:
    """``CLUE_LOG_FORMAT`` if set and not empty; a value that is not a format name is a
    ValueError."""
    value = os.environ.get("CLUE_LOG_FORMAT")
    if not value:
        return None
    fmt = value.strip().lower()
    if fmt not in FORMATS:
        raise ValueError(
            f"CLUE_LOG_FORMAT={value!r} is not a log format: use one of {FORMAT_NAMES}"
        )
    return fmt
