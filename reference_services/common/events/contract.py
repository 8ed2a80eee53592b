"""The event contract: which ``boutique.v1`` message each subject carries, and its headers."""

from __future__ import annotations

from google.protobuf.message import Message

from reference_services.protos.boutique.v1 import events_pb2 as ev

USER_REGISTERED = "boutique.user.registered"
ORDER_PLACED = "boutique.order.placed"
ORDER_STATUS_CHANGED = "boutique.order.status_changed"
PAYMENT_COMPLETED = "boutique.payment.completed"
PAYMENT_REFUNDED = "boutique.payment.refunded"
INVENTORY_LOW_STOCK = "boutique.inventory.low_stock"
SHIPMENT_PICKED_UP = "boutique.shipment.picked_up"
SHIPMENT_DELIVERED = "boutique.shipment.delivered"

#: Subject -> the message it carries (docs/boutique.md, "Events").
EVENTS: dict[str, type[Message]] = {
    USER_REGISTERED: ev.UserRegistered,
    ORDER_PLACED: ev.OrderPlaced,
    ORDER_STATUS_CHANGED: ev.OrderStatusChanged,
    PAYMENT_COMPLETED: ev.PaymentCompleted,
    PAYMENT_REFUNDED: ev.PaymentRefunded,
    INVENTORY_LOW_STOCK: ev.LowStock,
    SHIPMENT_PICKED_UP: ev.ShipmentPickedUp,
    SHIPMENT_DELIVERED: ev.ShipmentDelivered,
}

ROOT = "boutique"
"""The first token of every event subject (the stream's subjects are ``boutique.>``)."""
EVENT_VERSION = "1"
TYPE_HEADER = "event-type"
VERSION_HEADER = "event-version"
ID_HEADER = "Nats-Msg-Id"
"""The event id: JetStream drops a second message with the same id (its duplicate window)."""


class ContractError(ValueError):
    """A subject or message outside the contract."""


def event_type(subject: str) -> type[Message]:
    """The message class ``subject`` carries; ContractError for an unknown subject."""
    try:
        return EVENTS[subject]
    except KeyError:
        raise ContractError(f"no event is published on {subject[:80]!r}") from None


def check(subject: str, message: Message) -> None:
    """ContractError unless ``message`` is what ``subject`` carries."""
    expected = event_type(subject)
    if type(message) is not expected:
        raise ContractError(
            f"{subject} carries {expected.DESCRIPTOR.full_name}, not {message.DESCRIPTOR.full_name}"
        )
