"""Make event values safe to render: mask sensitive keys, truncate, normalise types.

One pass over the event does all three, so every renderer and the OTLP export
see the same, already-safe values: strings, numbers, booleans, ``None`` and
nested lists/dicts of those.
"""

from __future__ import annotations

import math
from typing import Any

MASK = "[REDACTED]"
_MAX_DEPTH = 8
_NATIVE = (int, float, bool, type(None))

_WHOLE = frozenset({"time", "level", "trace_id", "span_id", "file", "error_type"})  # never cut

_verdicts: dict[str, bool] = {}  # key -> sensitive?, for the set in _verdicts_for
_clear: set[str] = set()  # the keys of _verdicts that are not sensitive
_verdicts_for: frozenset[str] = frozenset()


def is_sensitive(key: str, sensitive: frozenset[str]) -> bool:
    """Whether ``key`` names a sensitive value (case-insensitive), remembered per key."""
    global _verdicts, _clear, _verdicts_for
    verdicts = _verdicts
    if sensitive is not _verdicts_for or len(verdicts) > 4096:
        verdicts = _verdicts = {}
        _clear = set()
        _verdicts_for = sensitive
    verdict = verdicts.get(key)
    if verdict is None:
        verdict = verdicts[key] = key.lower() in sensitive
        if not verdict:
            _clear.add(key)
    return verdict


def truncate(text: str, max_size: int) -> str:
    """``text`` cut to ``max_size`` characters plus a marker saying how much was cut."""
    if len(text) <= max_size:
        return text
    return f"{text[:max_size]}…[truncated {len(text) - max_size} chars]"


def to_text(value: object) -> str:
    """``str(value)``, or a placeholder naming its type when ``str()`` raises."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def clean_value(value: Any, sensitive: frozenset[str], max_size: int, depth: int = 0) -> Any:
    """``value`` as a render-safe value (see module docstring)."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= max_size else truncate(value, max_size)
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, _NATIVE):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = key if type(key) is str else to_text(key)
                out[name] = (
                    MASK
                    if is_sensitive(name, sensitive)
                    else clean_value(item, sensitive, max_size, depth + 1)
                )
            return out
        if isinstance(value, list | tuple | set | frozenset):
            return [clean_value(item, sensitive, max_size, depth + 1) for item in value]
    return truncate(to_text(value), max_size)


def clean_event(event: dict[str, Any], sensitive: frozenset[str], max_size: int) -> None:
    """Sanitize the top-level ``event`` in place."""
    # One C-level pass when every key is already known not to be sensitive.
    if sensitive is not _verdicts_for or not _clear.issuperset(event):
        for key in event:
            if is_sensitive(key, sensitive):
                event[key] = MASK
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            if len(value) > max_size and key not in _WHOLE:
                event[key] = truncate(value, max_size)
        elif kind is float:
            if not math.isfinite(value):
                event[key] = str(value)
        elif kind is not int and kind is not bool and value is not None:
            event[key] = clean_value(value, sensitive, max_size)
