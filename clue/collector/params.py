"""Validation of query-string parameters shared by the JSON API and the web UI."""

from __future__ import annotations

import re
import time
from datetime import datetime

from starlette.datastructures import QueryParams

from clue.collector.config import parse_duration_ns

SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class BadParameter(ValueError):
    """A query parameter is missing, unknown or has a wrong value (answered with 400)."""


class Params:
    """Typed accessors over a query string; blank values count as absent."""

    def __init__(self, query: QueryParams, allowed: set[str]) -> None:
        unknown = sorted(set(query.keys()) - allowed)
        if unknown:
            raise BadParameter(
                f"unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        self._query = query

    def text(self, name: str) -> str | None:
        value = self._query.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadParameter(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise BadParameter(f"{name} must be between {low} and {high}, got {value}")
        return value

    def flag(self, name: str) -> bool:
        raw = (self.text(name) or "false").lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise BadParameter(f"{name} must be true or false, got {raw!r}")

    def duration_ns(self, name: str) -> int | None:
        """A duration such as ``250ms`` or ``2s`` (bare numbers are milliseconds)."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return parse_duration_ns(raw, default_unit="ms")
        except ValueError as exc:
            raise BadParameter(f"{name}: {exc}") from None

    def time_ns(self, name: str) -> int | None:
        """A point in time: unix seconds (``1700000000.5``) or ISO 8601."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return int(float(raw) * 1e9)
        except ValueError:
            pass
        try:
            return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            raise BadParameter(
                f"{name} must be unix seconds or ISO 8601 (2026-01-31T12:00:00Z), got {raw!r}"
            ) from None

    def time_range(self) -> tuple[int | None, int | None]:
        """(start, end) in unix ns from ``start``/``end`` or ``lookback`` (e.g. ``15m``)."""
        start, end = self.time_ns("start"), self.time_ns("end")
        lookback = self.duration_ns("lookback")
        if lookback is not None:
            if start is not None:
                raise BadParameter("give either start or lookback, not both")
            start = (end or time.time_ns()) - lookback
        if start is not None and end is not None and start > end:
            raise BadParameter("start must not be after end")
        return start, end

    def trace_id(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        return parse_trace_id(raw)

    def severity(self, name: str) -> int | None:
        """Minimum severity number from a name (``warn``) or a number (1-24)."""
        raw = self.text(name)
        if raw is None:
            return None
        if raw.lower() in SEVERITIES:
            return SEVERITIES[raw.lower()]
        if raw.isdigit() and 1 <= int(raw) <= 24:
            return int(raw)
        raise BadParameter(f"{name} must be one of {', '.join(SEVERITIES)} or 1-24, got {raw!r}")

    def attributes(self, name: str) -> list[tuple[str, str]]:
        """Every ``key=value`` given for *name* (repeatable)."""
        pairs = []
        for raw in self._query.getlist(name):
            raw = raw.strip()
            if not raw:
                continue
            key, sep, value = raw.partition("=")
            if not sep or not key.strip():
                raise BadParameter(f"{name} must look like key=value, got {raw!r}")
            pairs.append((key.strip(), value.strip()))
        return pairs


def parse_trace_id(raw: str) -> str:
    """A trace id as 32 lowercase hex characters, or :class:`BadParameter`."""
    value = raw.strip().lower()
    if not _TRACE_ID.match(value):
        raise BadParameter(f"trace id must be 32 hexadecimal characters, got {raw!r}")
    return value
