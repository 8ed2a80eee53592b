"""Quoting what a caller sent back in an error message."""

from __future__ import annotations

LIMIT = 40


def quoted(text: str, limit: int = LIMIT) -> str:
    """``repr(text)``, cut to ``limit`` characters with an ellipsis: error bodies stay short."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)
