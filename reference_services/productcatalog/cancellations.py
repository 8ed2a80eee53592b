"""The consumer ``productcatalog-cancellations``: an order that ends cancelled or failed
gets its stock back.

It reads ``boutique.order.status_changed`` and releases the order's reservation when
the order moves to CANCELLED (a committed one is restocked) or FAILED (a held one
stops holding). The checkout releases the stock itself when it cancels or
compensates; this consumer makes sure of it when that call was lost, at no cost when
it was not: releasing twice changes nothing. The release commits with the event's
processed mark, in the store's own database.
"""

from __future__ import annotations

from opentelemetry import trace

from clue import log
from reference_services.common.database import Transaction
from reference_services.common.events import Event, Relay
from reference_services.common.fields import MAX_ID
from reference_services.productcatalog.stock_store import StockStore
from reference_services.protos.boutique.v1 import events_pb2 as ev

CONSUMER = "productcatalog-cancellations"
ENDED = (ev.ORDER_STATUS_CANCELLED, ev.ORDER_STATUS_FAILED)


class Cancellations:
    """The handler: releases the stock of each order that moved to an ended status."""

    def __init__(self, store: StockStore, relay: Relay | None = None) -> None:
        self.store = store
        self.relay = relay

    async def __call__(self, event: Event, tx: Transaction) -> None:
        change = event.message
        assert isinstance(change, ev.OrderStatusChanged)
        if change.to_status not in ENDED:
            return
        if not change.order_id or len(change.order_id) > MAX_ID:  # nothing of ours to release
            log.warn("status change without a usable order id", event_id=event.event_id)
            return
        trace.get_current_span().set_attribute("app.order.id", change.order_id)
        released = await self.store.release_in(tx, change.order_id)
        log.info(
            "stock released for an ended order",
            order_id=change.order_id,
            status=ev.OrderStatus.Name(change.to_status),
            lines=len(released.lines),
        )
        if self.relay is not None:
            self.relay.wake()  # a product may have come back above the low level
