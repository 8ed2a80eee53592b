"""Failed notifications: each order confirmation given up on is recorded as failed.

The confirmations' consumer sends an event it could not handle to its dead-letter
subject (``boutique.dead.notification``), as it came, with its id in the
``event-id`` header. A second durable consumer reads them there and records a
notification with status ``failed``, so the customer's history shows the e-mail
that never went. It is the common event consumer, pointed at the dead letters:
the same transaction, idempotency and redelivery.
"""

from __future__ import annotations

import time

from nats.aio.msg import Msg
from nats.js import api

from clue import messaging
from reference_services.common.database import Transaction
from reference_services.common.events import (
    EVENT_ID_HEADER,
    ORDER_PLACED,
    TYPE_HEADER,
    Event,
    EventConsumer,
    Undecodable,
)
from reference_services.notification.confirmations import CHANNEL, CONSUMER, TEMPLATE, subject
from reference_services.notification.orders import learn
from reference_services.notification.store import Notification, NotificationStore
from reference_services.protos.boutique.v1 import events_pb2 as ev

ORDER_PLACED_TYPE = ev.OrderPlaced.DESCRIPTOR.full_name


class DeadLetters(EventConsumer):
    """A consumer of the confirmations' dead letters (give it the subject ORDER_PLACED,
    the events they hold)."""

    def config(self) -> api.ConsumerConfig:
        """The common configuration, filtered on the dead-letter subject instead."""
        config = super().config()
        config.filter_subject = self.broker.stream.dead_letters(CONSUMER)
        config.filter_subjects = None
        return config

    def decode(self, msg: Msg, headers: dict[str, str], event_id: str, attempt: int) -> Event:
        """The OrderPlaced a dead letter carries, with its event id; Undecodable else."""
        letter_id = messaging.header(headers, EVENT_ID_HEADER) or ""
        if not letter_id:
            raise Undecodable(f"no {EVENT_ID_HEADER} header")
        named = messaging.header(headers, TYPE_HEADER)
        if named != ORDER_PLACED_TYPE:
            raise Undecodable(f"event-type {str(named)[:80]!r} is not {ORDER_PLACED_TYPE}")
        try:
            placed = ev.OrderPlaced.FromString(msg.data)
        except Exception as exc:  # protobuf's DecodeError, or a message of another shape
            raise Undecodable(f"payload is no {ORDER_PLACED_TYPE}: {exc}") from None
        return Event(letter_id, ORDER_PLACED, placed, attempt, headers)


class FailedConfirmations:
    """Records a dead-lettered order confirmation as a failed notification."""

    def __init__(self, store: NotificationStore) -> None:
        self.store = store

    async def __call__(self, event: Event, tx: Transaction) -> None:
        """Write the failed notification in the consumer's transaction ``tx`` (kept as it is
        when the event's notification is already recorded)."""
        placed = event.message
        if not isinstance(placed, ev.OrderPlaced):
            raise TypeError(f"failed confirmations take OrderPlaced, not {type(placed).__name__}")
        # the order's later e-mails need not wait for its confirmation's replay
        await learn(self.store, tx, placed, event.attempt)
        await self.store.record(
            Notification(
                id=event.event_id,
                channel=CHANNEL,
                template=TEMPLATE,
                subject=subject(placed),
                status="failed",
                sent_at_ns=time.time_ns(),
                order_id=placed.order_id,
                user_id=placed.user_id,
                email=placed.email.lower(),
            ),
            tx,
        )
