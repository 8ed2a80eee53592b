"""Each span's duration against the stored spans of its operation (service + span name).

The store keeps a histogram of each operation's durations (``durations``: buckets
2% wide, with the lowest and highest duration in each, updated as spans are
stored and deleted). A trace reads the histograms of its operations, with each
bucket's running count summed by SQLite, in one query per service and 500
operation names, whatever the number of spans stored. Precision: a span's
``percentile`` is exact but for the spans whose durations are within 2% of its
own; p50 and p95 are within 2% of the exact nearest-rank values (exact when
their bucket holds one distinct duration).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from clue.collector.store import Store, bucket_of

CHUNK = 500  # operation names per query (SQLite bounds the number of parameters)
QUANTILES = {"p50_ns": 0.50, "p95_ns": 0.95}
_HISTOGRAMS = """
SELECT name, bucket, spans, low, high,
  sum(spans) OVER (PARTITION BY name ORDER BY bucket) AS running
FROM durations WHERE service = ? AND name IN ({names})
ORDER BY name, bucket
"""


class _Operation:
    """One operation's histogram: its buckets in order, as columns."""

    def __init__(self, rows: list[tuple[int, int, int, int, int]]) -> None:
        columns: list[list[int]] = [list(column) for column in zip(*rows, strict=True)]
        # running: the operation's spans up to and including each bucket
        self.buckets, self.spans, self.low, self.high, self.running = columns
        self.total = self.running[-1]
        self.stats: dict[str, int | None] = {"spans": self.total}
        for key, q in QUANTILES.items():
            self.stats[key] = self._value(max(1, math.ceil(q * self.total)))

    def _value(self, rank: int) -> int:
        """The duration of the operation's *rank*-th fastest span (1-based)."""
        i = bisect_left(self.running, rank)
        k, n = rank - self.running[i] + self.spans[i], self.spans[i]  # the k-th of n in bucket i
        if k >= n:
            return self.high[i]
        return self.low[i] + round((self.high[i] - self.low[i]) * (k - 1) / max(1, n - 1))

    def faster(self, duration_ns: int) -> int:
        """Stored spans of the operation faster than *duration_ns* (those of its own
        bucket estimated)."""
        bucket = bucket_of(duration_ns)
        i = bisect_left(self.buckets, bucket)
        if i == len(self.buckets):
            return self.total
        below = self.running[i] - self.spans[i]
        if self.buckets[i] > bucket or duration_ns <= self.low[i]:
            return below
        if duration_ns > self.high[i]:
            return self.running[i]
        # strictly between the bucket's lowest and highest: the lowest is faster, the
        # highest is not, the others taken as evenly spread between them
        share = (duration_ns - self.low[i]) / (self.high[i] - self.low[i])
        return below + min(self.spans[i] - 1, 1 + round(max(0, self.spans[i] - 2) * share))


def operation_stats(store: Store, spans: list[dict[str, Any]]) -> None:
    """Set ``percentile`` and ``operation`` on each span of *spans*, in place.

    ``percentile`` is the share (0-100) of the operation's stored spans that are
    faster than this one ("slower than 97% of its kind"); ``operation`` holds the
    operation's stored span count and its p50 and p95 durations (nearest rank).
    """
    by_operation: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for span in spans:
        by_operation.setdefault((span["service"], span["name"]), []).append(span)
    histograms = _histograms(store, list(by_operation))
    for key, mine in by_operation.items():
        operation = histograms.get(key)
        for span in mine:
            if operation is None:  # none stored (any more)
                span["percentile"] = 0.0
                span["operation"] = {"spans": 0, **dict.fromkeys(QUANTILES)}
            else:
                faster = operation.faster(span["duration_ns"])
                span["percentile"] = round(100 * faster / operation.total, 1)
                span["operation"] = operation.stats


def _histograms(
    store: Store, operations: list[tuple[str, str]]
) -> dict[tuple[str, str], _Operation]:
    """The duration histograms of *operations*."""
    names: dict[str, list[str]] = {}
    for service, name in operations:
        names.setdefault(service, []).append(name)
    rows: dict[tuple[str, str], list[tuple[int, int, int, int, int]]] = {}
    with store.reading() as db:
        for service, all_names in names.items():
            for start in range(0, len(all_names), CHUNK):
                chunk = all_names[start : start + CHUNK]
                sql = _HISTOGRAMS.format(names=",".join("?" * len(chunk)))
                for name, bucket, spans, low, high, running in db.execute(sql, (service, *chunk)):
                    rows.setdefault((service, name), []).append((bucket, spans, low, high, running))
    return {operation: _Operation(buckets) for operation, buckets in rows.items()}
