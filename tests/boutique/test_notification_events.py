"""The notification service consuming real OrderPlaced events from a real NATS JetStream:
one e-mail and one record per event, nothing sent twice, dead letters after the retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats.errors
import pytest
from nats.js import api

from reference_services.common.database import Postgres, SQLite
from reference_services.common.events import (
    DEAD_REASON_HEADER,
    EVENT_ID_HEADER,
    ORDER_PLACED,
    Broker,
    Outbox,
    Relay,
    Stream,
)
from reference_services.common.runtime import GrpcService
from reference_services.email import service as email
from reference_services.notification import service as notification
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from tests.boutique.conftest import serving, stub_for, unique
from tests.boutique.tokens import History, issuing
from tests.conftest import Lines

T = TypeVar("T")
DEADLINE = 20.0
MAX_DELIVER = 3


async def eventually(read: Callable[[], Awaitable[T]], holds: Callable[[T], bool]) -> T:
    """``read()`` once it ``holds``; the test fails if it does not within `DEADLINE`."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not holds(value := await read()):
        assert asyncio.get_running_loop().time() < deadline, f"still {value}"
        await asyncio.sleep(0.02)
    return value


def order_placed(order_id: str, user_id: str = "alice") -> ev.OrderPlaced:
    eur = "EUR"
    return ev.OrderPlaced(
        order_id=order_id,
        user_id=user_id,
        email=f"{user_id}@Example.com",
        items=[
            ev.OrderLine(
                product_id="6E92ZMYYFZ",
                quantity=2,
                unit_cost=pb.Money(currency_code=eur, units=7, nanos=950_000_000),
            )
        ],
        shipping_cost=pb.Money(currency_code=eur, units=7, nanos=950_000_000),
        total=pb.Money(currency_code=eur, units=23, nanos=850_000_000),
        shipping_address=pb.Address(
            street_address="1 Rue de Rivoli", city="Paris", country="France", zip_code=75001
        ),
        tracking_id="AB-12345-123456789",
    )


@dataclass
class Rig:
    """An e-mail and a notification service on one test stream, and a producer of events."""

    email: GrpcService
    notification: GrpcService
    history: History  # with an admin's token
    producer: Broker
    outbox: Outbox
    relay: Relay
    user: str = field(default_factory=lambda: unique("alice"))
    events: list[str] = field(default_factory=list)

    async def place(self, order_id: str) -> str:
        """Publish an OrderPlaced the way a producer does (outbox, then relay); its event id."""
        async with self.outbox.db.transaction() as tx:
            event_id = await self.outbox.add(tx, ORDER_PLACED, order_placed(order_id, self.user))
        assert await self.relay.publish_pending() == 1
        self.events.append(event_id)
        return event_id

    async def notifications(self) -> list[npb.Notification]:
        request = npb.GetNotificationHistoryRequest(user_id=self.user)
        return list((await self.history.GetNotificationHistory(request)).notifications)

    async def consumer(self) -> api.ConsumerInfo:
        js = await self.producer.jetstream()
        return await js.consumer_info(self.producer.stream.name, notification.CONSUMER)


@pytest.fixture(params=["sqlite", "postgresql"])
async def rig(request: pytest.FixtureRequest, nats_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    """E-mail and notification services on a stream of their own, the notification store
    on SQLite or on the test PostgreSQL (its rows of the test deleted afterwards)."""
    stream = Stream(unique("NOTIFY").upper())
    database = f"sqlite:///{tmp_path / 'notification.db'}"
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres_url")
    async with AsyncExitStack() as stack:
        producer = Broker(nats_url, stream)
        stack.push_async_callback(producer.close)
        js = await producer.jetstream()  # makes the stream
        stack.push_async_callback(stream.delete, js)  # after the services stopped
        mail = await stack.enter_async_context(serving("email", await email.build()))
        issuer = await stack.enter_async_context(issuing(tmp_path))
        config = notification.Config(
            database_url=database,
            email_addr=mail.address,
            nats_url=nats_url,
            stream=stream.name,
            user_addr=issuer.address,
            max_deliver=MAX_DELIVER,
            backoff=(0.05,),
        )
        service = await stack.enter_async_context(
            serving("notification", await notification.build(config))
        )
        stub = await stack.enter_async_context(stub_for(service, npb_grpc.NotificationServiceStub))
        history = History(stub, issuer.token("root", role="admin"))
        outbox = Outbox(SQLite(tmp_path / "producer.db"))
        stack.push_async_callback(outbox.close)
        made = Rig(mail, service, history, producer, outbox, Relay(outbox, producer))
        if request.param == "postgresql":
            stack.push_async_callback(forget, database, made)
        yield made


async def forget(database: str, rig: Rig) -> None:
    """Delete what the test wrote into the shared PostgreSQL database."""
    db = Postgres(database)
    try:
        await db.execute("DELETE FROM notifications WHERE user_id = %s", (rig.user,))
        await db.execute("DELETE FROM order_recipients WHERE user_id = %s", (rig.user,))
        for event_id in rig.events:
            await db.execute("DELETE FROM processed_events WHERE event_id = %s", (event_id,))
    finally:
        await db.close()


def emails(lines: Lines, order_id: str) -> list[dict[str, Any]]:
    """The confirmations the e-mail service sent for ``order_id``."""
    return [e for e in lines.entries("order confirmation sent") if e["order_id"] == order_id]


async def test_an_order_placed_is_one_email_and_one_record(rig: Rig, lines: Lines) -> None:
    event_id = await rig.place("o-1")
    (sent,) = await eventually(rig.notifications, lambda found: len(found) == 1)
    assert sent.id == event_id
    assert (sent.channel, sent.status) == (npb.CHANNEL_EMAIL, npb.NOTIFICATION_STATUS_SENT)
    assert (sent.template, sent.subject) == ("order_confirmation", "Your boutique order o-1")
    assert (sent.order_id, sent.user_id, sent.email) == ("o-1", rig.user, f"{rig.user}@example.com")
    (mail,) = emails(lines, "o-1")
    assert "2 x 6E92ZMYYFZ at EUR 7.95 each" in mail["body"]
    assert "Tracking:    AB-12345-123456789" in mail["body"]
    by_email = npb.GetNotificationHistoryRequest(email=f"{rig.user.upper()}@example.com")
    assert [n.id for n in (await rig.history.GetNotificationHistory(by_email)).notifications] == [
        event_id
    ]


async def test_the_same_event_again_sends_nothing(rig: Rig, lines: Lines) -> None:
    event_id = await rig.place("o-2")
    await eventually(rig.notifications, lambda found: len(found) == 1)
    # The same event published again after the broker's duplicate window (as by a relay
    # that crashed after publishing, before marking it sent): a second delivery.
    js = await rig.producer.jetstream()
    stream = rig.producer.stream
    config = stream.config()
    config.duplicate_window = 0.2
    await js.update_stream(config)
    await asyncio.sleep(0.3)  # the window passes
    (row,) = await rig.outbox.db.execute(
        f"SELECT subject, headers_json, payload FROM {rig.outbox.table}"
    )
    headers = json.loads(row[1])
    ack = await js.publish(stream.subject(str(row[0])), bytes(row[2]), headers=headers)
    assert not ack.duplicate
    await eventually(rig.consumer, lambda info: info.ack_floor.stream_seq == ack.seq)
    assert [n.id for n in await rig.notifications()] == [event_id]
    assert len(emails(lines, "o-2")) == 1


async def test_failure_rate_one_redelivers_then_dead_letters(rig: Rig, lines: Lines) -> None:
    async with httpx.AsyncClient(base_url=rig.notification.admin.url) as admin:
        reply = await admin.post("/faults", params={"failure_rate": "1"})
        assert reply.json()["failure_rate"]["value"] == 1.0
    js = await rig.producer.jetstream()
    stream = rig.producer.stream
    dead = await js.subscribe(stream.dead_letters(notification.CONSUMER), stream=stream.name)
    event_id = await rig.place("o-3")
    letter = await dead.next_msg(timeout=DEADLINE)
    assert letter.headers is not None
    assert letter.headers[EVENT_ID_HEADER] == event_id
    reason = "NotificationFailed: failure_rate fault: confirmation not sent"
    assert letter.headers[DEAD_REASON_HEADER] == reason
    assert ev.OrderPlaced.FromString(letter.data).order_id == "o-3"
    # the consumer takes only order.placed, not its own dead letters (again and again)
    with pytest.raises(nats.errors.TimeoutError):
        await dead.next_msg(timeout=1.0)
    await eventually(rig.consumer, lambda info: info.num_ack_pending == 0)
    failures = [e for e in lines.entries() if e.get("message_id") == event_id]
    assert [(e["level"], e["attempt"]) for e in failures if e["level"] == "error"] == [
        ("error", n) for n in range(1, MAX_DELIVER + 1)
    ]
    assert emails(lines, "o-3") == []
    # the history says so: the dead letter is recorded as a failed notification
    (failed,) = await eventually(rig.notifications, lambda found: len(found) == 1)
    assert (failed.id, failed.order_id) == (event_id, "o-3")
    assert failed.status == npb.NOTIFICATION_STATUS_FAILED
    await dead.unsubscribe()
