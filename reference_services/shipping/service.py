"""ShippingService over gRPC, and beside it the ShipmentService with its courier.

The upstream ShipOrder answers a tracking id as before; called with the metadata
``boutique-order-id`` it also records the order's shipment (see `shipments`),
which a simulated courier (see `courier`) picks up and delivers, publishing
its events through the outbox of the service's own store.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace

from clue import log
from reference_services.common import fields
from reference_services.common.config import env_float
from reference_services.common.database import StoreUnavailable, open_database
from reference_services.common.events import Broker, Outbox, Relay, Stream, nats_url
from reference_services.common.faults import Faults, Rate
from reference_services.common.money import format_money
from reference_services.common.rpc import Context, invalid_argument, rpc, unavailable
from reference_services.common.runtime import Entry, Wiring
from reference_services.common.settings import store_url
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc
from reference_services.shipping.courier import DELIVERY_DELAY, PICKUP_DELAY, Courier
from reference_services.shipping.quote import quote, tracking_id
from reference_services.shipping.shipment_store import ShipmentStore
from reference_services.shipping.shipments import Shipments, order_id_of

MAX_DELAY = 7 * 24 * 3600.0
"""The longest courier delay accepted: a week."""


def faults() -> Faults:
    """The shipping switch: a share of ShipOrder calls fails as if the carrier were down."""
    return Faults(Rate("failure_rate", "share of ShipOrder calls that fail (carrier unavailable)"))


class Shipping(pb_grpc.ShippingServiceServicer):
    """Quotes shipping costs and ships orders (recording those shipped with an order id)."""

    def __init__(self, switches: Faults, shipments: Shipments | None = None) -> None:
        self.faults = switches
        self.shipments = shipments

    @rpc
    async def GetQuote(self, request: pb.GetQuoteRequest, context: Context) -> pb.GetQuoteResponse:
        """USD 0 for no items, a flat USD 8.99 otherwise; the address may be blank."""
        fields.address(request.address, required=False)
        count = fields.cart_items(request.items)
        cost = quote(request.items)
        span = trace.get_current_span()
        span.set_attribute("app.shipping.items", count)
        span.set_attribute("app.shipping.cost", format_money(cost))
        return pb.GetQuoteResponse(cost_usd=cost)

    @rpc
    async def ShipOrder(
        self, request: pb.ShipOrderRequest, context: Context
    ) -> pb.ShipOrderResponse:
        """A tracking id for the parcel; the address and at least one item are required.

        With the metadata ``boutique-order-id`` the order's shipment is recorded, and a
        retry for the same order answers the same tracking id.
        """
        if not request.HasField("address"):
            raise invalid_argument("address is required")
        fields.address(request.address)
        if fields.cart_items(request.items) == 0:
            raise invalid_argument("items must hold at least one unit to ship")
        order_id = order_id_of(context) if self.shipments else None
        span = trace.get_current_span()
        if self.faults.roll("failure_rate"):
            span.set_attribute("app.shipping.failure_reason", "carrier_unavailable")
            log.error("shipping failed", reason="carrier_unavailable", order_id=order_id or "")
            raise unavailable("carrier unavailable (injected fault failure_rate)")
        tracking = tracking_id(request.address)
        if self.shipments is not None and order_id is not None:
            tracking = await self.shipments.record(order_id, tracking)
        span.set_attribute("app.shipping.tracking_id", tracking)
        log.info("order shipped", tracking_id=tracking, country=request.address.country)
        return pb.ShipOrderResponse(tracking_id=tracking)


@dataclass(frozen=True)
class Config:
    """Where the shipments and the broker are; how long the courier takes."""

    database_url: str
    nats_url: str
    stream: str = "BOUTIQUE"
    pickup_delay: float = PICKUP_DELAY
    """Seconds from the label to the pickup."""
    delivery_delay: float = DELIVERY_DELAY
    """Seconds from the pickup to the delivery."""

    @classmethod
    def from_env(cls) -> Config:
        """``SHIPPING_DATABASE_URL`` (default ``$DATA_DIR/shipping.db``, or postgresql://...),
        ``NATS_URL``, ``EVENTS_STREAM``, ``SHIPPING_PICKUP_DELAY_S`` (default 30) and
        ``SHIPPING_DELIVERY_DELAY_S`` (default 60; both 0 to a week, fractions allowed)."""
        return cls(
            database_url=store_url("SHIPPING_DATABASE_URL", "shipping.db"),
            nats_url=nats_url(),
            stream=Stream.from_env().name,
            pickup_delay=env_float(
                "SHIPPING_PICKUP_DELAY_S", PICKUP_DELAY, minimum=0, maximum=MAX_DELAY
            ),
            delivery_delay=env_float(
                "SHIPPING_DELIVERY_DELAY_S", DELIVERY_DELAY, minimum=0, maximum=MAX_DELAY
            ),
        )


async def build(config: Config | None = None) -> Wiring:
    """The shipping servicers on a store migrated first, the courier and the event relay
    running. Without ``config``, the upstream ShippingService alone: nothing is stored."""
    switches = faults()
    upstream = pb_grpc.add_ShippingServiceServicer_to_server
    if config is None:
        return Wiring(servicers=[(upstream, Shipping(switches))], faults=switches)
    db = open_database(config.database_url)
    store = ShipmentStore(db)
    outbox = Outbox(db)
    try:
        await store.migrate()
        await outbox.setup()
    except StoreUnavailable as exc:
        await store.close()
        raise OSError(f"shipment store: {exc}") from exc
    broker = Broker(config.nats_url, Stream(config.stream))
    relay = Relay(outbox, broker)
    courier = Courier(
        store,
        outbox,
        pickup_delay=config.pickup_delay,
        delivery_delay=config.delivery_delay,
        relay=relay,
    )
    shipments = Shipments(store, courier)
    broker.start()
    relay.start()
    courier.start()
    return Wiring(
        servicers=[
            (upstream, Shipping(switches, shipments)),
            (spb_grpc.add_ShipmentServiceServicer_to_server, shipments),
        ],
        pingers=[store, broker],
        faults=switches,
        # run last to first: the courier stops, then the relay, the broker, the store
        closers=[store.close, broker.close, relay.stop, courier.stop],
    )


ENTRY = Entry("shipping", build, Config.from_env)
