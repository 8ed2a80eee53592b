"""ShippingService over gRPC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from clue import log
from reference_services.common.config import NoSettings
from reference_services.common.money import format_money
from reference_services.common.rpc import invalid_argument, require, rpc
from reference_services.common.runtime import Wiring, run_grpc_service
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.shipping.quote import quote, tracking_id


def _check_items(items: Sequence[pb.CartItem]) -> int:
    for i, item in enumerate(items):
        require(item.product_id, f"items[{i}].product_id")
        if item.quantity < 0:
            raise invalid_argument(f"items[{i}].quantity {item.quantity} is negative")
    return sum(item.quantity for item in items)


class Shipping(pb_grpc.ShippingServiceServicer):
    """Quotes shipping costs and ships orders."""

    @rpc
    async def GetQuote(self, request: pb.GetQuoteRequest, context: Any) -> pb.GetQuoteResponse:
        """USD 0 for no items, a flat USD 8.99 otherwise."""
        count = _check_items(request.items)
        cost = quote(request.items)
        span = trace.get_current_span()
        span.set_attribute("app.shipping.items", count)
        span.set_attribute("app.shipping.cost", format_money(cost))
        return pb.GetQuoteResponse(cost_usd=cost)

    @rpc
    async def ShipOrder(self, request: pb.ShipOrderRequest, context: Any) -> pb.ShipOrderResponse:
        """A tracking id for the parcel; the address and at least one item are required."""
        if not request.HasField("address"):
            raise invalid_argument("address is required")
        require(request.address.street_address, "address.street_address")
        require(request.address.city, "address.city")
        require(request.address.country, "address.country")
        if _check_items(request.items) == 0:
            raise invalid_argument("items must hold at least one unit to ship")
        tracking = tracking_id(request.address)
        trace.get_current_span().set_attribute("app.shipping.tracking_id", tracking)
        log.info("order shipped", tracking_id=tracking, country=request.address.country)
        return pb.ShipOrderResponse(tracking_id=tracking)


class Config(NoSettings):
    """The shipping service needs no settings of its own."""


async def build(config: Config) -> Wiring:
    """The shipping servicer."""
    return Wiring(servicers=[(pb_grpc.add_ShippingServiceServicer_to_server, Shipping())])


def main() -> int:
    """Run the shipping service until SIGTERM."""
    return run_grpc_service("shipping", Config.from_env, build)
