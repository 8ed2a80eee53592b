"""Live tail: new log records and traces sent to the browser as server-sent events.

Nothing is queued per client: each stream keeps a cursor (the last ``rowid`` it
has seen) and, every :attr:`Tail.poll_s`, reads the rows stored after it that
match its filters, at most :attr:`Tail.max_per_second` items a second; beyond
that it skips to the newest and says how many it skipped. A comment line keeps
an idle connection open through proxies; at most :attr:`Tail.max_clients`
streams run at once (429 beyond), each ending when its client goes away or the
collector stops.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from clue.collector import api, queries
from clue.collector.params import BadParameter, Params
from clue.collector.store import Store

TRACE_TAIL = api.TRACE_SEARCH - api.TIME - {"limit"}
LOG_TAIL = api.LOG_SEARCH - api.TIME - {"limit"}
SPANS_READ = 100_000  # new spans read in one poll of a trace tail, at most
# (items, new cursor, items skipped) of the rows after a cursor, at most so many items
Fetch = Callable[[int, int], tuple[list[dict[str, Any]], int, int]]


class Tail:
    """The ``/api/tail/logs`` and ``/api/tail/traces`` streams over one store."""

    def __init__(
        self,
        store: Store,
        *,
        max_clients: int = 8,
        max_per_second: int = 100,
        poll_s: float = 0.25,
        heartbeat_s: float = 15.0,
    ) -> None:
        self.store = store
        self.max_clients = max_clients
        self.max_per_second = max_per_second
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.clients = 0  # touched on the event loop only
        self._closing = False

    def close(self) -> None:
        """End every stream at its next poll (the collector is stopping)."""
        self._closing = True

    def routes(self) -> list[Route]:
        """Starlette routes of the two streams."""
        return [
            Route("/api/tail/logs", self._endpoint(LOG_TAIL, self._logs, "log")),
            Route("/api/tail/traces", self._endpoint(TRACE_TAIL, self._traces, "trace")),
        ]

    def _endpoint(
        self, allowed: set[str], fetcher: Callable[[Params], tuple[str, Fetch]], event: str
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                table, fetch = fetcher(Params(request.query_params, allowed))
            except BadParameter as exc:
                return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
            if self.clients >= self.max_clients:
                return JSONResponse(
                    {"error": f"at most {self.max_clients} live tails at once; close one"},
                    429,
                    headers={"Retry-After": "5"},
                )
            self.clients += 1
            return _Stream(self, self._events(request, table, fetch, event))

        return endpoint

    def _logs(self, p: Params) -> tuple[str, Fetch]:
        where, args = queries.log_where(**api.log_filters(p))

        def fetch(cursor: int, most: int) -> tuple[list[dict[str, Any]], int, int]:
            columns = queries.LOG_COLUMNS
            rows, newest, skipped = self._after("logs", columns, where, args, cursor, most)
            return [queries.log_json(row) for row in reversed(rows)], newest, skipped

        return "logs", fetch

    def _traces(self, p: Params) -> tuple[str, Fetch]:
        where, args = queries.trace_where(api.trace_filter(p))

        def fetch(cursor: int, most: int) -> tuple[list[dict[str, Any]], int, int]:
            # a trace is sent when a span matching the filters arrives, again when more do
            rows, newest, _ = self._after("spans", "trace_id", where, args, cursor, SPANS_READ)
            ids = list(dict.fromkeys(row["trace_id"] for row in rows))
            shown = ids[:most]
            found = queries.summaries(self.store, shown)
            return list(reversed(found)), newest, len(ids) - len(shown)

        return "spans", fetch

    def _newest(self, table: str) -> int:
        with self.store.reading() as db:
            return int(db.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])

    def _after(
        self, table: str, columns: str, where: str, args: list[Any], cursor: int, most: int
    ) -> tuple[list[Any], int, int]:
        """Rows of *table* after *cursor* matching *where*, newest first, at most *most*;
        the newest rowid; and how many matching rows were left out."""
        with self.store.reading() as db:
            newest = db.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0]
            # the oldest rows were evicted and the table emptied: rowids start again at 1
            since = cursor if newest >= cursor else 0
            condition = f"rowid > ? AND rowid <= ? AND {where}"
            cur = db.execute(
                f"SELECT {columns} FROM {table} WHERE {condition} ORDER BY rowid DESC LIMIT ?",
                [since, newest, *args, most + 1],
            )
            cur.row_factory = _row
            rows = cur.fetchall()
            skipped = 0
            if len(rows) > most:
                rows = rows[:most]
                total = db.execute(
                    f"SELECT count(*) FROM {table} WHERE {condition}", [since, newest, *args]
                ).fetchone()[0]
                skipped = int(total) - most
        return rows, int(newest), skipped

    async def _events(
        self, request: Request, table: str, fetch: Fetch, event: str
    ) -> AsyncIterator[str]:
        most = max(1, math.ceil(self.max_per_second * self.poll_s))
        cursor = await run_in_threadpool(self._newest, table)
        yield "retry: 2000\n: following\n\n"
        quiet_since = time.monotonic()
        while not self._closing:
            await asyncio.sleep(self.poll_s)
            if await request.is_disconnected():
                return
            items, cursor, skipped = await run_in_threadpool(fetch, cursor, most)
            for item in items:
                yield f"event: {event}\ndata: {json.dumps(item)}\n\n"
            if skipped:
                yield f"event: skipped\ndata: {json.dumps({'skipped': skipped})}\n\n"
            if items or skipped:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.heartbeat_s:
                yield ": heartbeat\n\n"
                quiet_since = time.monotonic()


def _row(cursor: Any, values: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class _Stream(StreamingResponse):
    """An event stream that gives its client slot back however it ends."""

    def __init__(self, tail: Tail, events: AsyncIterator[str]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._tail = tail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._tail.clients -= 1
