"""SQLite storage of spans, logs and metric points, with bounded retention.

One connection, one lock: ingest batches and UI queries take turns. Each batch
is one transaction (``executemany``); after it, the oldest rows beyond the
configured maximum are deleted, and a periodic sweep drops rows older than the
maximum age, so the database stops growing once the limits are reached.

The ``durations`` table is a histogram of each operation's stored span durations
(service, span name, bucket), kept in step with the spans in the same
transactions: buckets are :data:`GROWTH` wide (each one's bound 2% above the
last), with the lowest and highest duration seen in each. It is what span
percentiles read, instead of an index on durations that halved insert speed.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clue.collector.otlp import Decoded

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
  key TEXT PRIMARY KEY, service TEXT NOT NULL, attributes TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operations (
  service TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (service, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spans (
  trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT NOT NULL,
  service TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL,
  start_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,
  status INTEGER NOT NULL, status_message TEXT NOT NULL,
  attributes TEXT NOT NULL, events TEXT NOT NULL, links TEXT NOT NULL,
  scope TEXT NOT NULL, resource TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id, span_id);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, start_ns);
DROP INDEX IF EXISTS spans_by_operation;
CREATE TABLE IF NOT EXISTS durations (
  service TEXT NOT NULL, name TEXT NOT NULL, bucket INTEGER NOT NULL,
  spans INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL,
  PRIMARY KEY (service, name, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
  time_ns INTEGER NOT NULL, service TEXT NOT NULL, severity INTEGER NOT NULL,
  severity_text TEXT NOT NULL, body TEXT NOT NULL, attributes TEXT NOT NULL,
  trace_id TEXT NOT NULL, span_id TEXT NOT NULL, scope TEXT NOT NULL, resource TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_trace ON logs (trace_id) WHERE trace_id != '';
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (time_ns);
CREATE TABLE IF NOT EXISTS points (
  service TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, unit TEXT NOT NULL,
  description TEXT NOT NULL, monotonic INTEGER NOT NULL, temporality INTEGER NOT NULL,
  attributes TEXT NOT NULL, start_ns INTEGER NOT NULL, time_ns INTEGER NOT NULL,
  value REAL, count INTEGER, sum REAL, bounds TEXT NOT NULL, buckets TEXT NOT NULL,
  resource TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_by_metric ON points (name, service, time_ns);
CREATE INDEX IF NOT EXISTS points_by_time ON points (time_ns);
"""


GROWTH = 1.02  # a duration bucket's upper bound over its lower: 2% relative precision
_LOG_GROWTH = math.log(GROWTH)
_ADD_DURATIONS = (
    "INSERT INTO durations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
    "spans = spans + excluded.spans, low = min(low, excluded.low), "
    "high = max(high, excluded.high)"
)


def bucket_of(duration_ns: int) -> int:
    """The histogram bucket of a duration: ``GROWTH**b <= duration_ns < GROWTH**(b + 1)``
    (-1 for durations under 1 ns)."""
    return math.floor(math.log(duration_ns) / _LOG_GROWTH) if duration_ns >= 1 else -1


def _tally(rows: Any) -> dict[tuple[str, str, int], list[int]]:
    """(service, name, bucket) -> [spans, low, high] of (service, name, duration) *rows*."""
    found: dict[tuple[str, str, int], list[int]] = {}
    for service, name, duration in rows:
        key = (service, name, bucket_of(duration))
        seen = found.get(key)
        if seen is None:
            found[key] = [1, duration, duration]
        else:
            seen[0] += 1
            seen[1] = min(seen[1], duration)
            seen[2] = max(seen[2], duration)
    return found


@dataclass(frozen=True)
class _Table:
    name: str
    time_column: str
    insert: str


TABLES = {
    "traces": _Table(
        "spans", "start_ns", f"INSERT OR IGNORE INTO spans VALUES ({','.join('?' * 15)})"
    ),
    "logs": _Table("logs", "time_ns", f"INSERT INTO logs VALUES ({','.join('?' * 10)})"),
    "metrics": _Table("points", "time_ns", f"INSERT INTO points VALUES ({','.join('?' * 16)})"),
}


class Store:
    """The collector's database. Thread-safe; every method takes the lock."""

    def __init__(
        self,
        path: str = ":memory:",
        *,
        max_spans: int = 100_000,
        max_logs: int = 100_000,
        max_points: int = 200_000,
        max_age_ns: int = 24 * 3_600_000_000_000,
    ) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA cache_size=-16000"
        )
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._limits = {"traces": max_spans, "logs": max_logs, "metrics": max_points}
        self.max_age_ns = max_age_ns
        self._counts = {
            signal: self._db.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
            for signal, t in TABLES.items()
        }
        if self._counts["traces"] and not self._count("durations"):  # made before durations
            with self._transaction():
                self._add_durations(
                    self._db.execute("SELECT service, name, duration_ns FROM spans")
                )
        self._known_resources: set[str] = set()
        self._known_operations: set[tuple[str, str]] = set()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def counts(self) -> dict[str, int]:
        """Rows stored per signal (traces counts spans, metrics counts points)."""
        with self._lock:
            return dict(self._counts)

    def add(self, signal: str, batch: Decoded) -> None:
        """Store one decoded request in one transaction, then enforce the row limit."""
        if not batch.rows:
            return
        table = TABLES[signal]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                new = [k for k in batch.resources if k not in self._known_resources]
                if new:
                    self._db.executemany(
                        "INSERT OR IGNORE INTO resources VALUES (?, ?, ?)",
                        [(k, *batch.resources[k]) for k in new],
                    )
                operations = self._new_operations(batch) if signal == "traces" else set()
                if operations:
                    self._db.executemany(
                        "INSERT OR IGNORE INTO operations VALUES (?, ?)", operations
                    )
                last = self._db.execute(f"SELECT max(rowid) FROM {table.name}").fetchone()[0]
                cur = self._db.executemany(table.insert, batch.rows)
                self._counts[signal] += cur.rowcount  # a re-sent span is stored once
                if signal == "traces":
                    self._add_durations(
                        ((row[3], row[4], row[7]) for row in batch.rows)
                        if cur.rowcount == len(batch.rows)
                        else self._db.execute(  # only the spans stored: those of new rowids
                            "SELECT service, name, duration_ns FROM spans WHERE rowid > ?",
                            (last or 0,),
                        )
                    )
                self._evict_excess(signal)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._counts[signal] = self._count(table.name)
                raise
            self._known_resources.update(new)
            self._known_operations.update(operations)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _add_durations(self, rows: Any) -> None:
        """Count (service, name, duration) *rows* of newly stored spans in ``durations``."""
        self._db.executemany(_ADD_DURATIONS, [(*k, *v) for k, v in _tally(rows).items()])

    def _remove_durations(self, rows: Any) -> None:
        """Uncount (service, name, duration) *rows* of deleted spans; drop emptied buckets
        (a bucket's low and high stay as they were: still within the bucket)."""
        keys = [(v[0], *k) for k, v in _tally(rows).items()]
        self._db.executemany(
            "UPDATE durations SET spans = spans - ? WHERE service = ? AND name = ? AND bucket = ?",
            keys,
        )
        self._db.executemany(
            "DELETE FROM durations WHERE service = ? AND name = ? AND bucket = ? AND spans <= 0",
            [k[1:] for k in keys],
        )

    def _new_operations(self, batch: Decoded) -> set[tuple[str, str]]:
        """(service, span name) pairs of *batch* not yet in the ``operations`` table."""
        if len(self._known_operations) > 10_000:
            self._known_operations.clear()
        return {(row[3], row[4]) for row in batch.rows} - self._known_operations

    def _count(self, table: str) -> int:
        return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def _evict_excess(self, signal: str) -> None:
        excess = self._counts[signal] - self._limits[signal]
        if excess <= 0:
            return
        name = TABLES[signal].name
        delete = (
            f"DELETE FROM {name} WHERE rowid IN (SELECT rowid FROM {name} ORDER BY rowid LIMIT ?)"
        )
        if signal == "traces":
            self._remove_durations(
                self._db.execute(f"{delete} RETURNING service, name, duration_ns", (excess,))
            )
        else:
            self._db.execute(delete, (excess,))
        self._counts[signal] -= excess

    def evict_old(self, now_ns: int | None = None) -> int:
        """Delete rows older than the maximum age and unused resources; return rows deleted."""
        cutoff = (now_ns if now_ns is not None else time.time_ns()) - self.max_age_ns
        deleted = 0
        with self._lock, self._transaction():  # spans and durations stay in step
            for signal, table in TABLES.items():
                delete = f"DELETE FROM {table.name} WHERE {table.time_column} < ?"
                if signal == "traces":
                    gone = self._db.execute(
                        f"{delete} RETURNING service, name, duration_ns", (cutoff,)
                    ).fetchall()
                    self._remove_durations(gone)
                    removed = len(gone)
                else:
                    removed = self._db.execute(delete, (cutoff,)).rowcount
                self._counts[signal] -= removed
                deleted += removed
            if len(self._known_resources) > 256:
                self._db.execute(
                    "DELETE FROM resources WHERE key NOT IN (SELECT resource FROM spans "
                    "UNION SELECT resource FROM logs UNION SELECT resource FROM points)"
                )
                self._known_resources.clear()
        return deleted

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, locked for the duration of a read."""
        with self._lock:
            yield self._db

    def first(self, sql: str, params: Any, wanted: int, key: int = 0) -> list[Any]:
        """Distinct values of column *key* of *sql*'s rows, in row order, stopping at
        *wanted* of them (so a scan of newest-first rows ends early)."""
        found: dict[Any, None] = {}
        with self._lock:
            for row in self._db.execute(sql, params):
                found[row[key]] = None
                if len(found) >= wanted:
                    break
        return list(found)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run one read query and return its rows (``sqlite3.Row``)."""
        with self._lock:
            cur = self._db.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()
