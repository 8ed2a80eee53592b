"""ShipmentService over gRPC: the boutique's parcels, recorded by ShipOrder for an order."""

from __future__ import annotations

import time

from opentelemetry import trace

from clue import log
from reference_services.common import fields
from reference_services.common.database import StoreUnavailable
from reference_services.common.rpc import (
    Context,
    RpcFailure,
    failed_precondition,
    invalid_argument,
    not_found,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.timestamps import rfc3339_ms, rfc3339_ms_or_empty
from reference_services.protos.boutique.v1 import shipment_pb2 as spb
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc
from reference_services.shipping.courier import Courier, trace_context
from reference_services.shipping.shipment_store import (
    DELIVERED,
    LABEL_CREATED,
    PICKED_UP,
    VOIDED,
    PickedUp,
    Shipment,
    ShipmentStore,
)

ORDER_ID_METADATA = "boutique-order-id"
"""The gRPC metadata with which ShipOrder records a shipment for that order."""
STATUS = {
    LABEL_CREATED: spb.SHIPMENT_STATUS_LABEL_CREATED,
    PICKED_UP: spb.SHIPMENT_STATUS_PICKED_UP,
    DELIVERED: spb.SHIPMENT_STATUS_DELIVERED,
    VOIDED: spb.SHIPMENT_STATUS_VOIDED,
}
"""Stored status -> its wire value."""


def order_id_of(context: Context) -> str | None:
    """The order id in the call's `ORDER_ID_METADATA`, None when it has none;
    INVALID_ARGUMENT when it is not an identifier or given more than once."""
    values = [v for k, v in context.invocation_metadata() or () if k == ORDER_ID_METADATA]
    if not values:
        return None
    if len(values) > 1:
        raise invalid_argument(f"{ORDER_ID_METADATA} is given {len(values)} times, not once")
    value = values[0]
    if not isinstance(value, str):
        raise invalid_argument(f"{ORDER_ID_METADATA} must be text")
    return fields.identifier(value, ORDER_ID_METADATA)


def to_proto(shipment: Shipment) -> spb.Shipment:
    """The wire form of a stored shipment."""
    return spb.Shipment(
        tracking_id=shipment.tracking_id,
        order_id=shipment.order_id,
        status=STATUS[shipment.status],
        created_at=rfc3339_ms(shipment.created_at_ns),
        picked_up_at=rfc3339_ms_or_empty(shipment.picked_up_at_ns),
        delivered_at=rfc3339_ms_or_empty(shipment.delivered_at_ns),
        voided_at=rfc3339_ms_or_empty(shipment.voided_at_ns),
    )


def _store_down(exc: StoreUnavailable) -> RpcFailure:
    return unavailable(f"shipment store: {exc}")


class Shipments(spb_grpc.ShipmentServiceServicer):
    """Records the shipment of each order shipped with its id, and answers for them."""

    def __init__(self, store: ShipmentStore, courier: Courier) -> None:
        self.store = store
        self.courier = courier

    async def record(self, order_id: str, tracking_id: str) -> str:
        """The tracking id of ``order_id``'s shipment: made LABEL_CREATED with
        ``tracking_id`` on the first call, the first one's on every later call."""
        now = time.time_ns()
        try:
            shipment, created = await self.store.create(
                order_id, tracking_id, now, self.courier.pickup_due(now), trace_context()
            )
        except StoreUnavailable as exc:
            raise _store_down(exc) from None
        span = trace.get_current_span()
        span.set_attribute("app.order.id", order_id)
        span.set_attribute("app.shipping.shipment_created", created)
        if created:
            self.courier.wake()
            log.info("shipment recorded", tracking_id=shipment.tracking_id, order_id=order_id)
        return shipment.tracking_id

    @rpc
    async def GetShipment(self, request: spb.GetShipmentRequest, context: Context) -> spb.Shipment:
        """One shipment; NOT_FOUND for an unknown tracking id."""
        tracking_id = fields.identifier(request.tracking_id, "tracking_id")
        try:
            shipment = await self.store.get(tracking_id)
        except StoreUnavailable as exc:
            raise _store_down(exc) from None
        if shipment is None:
            raise not_found(f"no shipment with tracking_id {quote(tracking_id)}")
        return to_proto(shipment)

    @rpc
    async def GetOrderShipment(
        self, request: spb.GetOrderShipmentRequest, context: Context
    ) -> spb.Shipment:
        """The shipment of an order; NOT_FOUND when the order has none."""
        order_id = fields.identifier(request.order_id, "order_id")
        try:
            shipment = await self.store.for_order(order_id)
        except StoreUnavailable as exc:
            raise _store_down(exc) from None
        if shipment is None:
            raise not_found(f"no shipment for order_id {quote(order_id)}")
        return to_proto(shipment)

    @rpc
    async def VoidShipment(
        self, request: spb.VoidShipmentRequest, context: Context
    ) -> spb.Shipment:
        """Void a shipment the courier has not picked up (again: no change);
        FAILED_PRECONDITION once it has."""
        tracking_id = fields.identifier(request.tracking_id, "tracking_id")
        span = trace.get_current_span()
        span.set_attribute("app.shipping.tracking_id", tracking_id)
        now = time.time_ns()
        try:
            shipment = await self.store.void(tracking_id, now)
        except StoreUnavailable as exc:
            raise _store_down(exc) from None
        except PickedUp as exc:
            late = exc.shipment
            raise failed_precondition(
                f"shipment {quote(tracking_id)} is {late.status.lower().replace('_', ' ')}"
                f" (picked up at {rfc3339_ms_or_empty(late.picked_up_at_ns)}): too late to void"
            ) from None
        if shipment is None:
            raise not_found(f"no shipment with tracking_id {quote(tracking_id)}")
        span.set_attribute("app.order.id", shipment.order_id)
        if shipment.voided_at_ns == now:  # not when it was voided before
            log.info("shipment voided", tracking_id=tracking_id, order_id=shipment.order_id)
        return to_proto(shipment)
