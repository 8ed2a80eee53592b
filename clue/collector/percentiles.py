"""Each span's duration against the stored spans of its operation (service + span name).

The durations of an operation are read in order from the ``spans_by_operation``
index (service, name, duration_ns), so no table row is touched and nothing is
sorted in Python. An operation with more than :data:`SAMPLE` stored spans is
sampled: every k-th row (by rowid) is read, so a trace page reads at most about
:data:`SAMPLE` durations per operation however large the store is.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from clue.collector.store import Store

SAMPLE = 20_000  # durations read per operation at most (beyond: an even sample)


def operation_stats(store: Store, spans: list[dict[str, Any]]) -> None:
    """Set ``percentile`` and ``operation`` on each span of *spans*, in place.

    ``percentile`` is the share (0-100) of the operation's stored spans that are
    faster than this one ("slower than 97% of its kind"); ``operation`` holds the
    operation's stored span count and its p50 and p95 durations (nearest rank).
    """
    by_operation: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for span in spans:
        by_operation.setdefault((span["service"], span["name"]), []).append(span)
    for (service, name), mine in by_operation.items():
        durations, total = _durations(store, service, name)
        stats = {
            "spans": total,
            "p50_ns": _rank(durations, 0.50),
            "p95_ns": _rank(durations, 0.95),
            "sampled": len(durations) < total,
        }
        for span in mine:
            faster = bisect_left(durations, span["duration_ns"])
            span["percentile"] = round(100 * faster / len(durations), 1) if durations else 0.0
            span["operation"] = stats


def _durations(store: Store, service: str, name: str) -> tuple[list[int], int]:
    """The operation's stored durations, ascending (an even sample when many), and its count."""
    with store.reading() as db:
        where = "FROM spans INDEXED BY spans_by_operation WHERE service = ? AND name = ?"
        total = int(db.execute(f"SELECT count(*) {where}", (service, name)).fetchone()[0])
        step = -(-total // SAMPLE)  # ceiling division: 1 while the operation is small
        rows = db.execute(
            f"SELECT duration_ns {where} AND rowid % ? = 0 ORDER BY duration_ns",
            (service, name, step),
        ).fetchall()
    return [row[0] for row in rows], total


def _rank(durations: list[int], q: float) -> int | None:
    """The nearest-rank *q* quantile of ascending *durations*."""
    if not durations:
        return None
    return durations[max(0, math.ceil(q * len(durations)) - 1)]
