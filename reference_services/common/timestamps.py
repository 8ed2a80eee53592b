"""Stored times (ns since the epoch) as the services' answers show them: RFC 3339,
UTC, to the millisecond (``2026-11-30T00:53:20.001Z``)."""

from __future__ import annotations

import datetime as dt


def rfc3339_ms(at_ns: int) -> str:
    """``at_ns`` in RFC 3339, UTC, to the millisecond, cut (never rounded up)."""
    # integer arithmetic: through a float the nanoseconds of today's times round
    seconds, nanos = divmod(at_ns, 1_000_000_000)
    at = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=nanos // 1000)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_ms_or_empty(at_ns: int | None) -> str:
    """`rfc3339_ms`, or "" for None: a time that has not come (a message field left empty)."""
    return "" if at_ns is None else rfc3339_ms(at_ns)
