"""The boutique's events over NATS JetStream (docs/boutique.md, "Events").

A producer writes each event in the database transaction of the change that
causes it, and a relay publishes it::

    broker = Broker()                     # NATS_URL; the BOUTIQUE stream made on connect
    outbox = Outbox(db)
    relay = Relay(outbox, broker, paused=lambda: FAULTS.on(PAUSE_SWITCH))
    relay.start()
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO orders ...", (...))
        await outbox.add(tx, ORDER_PLACED, events_pb2.OrderPlaced(order_id=...))
    relay.wake()

A consumer handles each event once in effect, in a transaction of its own
database in which the event is marked processed (use ``tx``, not the database,
in the handler)::

    async def on_order(event: Event, tx: Transaction) -> None:
        order = event.message        # an events_pb2.OrderPlaced
        await tx.execute("INSERT INTO notifications ...", (...))

    consumer = EventConsumer(broker, db, "notification", [ORDER_PLACED], on_order)
    consumer.start()

The broker is the services' health pinger (``Wiring(pingers=[broker, ...])``);
stop with ``await relay.stop()``, ``await consumer.stop()``, ``await broker.close()``.
"""

from reference_services.common.events.consumer import (
    BACKOFF,
    DEAD_REASON_HEADER,
    DEAD_SUBJECT_HEADER,
    EVENT_ID_HEADER,
    Event,
    EventConsumer,
    Handler,
    Processed,
    Undecodable,
)
from reference_services.common.events.contract import (
    EVENT_VERSION,
    EVENTS,
    ID_HEADER,
    INVENTORY_LOW_STOCK,
    ORDER_PLACED,
    ORDER_STATUS_CHANGED,
    PAYMENT_COMPLETED,
    PAYMENT_REFUNDED,
    SHIPMENT_DELIVERED,
    SHIPMENT_PICKED_UP,
    TYPE_HEADER,
    USER_REGISTERED,
    VERSION_HEADER,
    ContractError,
)
from reference_services.common.events.outbox import Outbox, OutboxEvent
from reference_services.common.events.relay import PAUSE_SWITCH, Relay, pause_switch
from reference_services.common.events.stream import (
    DEFAULT_NATS_URL,
    DUPLICATE_WINDOW,
    Broker,
    Stream,
    nats_url,
)

__all__ = [
    "BACKOFF",
    "DEAD_REASON_HEADER",
    "DEAD_SUBJECT_HEADER",
    "DEFAULT_NATS_URL",
    "DUPLICATE_WINDOW",
    "EVENTS",
    "EVENT_ID_HEADER",
    "EVENT_VERSION",
    "ID_HEADER",
    "INVENTORY_LOW_STOCK",
    "ORDER_PLACED",
    "ORDER_STATUS_CHANGED",
    "PAUSE_SWITCH",
    "PAYMENT_COMPLETED",
    "PAYMENT_REFUNDED",
    "SHIPMENT_DELIVERED",
    "SHIPMENT_PICKED_UP",
    "TYPE_HEADER",
    "USER_REGISTERED",
    "VERSION_HEADER",
    "Broker",
    "ContractError",
    "Event",
    "EventConsumer",
    "Handler",
    "Outbox",
    "OutboxEvent",
    "Processed",
    "Relay",
    "Stream",
    "Undecodable",
    "nats_url",
    "pause_switch",
]
