"""An order's later news: shipped, delivered, cancelled and refunded, one e-mail each.

Two durable consumers: ``notification-status`` of ``boutique.order.status_changed``
(IN_TRANSIT is "shipped": the courier has the parcel, the label was in the
confirmation; DELIVERED; CANCELLED; other moves send nothing) and
``notification-refunds`` of ``boutique.payment.refunded``. As for the welcome, the
e-mail goes out on the service's own channel (its line ``order e-mail sent``,
always written) and is recorded with the event's "processed" mark, in one
transaction, so a redelivered event sends nothing again.

These events do not say who the customer is: the service learns it from the
order's OrderPlaced (see `learn`, called when its confirmation is sent or given
up on). An event that comes first, from another producer (a refund) or
overtaking a confirmation being retried, is parked and sent when the order's
customer is learnt. A refund of an order that was never placed (a checkout
compensated before its end, whose customer saw it fail) stays parked.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from clue import log
from reference_services.common.database import Transaction
from reference_services.common.events import ORDER_STATUS_CHANGED, PAYMENT_REFUNDED, Event
from reference_services.notification.store import Notification, NotificationStore
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev

CONSUMER = "notification-status"
"""The durable consumer of ``boutique.order.status_changed``."""
REFUNDS = "notification-refunds"
"""The durable consumer of ``boutique.payment.refunded``."""
REFUNDED = "order_refunded"
#: the status an order moved to -> (template, subject with {order_id}) of its e-mail
STATUS_MAIL: dict[int, tuple[str, str]] = {
    ev.ORDER_STATUS_IN_TRANSIT: ("order_shipped", "Your boutique order {order_id} is on its way"),
    ev.ORDER_STATUS_DELIVERED: ("order_delivered", "Your boutique order {order_id} was delivered"),
    ev.ORDER_STATUS_CANCELLED: ("order_cancelled", "Your boutique order {order_id} is cancelled"),
}


def amount(money: pb.Money) -> str:
    """``EUR 23.85``: an amount as the e-mails show it."""
    cents = money.units * 100 + money.nanos // 10_000_000
    sign, cents = ("-", -cents) if cents < 0 else ("", cents)
    return f"{money.currency_code} {sign}{cents // 100}.{cents % 100:02d}"


def mail_of(event: Event) -> tuple[str, str, str] | None:
    """(order id, template, subject) of the e-mail ``event`` calls for; None: none."""
    message = event.message
    if event.subject == ORDER_STATUS_CHANGED and isinstance(message, ev.OrderStatusChanged):
        found = STATUS_MAIL.get(message.to_status)
        if found is None:
            return None
        template, subject = found
        return message.order_id, template, subject.format(order_id=message.order_id)
    if event.subject == PAYMENT_REFUNDED and isinstance(message, ev.PaymentRefunded):
        subject = f"Your refund of {amount(message.amount)} for boutique order {message.order_id}"
        return message.order_id, REFUNDED, subject
    raise TypeError(f"order e-mails take no {type(message).__name__} on {event.subject}")


def sent(notification: Notification, attempt: int) -> None:
    """The e-mail itself: its line, always written (the user id, never the address)."""
    log.print(
        "order e-mail sent",
        template=notification.template,
        order_id=notification.order_id,
        user_id=notification.user_id,
        attempt=attempt,
    )


async def learn(
    store: NotificationStore, tx: Transaction, placed: ev.OrderPlaced, attempt: int
) -> None:
    """Remember whose order ``placed`` is, in ``tx``; send what was parked for it."""
    email = placed.email.lower()
    released = await store.learn(tx, placed.order_id, placed.user_id, email, time.time_ns())
    for notification in released:
        sent(notification, attempt)


class OrderMails:
    """Sends the e-mail an order's status change or refund calls for, and records it."""

    def __init__(self, store: NotificationStore) -> None:
        self.store = store

    async def __call__(self, event: Event, tx: Transaction) -> None:
        """Handle one status change or refund in the consumer's transaction ``tx``."""
        mail = mail_of(event)
        if mail is None:
            return  # a move the customer is not told of (PAID, SHIPPED, FAILED)
        order_id, template, subject = mail
        trace.get_current_span().set_attribute("app.order.id", order_id)
        with log.context(order_id=order_id):
            now = time.time_ns()
            recipient = await self.store.recipient(tx, order_id)
            if recipient is None:
                await self.store.park(tx, event.event_id, order_id, template, subject, now)
                log.info("order e-mail parked until the order is known", template=template)
                return
            user_id, email = recipient
            notification = Notification(
                id=event.event_id,
                channel="email",
                template=template,
                subject=subject,
                status="sent",
                sent_at_ns=now,
                order_id=order_id,
                user_id=user_id,
                email=email,
            )
            if await self.store.record(notification, tx):
                sent(notification, event.attempt)
