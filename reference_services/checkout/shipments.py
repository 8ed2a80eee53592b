"""The courier's events move orders on: picked up -> IN_TRANSIT, delivered -> DELIVERED.

Durable consumers of ``boutique.shipment.picked_up`` and ``.delivered`` in the
order database: each event is handled once (its id marked processed in the
transaction of the move), in the trace the courier's event carries, and the
move's ``boutique.order.status_changed`` event goes out through the outbox.
An order already at or past the status is left alone (a late or repeated
event); a pickup seen before the saga marked the order SHIPPED is retried
later by redelivery.
"""

from __future__ import annotations

from clue import log
from reference_services.checkout.order_service import trace_id
from reference_services.checkout.orders import OrderStore
from reference_services.common.database import Transaction
from reference_services.common.events import (
    SHIPMENT_DELIVERED,
    SHIPMENT_PICKED_UP,
    Broker,
    Event,
    EventConsumer,
    Outbox,
    Relay,
)
from reference_services.protos.boutique.v1 import events_pb2 as ev

CONSUMERS = {SHIPMENT_PICKED_UP: "checkout-pickups", SHIPMENT_DELIVERED: "checkout-deliveries"}
"""One durable consumer per subject (several subjects in one need NATS 2.10)."""
IN_TRANSIT, DELIVERED = "IN_TRANSIT", "DELIVERED"
#: event subject -> the moves it makes from each status (a delivery seen first moves twice)
MOVES: dict[str, dict[str, tuple[str, ...]]] = {
    SHIPMENT_PICKED_UP: {"SHIPPED": (IN_TRANSIT,)},
    SHIPMENT_DELIVERED: {"SHIPPED": (IN_TRANSIT, DELIVERED), IN_TRANSIT: (DELIVERED,)},
}
#: status -> the event subjects that find it already moved
DONE_WITH: dict[str, frozenset[str]] = {
    IN_TRANSIT: frozenset({SHIPMENT_PICKED_UP}),
    DELIVERED: frozenset({SHIPMENT_PICKED_UP, SHIPMENT_DELIVERED}),
    "CANCELLED": frozenset({SHIPMENT_PICKED_UP, SHIPMENT_DELIVERED}),
    "FAILED": frozenset({SHIPMENT_PICKED_UP, SHIPMENT_DELIVERED}),
}
REASONS = {IN_TRANSIT: "picked up by the courier", DELIVERED: "delivered"}


class NotYetShipped(Exception):
    """The order is still being placed: the event comes back later."""


class ShipmentEvents:
    """Handles the courier's events for the orders of ``store``."""

    def __init__(self, store: OrderStore, outbox: Outbox, relay: Relay) -> None:
        self.store = store
        self.outbox = outbox
        self.relay = relay

    def consumers(self, broker: Broker) -> list[EventConsumer]:
        """The durable consumers handling them, marking them in the order database."""
        return [
            EventConsumer(broker, self.store.db, name, [subject], self.handle)
            for subject, name in CONSUMERS.items()
        ]

    async def handle(self, event: Event, tx: Transaction) -> None:
        """Move the event's order, in ``tx``."""
        message = event.message
        assert isinstance(message, ev.ShipmentPickedUp | ev.ShipmentDelivered)
        order_id = message.order_id
        rows = await tx.execute(
            f"SELECT status FROM {self.store.table} WHERE order_id = %s", (order_id,)
        )
        if not rows:
            log.warn("shipment event for an unknown order", order_id=order_id[:128])
            return
        status = str(rows[0][0])
        if event.subject in DONE_WITH.get(status, frozenset()):
            log.info("shipment event changes nothing", order_id=order_id, status=status)
            return
        moves = MOVES[event.subject].get(status)
        if moves is None:
            raise NotYetShipped(f"order {order_id} is {status}, not shipped yet")
        for to in moves:
            await self.store.move(tx, order_id, to, REASONS[to], trace_id(), self.outbox)
        self.relay.wake()
        log.info("order moved by the courier", order_id=order_id, status=moves[-1])
