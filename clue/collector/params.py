"""Validation of query-string parameters shared by the JSON API and the web UI.

Every value is bounded before it is looked at: at most :data:`MAX_LENGTH`
characters, numbers in ASCII digits within a stated range, times between 1970
and 2262 (what fits a signed 64-bit count of nanoseconds, as the store keeps
them). A bad value raises :class:`BadParameter` naming the parameter and quoting
at most a short prefix of what was sent.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from decimal import Decimal

from starlette.datastructures import QueryParams

from clue.collector.config import parse_duration_ns, quote

SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
MAX_LENGTH = 1024  # characters of one value (a name, a text search, an attribute filter)
MAX_ATTRIBUTES = 16  # attr filters in one search
REPEATABLE = frozenset({"attr"})
MAX_SECONDS = (2**63 - 1) // 10**9  # 2262-04-11: later does not fit the store's integers
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_SECONDS = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,9})?")


class BadParameter(ValueError):
    """A query parameter is missing, unknown or has a wrong value (answered with 400)."""

    def __init__(self, parameter: str, problem: str) -> None:
        shown = parameter if len(parameter) <= 40 and parameter.isidentifier() else quote(parameter)
        super().__init__(f"{shown} {problem}")
        self.parameter = parameter[:40]


class Params:
    """Typed accessors over a query string; blank values count as absent."""

    def __init__(self, query: QueryParams, allowed: set[str]) -> None:
        for name in query:
            if name not in allowed:
                shown = ", ".join(sorted(allowed)) or "none"
                raise BadParameter(name, f"is an unknown parameter; allowed: {shown}")
            given = len(query.getlist(name))
            if given > 1 and name not in REPEATABLE:
                raise BadParameter(name, f"is given {given} times; give it once")
        self._query = query

    def text(self, name: str) -> str | None:
        """The value of *name*, stripped, at most :data:`MAX_LENGTH` characters."""
        value = checked_length(name, self._query.get(name, "")).strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        if not _INTEGER.fullmatch(raw):
            raise BadParameter(name, f"must be an integer, got {quote(raw)}")
        value = int(raw)
        if not low <= value <= high:
            raise BadParameter(name, f"must be between {low} and {high}, got {quote(raw)}")
        return value

    def flag(self, name: str) -> bool:
        raw = (self.text(name) or "false").lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise BadParameter(name, f"must be true or false, got {quote(raw)}")

    def duration_ns(self, name: str) -> int | None:
        """A duration such as ``250ms`` or ``2s`` (bare numbers are milliseconds)."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return parse_duration_ns(raw, default_unit="ms")
        except ValueError as exc:
            raise BadParameter(name, f"must be a duration up to 36500d: {exc}") from None

    def time_ns(self, name: str) -> int | None:
        """A point in time: unix seconds (``1700000000.5``) or ISO 8601, 1970 to 2262."""
        raw = self.text(name)
        if raw is None:
            return None
        seconds = _seconds(raw)
        if seconds is None:
            raise BadParameter(
                name,
                f"must be unix seconds or ISO 8601 (2026-01-31T12:00:00Z), got {quote(raw)}",
            )
        if not 0 <= seconds <= MAX_SECONDS:
            raise BadParameter(
                name,
                f"must be between 0 and {MAX_SECONDS} unix seconds (1970-01-01 to "
                f"2262-04-11), got {quote(raw)}",
            )
        return int(seconds * 10**9)

    def time_range(self) -> tuple[int | None, int | None]:
        """(start, end) in unix ns from ``start``/``end`` or ``lookback`` (e.g. ``15m``)."""
        start, end = self.time_ns("start"), self.time_ns("end")
        lookback = self.duration_ns("lookback")
        if lookback is not None:
            if start is not None:
                raise BadParameter("lookback", "cannot be given with start; give one of them")
            start = (end or time.time_ns()) - lookback
        if start is not None and end is not None and start > end:
            raise BadParameter("start", "must not be after end")
        return start, end

    def trace_id(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        return parse_trace_id(raw, name)

    def severity(self, name: str) -> int | None:
        """Minimum severity number from a name (``warn``) or a number (1-24)."""
        raw = self.text(name)
        if raw is None:
            return None
        if raw.lower() in SEVERITIES:
            return SEVERITIES[raw.lower()]
        if re.fullmatch(r"[0-9]{1,2}", raw) and 1 <= int(raw) <= 24:
            return int(raw)
        names = ", ".join(SEVERITIES)
        raise BadParameter(name, f"must be one of {names} or 1-24, got {quote(raw)}")

    def attributes(self, name: str) -> list[tuple[str, str]]:
        """Every ``key=value`` given for *name* (repeatable, at most :data:`MAX_ATTRIBUTES`)."""
        given = self._query.getlist(name)
        if len(given) > MAX_ATTRIBUTES:
            raise BadParameter(name, f"is given {len(given)} times; at most {MAX_ATTRIBUTES}")
        pairs = []
        for raw in given:
            raw = checked_length(name, raw).strip()
            if not raw:
                continue
            key, sep, value = raw.partition("=")
            if not sep or not key.strip():
                raise BadParameter(name, f"must look like key=value, got {quote(raw)}")
            pairs.append((key.strip(), value.strip()))
        return pairs


def checked_length(name: str, value: str) -> str:
    """*value*, or :class:`BadParameter` when it is longer than :data:`MAX_LENGTH`."""
    if len(value) > MAX_LENGTH:
        raise BadParameter(
            name, f"must be at most {MAX_LENGTH} characters, got {len(value)} characters"
        )
    return value


def parse_trace_id(raw: str, name: str = "trace_id") -> str:
    """A trace id as 32 lowercase hex characters, or :class:`BadParameter`."""
    value = raw.strip().lower()
    if not _TRACE_ID.fullmatch(value):
        raise BadParameter(name, f"must be 32 hexadecimal characters, got {quote(raw)}")
    return value


def _seconds(raw: str) -> Decimal | None:
    """Unix seconds of *raw* (a number, exactly, or ISO 8601), or None if it is neither."""
    if _SECONDS.fullmatch(raw):
        return Decimal(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return Decimal(str(moment.timestamp()))
    except (ValueError, OverflowError):  # OverflowError: a naive time near year 1 or 9999
        return None
