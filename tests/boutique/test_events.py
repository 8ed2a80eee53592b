"""The event backbone for real: outbox in SQLite and PostgreSQL, relay and consumers on NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry.trace import SpanKind

import clue.nats
from clue import log
from clue.testing import capture_logs, capture_spans
from reference_services.common.database import Database, Postgres, SQLite, Transaction
from reference_services.common.events import (
    DEAD_REASON_HEADER,
    EVENT_ID_HEADER,
    ORDER_PLACED,
    SHIPMENT_DELIVERED,
    Broker,
    ContractError,
    Event,
    EventConsumer,
    Outbox,
    Relay,
    Stream,
)
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev
from tests import servers
from tests.boutique.conftest import unique

DEADLINE = 20.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait, with a deadline, until ``check()`` is true."""
    deadline = time.monotonic() + DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def order(n: int) -> ev.OrderPlaced:
    return ev.OrderPlaced(
        order_id=f"o-{n}",
        user_id="u-1",
        email="someone@example.com",
        items=[ev.OrderLine(product_id="OLJCESPC7Z", quantity=n, unit_cost=pb.Money(units=3))],
        total=pb.Money(currency_code="USD", units=3 * n),
        tracking_id=f"t-{n}",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database: Database
    if request.param == "sqlite":
        database = SQLite(tmp_path / "events.db")
    else:
        database = Postgres(request.getfixturevalue("postgres_url"))
    yield database
    await database.close()


@pytest.fixture
async def outbox(db: Database) -> AsyncIterator[Outbox]:
    box = Outbox(db, unique("outbox"))
    await box.setup()
    yield box
    await box.drop()


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[Broker]:
    """A broker over a stream of this test's own (deleted at the end)."""
    b = Broker(nats_url, Stream(unique("T").upper()))
    yield b
    await b.stream.delete(await b.jetstream())
    await b.close()


async def stream_messages(broker: Broker, subject: str = ">") -> list[Msg]:
    """Every message of the broker's stream on ``subject`` (within the stream's prefix)."""
    js = await broker.jetstream()
    info = await js.stream_info(broker.stream.name)
    if info.state.messages == 0:
        return []
    sub = await js.js.pull_subscribe(
        f"{broker.stream.prefix}.{subject}",
        stream=broker.stream.name,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE),
    )
    messages: list[Msg] = []
    try:
        while True:
            messages += await sub.fetch(100, timeout=0.5)
    except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when none came
        pass
    await sub.unsubscribe()
    return messages


def headers(message: Msg) -> dict[str, str]:
    return message.headers or {}


# --- outbox ---------------------------------------------------------------------------


async def test_an_event_is_written_in_the_transaction_of_its_change(
    db: Database, outbox: Outbox
) -> None:
    table = unique("orders")
    await db.execute(f"CREATE TABLE {table} (order_id TEXT PRIMARY KEY)")
    try:
        with pytest.raises(RuntimeError, match="payment refused"):
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} VALUES (%s)", ("o-1",))
                await outbox.add(tx, ORDER_PLACED, order(1))
                raise RuntimeError("payment refused")
        assert await db.execute(f"SELECT order_id FROM {table}") == []
        assert await outbox.pending() == []  # rolled back: no order, no event

        tracer = clue.telemetry.tracer("test")
        with tracer.start_as_current_span("PlaceOrder"), log.request_scope(request_id="req-7"):
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} VALUES (%s)", ("o-2",))
                event_id = await outbox.add(tx, ORDER_PLACED, order(2))
        assert await db.execute(f"SELECT order_id FROM {table}") == [("o-2",)]
        [event] = await outbox.pending()
        assert event.event_id == event_id
        assert event.subject == ORDER_PLACED
        assert ev.OrderPlaced.FromString(event.payload) == order(2)
        assert event.headers["Nats-Msg-Id"] == event_id
        assert event.headers["event-type"] == "boutique.v1.OrderPlaced"
        assert event.headers["event-version"] == "1"
        assert event.headers["x-request-id"] == "req-7"
    finally:
        await db.execute(f"DROP TABLE {table}")


async def test_a_statement_outside_a_transaction_is_not_part_of_it(db: Database) -> None:
    table = unique("numbers")
    await db.execute(f"CREATE TABLE {table} (n INTEGER)")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} VALUES (1)")
                other = asyncio.create_task(db.execute(f"INSERT INTO {table} VALUES (2)"))
                await asyncio.sleep(0.1)  # room to run: it must wait for the transaction
                raise RuntimeError("roll back")
        await other
        assert await db.execute(f"SELECT n FROM {table}") == [(2,)]
    finally:
        await db.execute(f"DROP TABLE {table}")


async def test_an_event_on_the_wrong_subject_is_refused_and_nothing_is_written(
    db: Database, outbox: Outbox
) -> None:
    with pytest.raises(ContractError, match=r"carries boutique\.v1\.ShipmentDelivered"):
        async with db.transaction() as tx:
            await outbox.add(tx, SHIPMENT_DELIVERED, order(1))
    with pytest.raises(ContractError, match=r"no event is published on 'boutique\.nope'"):
        async with db.transaction() as tx:
            await outbox.add(tx, "boutique.nope", order(1))
    assert await outbox.pending() == []


# --- relay ----------------------------------------------------------------------------


async def add_orders(outbox: Outbox, numbers: range) -> list[str]:
    ids = []
    for n in numbers:
        async with outbox.db.transaction() as tx:
            ids.append(await outbox.add(tx, ORDER_PLACED, order(n)))
    return ids


async def test_the_relay_publishes_in_order_once_each(
    db: Database, outbox: Outbox, broker: Broker
) -> None:
    ids = await add_orders(outbox, range(1, 6))
    relay = Relay(outbox, broker, batch=2)  # several batches
    assert await relay.publish_pending() == 5
    assert await outbox.pending() == []
    messages = await stream_messages(broker)
    assert [headers(m)["Nats-Msg-Id"] for m in messages] == ids
    assert [ev.OrderPlaced.FromString(m.data).order_id for m in messages] == [
        f"o-{n}" for n in range(1, 6)
    ]
    assert {m.subject for m in messages} == {broker.stream.subject(ORDER_PLACED)}

    # a relay that published but died before marking sends the same rows again: dropped
    await db.execute(f"UPDATE {outbox.table} SET sent_ns = NULL")
    assert await relay.publish_pending() == 5
    assert len(await stream_messages(broker)) == 5


@contextmanager
def nats_server(port: int, data: Path) -> Iterator[str]:
    """A NATS server of this test's own, storing into ``data``, stopped at the end."""
    url = f"nats://127.0.0.1:{port}"
    data.mkdir(exist_ok=True)
    process = servers.start_nats(url, port, data)
    try:
        servers.wait_until_answering(servers.NATS, url, process, data)
        yield url
    finally:
        servers.terminate(process, data)


async def test_events_wait_while_the_broker_is_down_then_all_go_out_in_order(
    outbox: Outbox, tmp_path: Path
) -> None:
    port = servers.free_port()
    with nats_server(port, tmp_path / "nats") as url:
        broker = Broker(url, Stream("OUTAGE"))
        relay = Relay(outbox, broker, poll=0.1)
        relay.start()
        ids = await add_orders(outbox, range(1, 3))
        relay.wake()
        await eventually(lambda: outbox_empty(outbox), "the first events to be sent")
    # the broker is down: orders are still placed, their events wait
    ids += await add_orders(outbox, range(3, 8))
    relay.wake()
    await asyncio.sleep(0.5)  # the relay tries, and fails, meanwhile
    assert await outbox.count_pending() == 5
    with pytest.raises(ConnectionError):
        await broker.ping()
    with nats_server(port, tmp_path / "nats"):
        await eventually(lambda: outbox_empty(outbox), "the waiting events to be sent")
        await broker.ping()
        messages = await stream_messages(broker)
        assert [headers(m)["Nats-Msg-Id"] for m in messages] == ids
        await relay.stop()
        await broker.close()


async def outbox_empty(outbox: Outbox) -> bool:
    return await outbox.count_pending() == 0


async def test_a_paused_relay_keeps_the_events(outbox: Outbox, broker: Broker) -> None:
    paused = True
    relay = Relay(outbox, broker, paused=lambda: paused)
    await add_orders(outbox, range(1, 3))
    assert await relay.publish_pending() == 0
    assert await outbox.count_pending() == 2
    paused = False
    assert await relay.publish_pending() == 2


# --- consumers ------------------------------------------------------------------------


class Notifier:
    """A handler writing one row per handled event (its effect) in the consumer's transaction."""

    def __init__(self, db: Database, fail_attempts: int = 0) -> None:
        self.db = db
        self.table = unique("sent")
        self.fail_attempts = fail_attempts
        self.attempts: list[int] = []

    async def setup(self) -> None:
        await self.db.execute(f"CREATE TABLE {self.table} (order_id TEXT, attempt INTEGER)")

    async def __call__(self, event: Event, tx: Transaction) -> None:
        self.attempts.append(event.attempt)
        assert isinstance(event.message, ev.OrderPlaced)
        await tx.execute(
            f"INSERT INTO {self.table} VALUES (%s, %s)", (event.message.order_id, event.attempt)
        )
        if event.attempt <= self.fail_attempts:
            raise RuntimeError("mailer down")

    async def sent(self) -> list[tuple[object, ...]]:
        return await self.db.execute(f"SELECT order_id, attempt FROM {self.table}")


@pytest.fixture
async def notifier(db: Database) -> AsyncIterator[Notifier]:
    n = Notifier(db)
    await n.setup()
    yield n
    await db.execute(f"DROP TABLE {n.table}")


@pytest.fixture
async def consumers(db: Database) -> AsyncIterator[Callable[..., EventConsumer]]:
    made: list[EventConsumer] = []

    def make(broker: Broker, handler: Notifier, **options: object) -> EventConsumer:
        consumer = EventConsumer(
            broker,
            db,
            "notify",
            [ORDER_PLACED],
            handler,
            processed_table=unique("processed"),
            **options,  # type: ignore[arg-type]
        )
        made.append(consumer)
        consumer.start()
        return consumer

    yield make
    for consumer in made:
        await consumer.stop()
        await consumer.processed.drop()


async def test_a_consumer_handles_each_event_once_even_when_published_again(
    outbox: Outbox, notifier: Notifier, consumers: Callable[..., EventConsumer], nats_url: str
) -> None:
    # a window of a second: the relay's second publication gets past de-duplication
    broker = Broker(nats_url, Stream(unique("T").upper(), duplicate_window=1.0))
    try:
        relay = Relay(outbox, broker)
        [event_id] = await add_orders(outbox, range(1, 2))
        await relay.publish_pending()
        consumer = consumers(broker, notifier)

        async def handled() -> bool:
            return len(await notifier.sent()) == 1

        await eventually(handled, "the event to be handled")
        assert await consumer.processed.seen("notify", event_id)
        await asyncio.sleep(1.2)
        await outbox.db.execute(f"UPDATE {outbox.table} SET sent_ns = NULL")
        await relay.publish_pending()
        assert len(await stream_messages(broker)) == 2  # the same event, twice
        js = await broker.jetstream()

        async def both_acked() -> bool:
            info = await js.consumer_info(broker.stream.name, "notify")
            return bool(info.ack_floor.stream_seq == 2 and info.num_pending == 0)

        await eventually(both_acked, "the second copy to be acknowledged")
        assert await notifier.sent() == [("o-1", 1)]  # handled once
    finally:
        await broker.stream.delete(await broker.jetstream())
        await broker.close()


async def test_a_failed_event_is_redelivered_and_its_effect_kept_once(
    outbox: Outbox, db: Database, broker: Broker, consumers: Callable[..., EventConsumer]
) -> None:
    notifier = Notifier(db, fail_attempts=1)
    await notifier.setup()
    try:
        await add_orders(outbox, range(1, 2))
        await Relay(outbox, broker).publish_pending()
        with capture_logs() as logs:
            consumers(broker, notifier, backoff=(0.1,))

            async def handled() -> bool:
                return notifier.attempts == [1, 2]

            await eventually(handled, "the redelivery to be handled")
        # the first attempt's row was rolled back with its transaction
        assert await notifier.sent() == [("o-1", 2)]
        [error] = logs.where(level="error")
        assert (error["error"], error["attempt"]) == ("mailer down", 1)
    finally:
        await db.execute(f"DROP TABLE {notifier.table}")


async def test_an_event_failing_every_delivery_goes_to_the_dead_letters(
    outbox: Outbox, db: Database, broker: Broker, consumers: Callable[..., EventConsumer]
) -> None:
    notifier = Notifier(db, fail_attempts=99)
    await notifier.setup()
    try:
        [event_id] = await add_orders(outbox, range(1, 2))
        await Relay(outbox, broker).publish_pending()
        consumer = consumers(broker, notifier, max_deliver=3, backoff=(0.1, 0.2))

        async def dead() -> bool:
            return len(await stream_messages(broker, "dead.notify")) == 1

        await eventually(dead, "a dead letter")
        [letter] = await stream_messages(broker, "dead.notify")
        assert notifier.attempts == [1, 2, 3]
        assert headers(letter)[EVENT_ID_HEADER] == event_id
        assert headers(letter)[DEAD_REASON_HEADER] == "RuntimeError: mailer down"
        assert ev.OrderPlaced.FromString(letter.data) == order(1)
        assert await notifier.sent() == []
        assert not await consumer.processed.seen("notify", event_id)
        await asyncio.sleep(0.5)  # terminated: never delivered again
        assert notifier.attempts == [1, 2, 3]
    finally:
        await db.execute(f"DROP TABLE {notifier.table}")


async def test_an_undecodable_message_goes_to_the_dead_letters_at_once(
    notifier: Notifier, broker: Broker, consumers: Callable[..., EventConsumer]
) -> None:
    js = await broker.jetstream()
    sent = {"Nats-Msg-Id": "bad-1", "event-type": "boutique.v1.OrderPlaced"}
    await js.publish(broker.stream.subject(ORDER_PLACED), b"\xff\xff\xff", headers=sent)
    with capture_logs() as logs:
        consumers(broker, notifier)

        async def dead() -> bool:
            return len(await stream_messages(broker, "dead.notify")) == 1

        await eventually(dead, "a dead letter")
    [letter] = await stream_messages(broker, "dead.notify")
    assert headers(letter)[EVENT_ID_HEADER] == "bad-1"
    assert letter.data == b"\xff\xff\xff"
    [error] = logs.where(level="error")
    assert error["msg"] == "undecodable event sent to the dead letters"
    assert error["event_id"] == "bad-1"
    assert "payload is no boutique.v1.OrderPlaced" in error["reason"]
    assert notifier.attempts == []


async def test_one_trace_goes_from_the_change_through_the_relay_to_the_consumer(
    outbox: Outbox, notifier: Notifier, broker: Broker, consumers: Callable[..., EventConsumer]
) -> None:
    with capture_spans() as spans:
        with clue.telemetry.tracer("test").start_as_current_span("PlaceOrder"):
            await add_orders(outbox, range(1, 2))
        [event] = await outbox.pending()
        await Relay(outbox, broker).publish_pending()  # outside the order's span
        consumers(broker, notifier)

        async def handled() -> bool:
            return notifier.attempts == [1]

        await eventually(handled, "the event to be handled")
        await eventually(
            lambda: asyncio.sleep(0, len(spans.where(kind=SpanKind.CONSUMER)) == 1),
            "the consumer span to end",
        )
    place = spans.one("PlaceOrder")
    subject = broker.stream.subject(ORDER_PLACED)
    publish = spans.one(f"publish {subject}", kind=SpanKind.PRODUCER)
    process = spans.one(f"process {subject}", kind=SpanKind.CONSUMER)
    assert event.headers["traceparent"].split("-")[1] == f"{place.context.trace_id:032x}"
    assert publish.parent is not None and publish.parent.span_id == place.context.span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == place.context.trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == event.event_id
    assert process.attributes["messaging.nats.message.settlement"] == "ack"


async def test_the_broker_is_a_health_pinger(broker: Broker) -> None:
    with pytest.raises(ConnectionError, match="not connected"):
        await broker.ping()
    await broker.jetstream()
    await broker.ping()
