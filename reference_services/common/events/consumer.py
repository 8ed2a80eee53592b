"""Durable consumers: explicit ack, idempotent by event id, bounded redelivery, dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.js import api

import clue.nats
from clue import log, messaging
from reference_services.common.database import Database, SQLTable, Transaction
from reference_services.common.events import contract
from reference_services.common.events.stream import Broker

DEAD_REASON_HEADER = "dead-letter-reason"
DEAD_SUBJECT_HEADER = "dead-letter-subject"
EVENT_ID_HEADER = "event-id"
BACKOFF = (0.5, 2.0, 5.0, 15.0)
"""Seconds before the 2nd, 3rd... delivery after a failure (the last one repeats)."""


def event_id_of(headers: dict[str, str] | None) -> str:
    """A message's event id: its ``Nats-Msg-Id``, or the ``event-id`` a replayed dead
    letter carries (its message id is the replay's)."""
    return (
        messaging.header(headers, EVENT_ID_HEADER)
        or messaging.header(headers, contract.ID_HEADER.lower())
        or ""
    )


class Undecodable(Exception):
    """A message that is no event of the contract."""


@dataclass(frozen=True)
class Event:
    """One event as a consumer's handler sees it."""

    event_id: str
    subject: str
    """The contract's subject (``boutique.order.placed``)."""
    message: Message
    attempt: int
    """1 for the first delivery, 2 for the first redelivery..."""
    headers: dict[str, str] = field(repr=False)


Handler = Callable[[Event, Transaction], Awaitable[None]]


class Processed(SQLTable):
    """The event ids a consumer has handled, in its own database."""

    name = "processed-events"
    schema = (
        "consumer TEXT NOT NULL, event_id TEXT NOT NULL, processed_ns BIGINT NOT NULL,"
        " PRIMARY KEY (consumer, event_id)"
    )

    def __init__(self, db: Database, table: str = "processed_events") -> None:
        super().__init__(db, table)

    async def setup(self) -> None:
        """Create the table if needed."""
        await self._setup()

    async def claim(self, tx: Transaction, consumer: str, event_id: str) -> bool:
        """Mark the event processed by ``consumer`` in ``tx``; False if it already was."""
        rows = await tx.execute(
            f"INSERT INTO {self.table} (consumer, event_id, processed_ns) VALUES (%s, %s, %s)"
            " ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
            (consumer, event_id, time.time_ns()),
        )
        return bool(rows)

    async def seen(self, consumer: str, event_id: str) -> bool:
        """Whether ``consumer`` has processed the event."""
        await self._setup()
        rows = await self.db.execute(
            f"SELECT 1 FROM {self.table} WHERE consumer = %s AND event_id = %s",
            (consumer, event_id),
        )
        return bool(rows)


class EventConsumer:
    """A durable JetStream consumer named ``name`` of some event subjects.

    Each event is handled once in effect: ``handler(event, tx)`` runs in a
    transaction of ``db`` in which the event id is marked processed, so its
    effect written in ``tx`` and the mark commit together; an event already
    marked is acked without running it. A handler that raises has its message
    nak'ed with a delay (:data:`BACKOFF`) and redelivered, up to
    ``max_deliver`` deliveries; then, and at once for a message that is no
    event of the contract, the message goes to ``boutique.dead.<name>`` and
    is terminated. Every message is handled in clue's consume scope (a span
    continuing the producer's trace, a request log scope).
    """

    def __init__(
        self,
        broker: Broker,
        db: Database,
        name: str,
        subjects: Sequence[str],
        handler: Handler,
        *,
        max_deliver: int = 5,
        backoff: Sequence[float] = BACKOFF,
        ack_wait: float = 30.0,
        batch: int = 10,
        processed_table: str = "processed_events",
    ) -> None:
        for subject in subjects:
            contract.event_type(subject)
        if max_deliver < 1:
            raise ValueError("max_deliver must be 1 or more")
        self.broker = broker
        self.name = name
        self.subjects = tuple(subjects)
        self.handler = handler
        self.max_deliver = max_deliver
        self.backoff = tuple(backoff) or (0.0,)
        self.ack_wait = ack_wait
        self.batch = batch
        self.processed = Processed(db, processed_table)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def config(self) -> api.ConsumerConfig:
        """Durable, explicit ack; one delivery more than ours, for a crash in the last one.

        Several subjects need NATS 2.10 or later (``filter_subjects``)."""
        filters = [self.broker.stream.subject(s) for s in self.subjects]
        return api.ConsumerConfig(
            durable_name=self.name,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
            max_deliver=self.max_deliver + 1,
            ack_wait=self.ack_wait,
        )

    async def subscribe(self) -> clue.nats.PullSubscription:
        """Create (or update) the durable consumer and bind a pull subscription to it."""
        js = await self.broker.jetstream()
        stream = self.broker.stream.name
        made = await js.add_consumer(stream, self.config())
        if not (made.config.filter_subject or made.config.filter_subjects):
            raise RuntimeError(f"the NATS server ignored the subjects of consumer {self.name}")
        return await js.pull_subscribe_bind(self.name, stream)

    async def run(self) -> None:
        """Handle events until stopped, riding out broker outages."""
        await self.processed.setup()
        sub: clue.nats.PullSubscription | None = None
        delay = 0.1
        while not self._stopping:
            try:
                if sub is None:
                    sub = await self.subscribe()
                await sub.handle(self.handle, batch=self.batch, timeout=1.0)
                delay = 0.1
            except TimeoutError:  # none came: nats-py's fetch may raise asyncio's own
                continue
            except Exception as exc:
                log.warn("event consumer cannot fetch", consumer=self.name, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def start(self) -> None:
        """Run in a task of the current event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        """Stop the task (an unacked message is redelivered after ``ack_wait``)."""
        if self._task is not None:
            # and a flag: nats-py turns a cancellation during some calls into a timeout
            self._stopping = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task, self._stopping = None, False

    async def handle(self, msg: Msg) -> None:
        """Handle one message (in its consume scope): see the class."""
        headers = dict(msg.headers or {})
        event_id = event_id_of(headers)
        attempt = msg.metadata.num_delivered
        try:
            event = self.decode(msg, headers, event_id, attempt)
        except Undecodable as exc:
            log.error(
                "undecodable event sent to the dead letters",
                event_id=event_id[:80] or "-",
                consumer=self.name,
                reason=str(exc),
            )
            await self.dead_letter(msg, f"undecodable: {exc}")
            return
        if attempt > self.max_deliver:  # the last delivery crashed before settling
            await self.dead_letter(msg, f"not handled in {self.max_deliver} deliveries")
            return
        try:
            async with self.processed.db.transaction() as tx:
                if await self.processed.claim(tx, self.name, event.event_id):
                    await self.handler(event, tx)
                else:
                    log.info("event already processed", event_id=event.event_id)
        except Exception as exc:
            if attempt >= self.max_deliver:
                await self.dead_letter(msg, f"{type(exc).__name__}: {str(exc)[:200]}")
            else:
                await msg.nak(delay=self.backoff[min(attempt, len(self.backoff)) - 1])
            raise
        await msg.ack()

    def decode(self, msg: Msg, headers: dict[str, str], event_id: str, attempt: int) -> Event:
        """The event a message carries; Undecodable for anything else."""
        if not event_id:
            raise Undecodable("no event id (Nats-Msg-Id)")
        subject = self.broker.stream.event_subject(msg.subject)
        try:
            kind = contract.event_type(subject)
        except contract.ContractError as exc:
            raise Undecodable(str(exc)) from None
        named = messaging.header(headers, contract.TYPE_HEADER)
        if named != kind.DESCRIPTOR.full_name:
            raise Undecodable(f"event-type {str(named)[:80]!r} is not {kind.DESCRIPTOR.full_name}")
        message = kind()
        try:
            message.ParseFromString(msg.data)
        except DecodeError as exc:
            raise Undecodable(f"payload is no {kind.DESCRIPTOR.full_name}: {exc}") from None
        return Event(event_id, subject, message, attempt, headers)

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Publish the message, as it came, to this consumer's dead-letter subject; term it."""
        js = await self.broker.jetstream()
        message_id = messaging.header(msg.headers, contract.ID_HEADER.lower()) or ""
        headers = {k: v for k, v in (msg.headers or {}).items() if k.lower() != "nats-msg-id"}
        headers[EVENT_ID_HEADER] = event_id_of(msg.headers)[:256]
        headers[DEAD_REASON_HEADER] = reason[:500]
        headers[DEAD_SUBJECT_HEADER] = msg.subject
        # a second dead letter of the message (a crash before term) is dropped; a replayed
        # one has a message id of its own (see replay), so failing again is a new letter
        if message_id:
            headers[contract.ID_HEADER] = f"dead.{self.name}.{message_id[:256]}"
        await js.publish(
            self.broker.stream.dead_letters(self.name),
            msg.data,
            stream=self.broker.stream.name,
            headers=headers,
        )
        await msg.term()
