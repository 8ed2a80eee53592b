"""Order confirmations: each ``boutique.order.placed`` event becomes one e-mail, recorded.

The handler runs in the event consumer's transaction (reference_services/common/events):
the notification is written there with the event's "processed" mark, so a redelivered
event finds the mark and sends nothing. It fails (and the event is redelivered with
back-off, then dead-lettered) when the e-mail service refuses or is unreachable, or
when the ``failure_rate`` fault switch says so.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from clue import log
from reference_services.common.database import Transaction
from reference_services.common.events import Event
from reference_services.common.faults import Faults, Rate
from reference_services.email.service import IDEMPOTENCY_KEY
from reference_services.notification.orders import learn
from reference_services.notification.store import Notification, NotificationStore
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev

CONSUMER = "notification"
"""The durable consumer of ``boutique.order.placed``."""
TEMPLATE = "order_confirmation"
CHANNEL = "email"
FAILURE_RATE = "failure_rate"
CALL_TIMEOUT = 5.0


class NotificationFailed(Exception):
    """A notification was not sent (this delivery of its event fails)."""


def faults() -> Faults:
    """The notification service's switches."""
    return Faults(
        Rate(FAILURE_RATE, "share of events whose handling fails (redelivered, then dead-lettered)")
    )


def order_result(placed: ev.OrderPlaced) -> pb.OrderResult:
    """The order as EmailService.SendOrderConfirmation takes it."""
    return pb.OrderResult(
        order_id=placed.order_id,
        shipping_tracking_id=placed.tracking_id,
        shipping_cost=placed.shipping_cost,
        shipping_address=placed.shipping_address,
        items=[
            pb.OrderItem(
                item=pb.CartItem(product_id=line.product_id, quantity=line.quantity),
                cost=line.unit_cost,
            )
            for line in placed.items
        ],
    )


def subject(placed: ev.OrderPlaced) -> str:
    """The confirmation's subject line (the one the e-mail service renders)."""
    return f"Your boutique order {placed.order_id}"


class OrderConfirmations:
    """Sends the confirmation of a placed order through the e-mail service, and records it."""

    def __init__(
        self, email: pb_grpc.EmailServiceAsyncStub, store: NotificationStore, switches: Faults
    ) -> None:
        self.email = email
        self.store = store
        self.faults = switches

    async def __call__(self, event: Event, tx: Transaction) -> None:
        """Handle one ``boutique.order.placed`` event in the consumer's transaction ``tx``."""
        placed = event.message
        if not isinstance(placed, ev.OrderPlaced):
            raise TypeError(f"order confirmations take OrderPlaced, not {type(placed).__name__}")
        trace.get_current_span().set_attribute("app.order.id", placed.order_id)
        with log.context(order_id=placed.order_id):
            log.info("sending order confirmation", attempt=event.attempt)
            if self.faults.roll(FAILURE_RATE):
                raise NotificationFailed(f"{FAILURE_RATE} fault: confirmation not sent")
            await self.email.SendOrderConfirmation(
                pb.SendOrderConfirmationRequest(email=placed.email, order=order_result(placed)),
                timeout=CALL_TIMEOUT,
                # a delivery again after a crash between the e-mail and the commit: not resent
                metadata=((IDEMPOTENCY_KEY, event.event_id),),
            )
            await learn(self.store, tx, placed, event.attempt)
            await self.store.record(
                Notification(
                    id=event.event_id,
                    channel=CHANNEL,
                    template=TEMPLATE,
                    subject=subject(placed),
                    status="sent",
                    sent_at_ns=time.time_ns(),
                    order_id=placed.order_id,
                    user_id=placed.user_id,
                    email=placed.email.lower(),
                ),
                tx,
            )
            log.info("notification recorded", template=TEMPLATE, attempt=event.attempt)
