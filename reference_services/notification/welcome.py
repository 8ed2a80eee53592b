"""Welcome notes: each ``boutique.user.registered`` event becomes one welcome, recorded.

The hipstershop EmailService (whose contract stays as upstream has it) only sends
order confirmations, so the welcome goes out on the notification service's own
e-mail channel: its log line ``welcome e-mail sent`` is the message, and the
notification (template ``welcome``, no order) is recorded in the consumer's
transaction with the event's "processed" mark, so a redelivered event sends
nothing again.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from clue import log
from reference_services.common.database import Transaction
from reference_services.common.events import Event
from reference_services.notification.confirmations import CHANNEL
from reference_services.notification.store import Notification, NotificationStore
from reference_services.protos.boutique.v1 import events_pb2 as ev

CONSUMER = "notification-welcome"
"""The durable consumer of ``boutique.user.registered``."""
TEMPLATE = "welcome"
SUBJECT = "Welcome to the boutique"


class Welcomes:
    """Sends a new account its welcome e-mail, and records it."""

    def __init__(self, store: NotificationStore) -> None:
        self.store = store

    async def __call__(self, event: Event, tx: Transaction) -> None:
        """Handle one ``boutique.user.registered`` event in the consumer's transaction ``tx``."""
        registered = event.message
        if not isinstance(registered, ev.UserRegistered):
            raise TypeError(f"welcomes take UserRegistered, not {type(registered).__name__}")
        trace.get_current_span().set_attribute("app.user.id", registered.user_id)
        with log.context(user_id=registered.user_id):
            # the e-mail itself: this line, always written (the user id, never the address)
            log.print("welcome e-mail sent", template=TEMPLATE, attempt=event.attempt)
            await self.store.record(
                Notification(
                    id=event.event_id,
                    channel=CHANNEL,
                    template=TEMPLATE,
                    subject=SUBJECT,
                    status="sent",
                    sent_at_ns=time.time_ns(),
                    order_id="",
                    user_id=registered.user_id,
                    email=registered.email.lower(),
                ),
                tx,
            )
