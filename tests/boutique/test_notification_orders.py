"""An order's later news from real events on a real NATS JetStream: shipped, delivered,
cancelled and refunded, one e-mail and one record each, whatever order the events come in."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import pytest
from google.protobuf.message import Message
from nats.js import api

from reference_services.common.database import Postgres
from reference_services.common.events import (
    ID_HEADER,
    ORDER_STATUS_CHANGED,
    PAYMENT_REFUNDED,
)
from reference_services.notification.orders import CONSUMER as STATUS
from reference_services.notification.orders import REFUNDS
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from tests.boutique.conftest import unique
from tests.boutique.test_notification_events import Rig, eventually, rig
from tests.conftest import Lines

__all__ = ["rig"]  # the fixture, shared with the confirmations' tests


@pytest.fixture
async def orders(rig: Rig, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """The rig; on PostgreSQL, the orders' rows of the test deleted afterwards."""
    yield rig
    if request.node.callspec.params["rig"] == "postgresql":
        db = Postgres(request.getfixturevalue("postgres_url"))
        try:
            # what a test parked and did not release (the others go with the rig's rows)
            pattern = f"{rig.user}%"
            await db.execute("DELETE FROM parked_notifications WHERE order_id LIKE %s", (pattern,))
        finally:
            await db.close()


async def publish(rig: Rig, subject: str, message: Message) -> str:
    """Publish an event the way its producer does (outbox, relay); its event id."""
    async with rig.outbox.db.transaction() as tx:
        event_id = await rig.outbox.add(tx, subject, message)
    assert await rig.relay.publish_pending() == 1
    rig.events.append(event_id)
    return event_id


def moved(order_id: str, before: ev.OrderStatus, after: ev.OrderStatus) -> ev.OrderStatusChanged:
    return ev.OrderStatusChanged(
        order_id=order_id, from_status=before, to_status=after, reason="test"
    )


def refunded(order_id: str) -> ev.PaymentRefunded:
    money = pb.Money(currency_code="EUR", units=23, nanos=850_000_000)
    return ev.PaymentRefunded(
        payment_id=unique("pay"), order_id=order_id, amount=money, reason="cancelled"
    )


async def info(rig: Rig, consumer: str) -> api.ConsumerInfo:
    js = await rig.producer.jetstream()
    got: api.ConsumerInfo = await js.consumer_info(rig.producer.stream.name, consumer)
    return got


def done(got: api.ConsumerInfo, messages: int) -> bool:
    """Whether the consumer has acknowledged ``messages`` and holds no other."""
    acked = got.ack_floor.consumer_seq if got.ack_floor else 0
    return acked >= messages and not got.num_pending and not got.num_ack_pending


def mails(lines: Lines, order_id: str) -> list[str]:
    """The templates of the order e-mails sent for ``order_id``, in order."""
    return [e["template"] for e in lines.entries("order e-mail sent") if e["order_id"] == order_id]


def by_template(found: list[npb.Notification], order_id: str) -> dict[str, npb.Notification]:
    return {n.template: n for n in found if n.order_id == order_id}


async def test_shipped_delivered_cancelled_and_refunded_each_send_one_email(
    orders: Rig, lines: Lines
) -> None:
    rig = orders
    travelling, cancelled = f"{rig.user}-1", f"{rig.user}-2"
    await rig.place(travelling)
    await rig.place(cancelled)
    shipped = await publish(
        rig,
        ORDER_STATUS_CHANGED,
        moved(travelling, ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_IN_TRANSIT),
    )
    await publish(
        rig,
        ORDER_STATUS_CHANGED,
        moved(travelling, ev.ORDER_STATUS_IN_TRANSIT, ev.ORDER_STATUS_DELIVERED),
    )
    await publish(
        rig,
        ORDER_STATUS_CHANGED,
        moved(cancelled, ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_CANCELLED),
    )
    await publish(rig, PAYMENT_REFUNDED, refunded(cancelled))
    # a move the customer is not told of
    await publish(
        rig, ORDER_STATUS_CHANGED, moved(cancelled, ev.ORDER_STATUS_PENDING, ev.ORDER_STATUS_PAID)
    )
    found = await eventually(rig.notifications, lambda found: len(found) == 6)
    first = by_template(found, travelling)
    assert first["order_shipped"].subject == f"Your boutique order {travelling} is on its way"
    assert first["order_shipped"].id == shipped
    assert first["order_delivered"].subject == f"Your boutique order {travelling} was delivered"
    second = by_template(found, cancelled)
    assert second["order_cancelled"].subject == f"Your boutique order {cancelled} is cancelled"
    refund = second["order_refunded"]
    assert refund.subject == f"Your refund of EUR 23.85 for boutique order {cancelled}"
    for n in found:
        assert (n.channel, n.status) == (npb.CHANNEL_EMAIL, npb.NOTIFICATION_STATUS_SENT)
        assert (n.user_id, n.email) == (rig.user, f"{rig.user}@example.com")
    assert sorted(mails(lines, travelling)) == ["order_delivered", "order_shipped"]
    assert sorted(mails(lines, cancelled)) == ["order_cancelled", "order_refunded"]
    # the same status event delivered again (published after the duplicate window, as by
    # a relay that crashed before marking it sent) sends nothing
    js = await rig.producer.jetstream()
    stream = rig.producer.stream
    config = stream.config()
    config.duplicate_window = 0.2
    await js.update_stream(config)
    await asyncio.sleep(0.3)
    again = moved(travelling, ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_IN_TRANSIT)
    ack = await js.publish(
        stream.subject(ORDER_STATUS_CHANGED),
        again.SerializeToString(),
        headers={
            ID_HEADER: shipped,
            "event-type": again.DESCRIPTOR.full_name,
            "event-version": "1",
        },
    )
    assert not ack.duplicate

    await eventually(
        lambda: info(rig, STATUS),
        lambda got: bool(got.ack_floor and got.ack_floor.stream_seq >= ack.seq),
    )
    assert len(await rig.notifications()) == 6
    assert mails(lines, travelling).count("order_shipped") == 1


async def test_news_before_the_order_is_known_is_sent_once_it_is(orders: Rig, lines: Lines) -> None:
    """A refund (another producer) or a status change overtaking its OrderPlaced waits."""
    rig = orders
    order_id = f"{rig.user}-3"
    await publish(rig, PAYMENT_REFUNDED, refunded(order_id))
    await publish(
        rig,
        ORDER_STATUS_CHANGED,
        moved(order_id, ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_CANCELLED),
    )
    for consumer in (STATUS, REFUNDS):  # each took its event, and parked its e-mail
        await eventually(functools.partial(info, rig, consumer), lambda got: done(got, 1))
    assert await rig.notifications() == []
    await rig.place(order_id)
    found = await eventually(rig.notifications, lambda found: len(found) == 3)
    assert sorted(n.template for n in found) == [
        "order_cancelled",
        "order_confirmation",
        "order_refunded",
    ]
    assert sorted(mails(lines, order_id)) == ["order_cancelled", "order_refunded"]
