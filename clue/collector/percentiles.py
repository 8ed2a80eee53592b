"""Each span's duration against the stored spans of its operation (service + span name).

The store keeps a histogram of each operation's durations (``durations``: buckets
2% wide, with the lowest and highest duration in each, updated as spans are
stored and deleted). A trace reads the histograms of its operations in a few
queries, whatever the number of spans stored, and ranks each span by bisection.
Precision: a span's ``percentile`` is exact but for the spans whose durations
are within 2% of its own; p50 and p95 are within 2% of the exact nearest-rank
values (exact when their bucket holds one distinct duration).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from clue.collector.store import Store, bucket_of

CHUNK = 500  # operation names per query (SQLite bounds the number of parameters)


@dataclass(frozen=True)
class _Histogram:
    buckets: list[int]  # ascending bucket numbers
    spans: list[int]  # spans in each bucket
    low: list[int]  # lowest and highest duration seen in each bucket
    high: list[int]
    below: list[int]  # spans in the buckets before each one

    @property
    def total(self) -> int:
        return self.below[-1] + self.spans[-1] if self.buckets else 0

    def faster(self, duration_ns: int) -> int:
        """Spans faster than *duration_ns* (those in its own bucket estimated)."""
        i = bisect_left(self.buckets, bucket_of(duration_ns))
        if i == len(self.buckets):
            return self.total
        count = self.below[i]
        if self.buckets[i] != bucket_of(duration_ns) or duration_ns <= self.low[i]:
            return count
        if duration_ns > self.high[i]:
            return count + self.spans[i]
        # strictly between the bucket's lowest and highest: the lowest is faster, the
        # highest is not, the others spread evenly between them
        share = (duration_ns - self.low[i]) / (self.high[i] - self.low[i])
        return count + min(self.spans[i] - 1, 1 + round(max(0, self.spans[i] - 2) * share))

    def quantile(self, q: float) -> int | None:
        """The nearest-rank *q* quantile (interpolated inside its bucket)."""
        if not self.buckets:
            return None
        rank = max(1, math.ceil(q * self.total))
        i = bisect_left([b + s for b, s in zip(self.below, self.spans, strict=True)], rank)
        k, n = rank - self.below[i], self.spans[i]  # the k-th of the bucket's n spans
        if k == n:
            return self.high[i]
        return self.low[i] + round((self.high[i] - self.low[i]) * (k - 1) / max(1, n - 1))


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
    empty = _Histogram([], [], [], [], [])
    for operation, mine in by_operation.items():
        histogram = histograms.get(operation, empty)
        total = histogram.total
        stats = {
            "spans": total,
            "p50_ns": histogram.quantile(0.50),
            "p95_ns": histogram.quantile(0.95),
        }
        for span in mine:
            faster = histogram.faster(span["duration_ns"])
            span["percentile"] = round(100 * faster / total, 1) if total else 0.0
            span["operation"] = stats


def _histograms(
    store: Store, operations: list[tuple[str, str]]
) -> dict[tuple[str, str], _Histogram]:
    """The duration histograms of *operations*, read a service and a chunk of names at once."""
    names: dict[str, list[str]] = {}
    for service, name in operations:
        names.setdefault(service, []).append(name)
    rows: dict[tuple[str, str], list[tuple[int, int, int, int]]] = {}
    with store.reading() as db:
        for service, all_names in names.items():
            for start in range(0, len(all_names), CHUNK):
                chunk = all_names[start : start + CHUNK]
                for name, bucket, count, low, high in db.execute(
                    "SELECT name, bucket, spans, low, high FROM durations WHERE service = ? "
                    f"AND name IN ({','.join('?' * len(chunk))}) ORDER BY name, bucket",
                    (service, *chunk),
                ):
                    rows.setdefault((service, name), []).append((bucket, count, low, high))
    return {
        operation: _Histogram(
            buckets=[b[0] for b in buckets],
            spans=[b[1] for b in buckets],
            low=[b[2] for b in buckets],
            high=[b[3] for b in buckets],
            below=[0, *accumulate(b[1] for b in buckets)][:-1],
        )
        for operation, buckets in rows.items()
    }
