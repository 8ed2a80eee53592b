"""ShippingService over gRPC."""

from __future__ import annotations

from opentelemetry import trace

from clue import log
from reference_services.common import fields
from reference_services.common.money import format_money
from reference_services.common.rpc import Context, invalid_argument, rpc
from reference_services.common.runtime import Entry, Wiring
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.shipping.quote import quote, tracking_id


class Shipping(pb_grpc.ShippingServiceServicer):
    """Quotes shipping costs and ships orders."""

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
        """A tracking id for the parcel; the address and at least one item are required."""
        if not request.HasField("address"):
            raise invalid_argument("address is required")
        fields.address(request.address)
        if fields.cart_items(request.items) == 0:
            raise invalid_argument("items must hold at least one unit to ship")
        tracking = tracking_id(request.address)
        trace.get_current_span().set_attribute("app.shipping.tracking_id", tracking)
        log.info("order shipped", tracking_id=tracking, country=request.address.country)
        return pb.ShipOrderResponse(tracking_id=tracking)


async def build() -> Wiring:
    """The shipping servicer."""
    return Wiring(servicers=[(pb_grpc.add_ShippingServiceServicer_to_server, Shipping())])


ENTRY = Entry("shipping", build)
