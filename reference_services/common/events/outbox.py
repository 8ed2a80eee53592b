"""The transactional outbox: an event is written in the transaction of the change causing it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass

from google.protobuf.message import Message

from clue import messaging
from reference_services.common.database import Database, SQLTable, Transaction
from reference_services.common.events import contract

RETENTION_NS = 24 * 3600 * 10**9
"""Sent events are deleted after a day (far longer than the broker's duplicate window)."""


@dataclass(frozen=True)
class OutboxEvent:
    """One event waiting in (or sent from) the outbox."""

    event_id: str
    subject: str
    headers: dict[str, str]
    payload: bytes


class Outbox(SQLTable):
    """Events to publish, in the SQL table ``<table>`` of the producer's own database.

    ``add`` writes an event in the caller's transaction, so that it exists if and
    only if the change causing it is committed; a :class:`~.relay.Relay`
    publishes the pending ones, oldest first.
    """

    name = "outbox"
    schema = (
        "event_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, subject TEXT NOT NULL,"
        " headers_json TEXT NOT NULL, payload BYTEA NOT NULL, sent_ns BIGINT"
    )

    def __init__(self, db: Database, table: str = "outbox") -> None:
        super().__init__(db, table)
        self._last_seq = 0
        self._seq_lock = threading.Lock()

    def _ddl(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} ({self.schema})",
            f"CREATE INDEX IF NOT EXISTS {self.table}_pending ON {self.table} (seq)"
            " WHERE sent_ns IS NULL",
        ]

    async def _setup(self) -> None:
        if not self._ready:
            for statement in self._ddl():
                await self.db.execute(statement)
            self._ready = True

    async def setup(self) -> None:
        """Create the table if needed (at a service's start: ``add`` needs it)."""
        await self._setup()

    async def add(self, tx: Transaction, subject: str, message: Message) -> str:
        """Write ``message`` as an event on ``subject`` in transaction ``tx``; its event id.

        The headers carry the event's type and version and the current trace
        context and request id, so that its publication continues this trace.
        ContractError when ``subject`` does not carry this kind of message.
        """
        contract.check(subject, message)
        if not self._ready:
            for statement in self._ddl():
                await tx.execute(statement)
        event_id = str(uuid.uuid4())
        headers = {
            contract.ID_HEADER: event_id,
            contract.TYPE_HEADER: message.DESCRIPTOR.full_name,
            contract.VERSION_HEADER: contract.EVENT_VERSION,
        }
        messaging.inject(headers)
        await tx.execute(
            f"INSERT INTO {self.table} (event_id, seq, subject, headers_json, payload)"
            " VALUES (%s, %s, %s, %s, %s)",
            (event_id, self._next_seq(), subject, json.dumps(headers), message.SerializeToString()),
        )
        return event_id

    def _next_seq(self) -> int:
        """The time in ns, strictly increasing in this process: the publishing order."""
        with self._seq_lock:
            self._last_seq = max(time.time_ns(), self._last_seq + 1)
            return self._last_seq

    async def pending(self, limit: int = 100) -> list[OutboxEvent]:
        """Up to ``limit`` unsent events, oldest first."""
        await self._setup()
        rows = await self.db.execute(
            f"SELECT event_id, subject, headers_json, payload FROM {self.table}"
            " WHERE sent_ns IS NULL ORDER BY seq, event_id LIMIT %s",
            (limit,),
        )
        return [OutboxEvent(str(r[0]), str(r[1]), json.loads(r[2]), bytes(r[3])) for r in rows]

    async def mark_sent(self, event_ids: list[str]) -> None:
        """Record that these events were published (and forget those sent long ago)."""
        if not event_ids:
            return
        now = time.time_ns()
        marks = ", ".join(["%s"] * len(event_ids))
        async with self.db.transaction() as tx:
            await tx.execute(
                f"UPDATE {self.table} SET sent_ns = %s WHERE event_id IN ({marks})",
                (now, *event_ids),
            )
            await tx.execute(f"DELETE FROM {self.table} WHERE sent_ns < %s", (now - RETENTION_NS,))

    async def count_pending(self) -> int:
        """How many events wait to be published."""
        await self._setup()
        rows = await self.db.execute(f"SELECT COUNT(*) FROM {self.table} WHERE sent_ns IS NULL")
        return int(rows[0][0])
