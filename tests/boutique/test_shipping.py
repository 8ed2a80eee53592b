"""Shipping quotes and tracking ids, over gRPC."""

from __future__ import annotations

import re

import grpc

from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.shipping import service as shipping
from reference_services.shipping.quote import quote, tracking_id
from tests.boutique.conftest import rpc_error, serving, stub_for

ADDRESS = pb.Address(street_address="10 Downing St", city="London", country="UK", zip_code=1)


def test_quote_is_free_for_nothing_and_flat_otherwise() -> None:
    assert quote([]) == pb.Money(currency_code="USD")
    assert quote([pb.CartItem(product_id="A", quantity=0)]) == pb.Money(currency_code="USD")
    flat = pb.Money(currency_code="USD", units=8, nanos=990_000_000)
    assert quote([pb.CartItem(product_id="A", quantity=1)]) == flat
    assert (
        quote([pb.CartItem(product_id="A", quantity=7), pb.CartItem(product_id="B", quantity=2)])
        == flat
    )


def test_tracking_id_shape_and_address_digits() -> None:
    ids = {tracking_id(ADDRESS) for _ in range(20)}
    assert len(ids) == 20  # random digits
    length = len("10 Downing St" + "London")
    for tid in ids:
        match = re.fullmatch(r"([A-Z]{2})-(\d{5})-(\d{9})", tid)
        assert match is not None, tid
        assert match.group(2).startswith(f"{length:02d}")
        assert match.group(3).startswith(f"{length // 2:02d}")


async def test_shipping_over_grpc() -> None:
    items = [pb.CartItem(product_id="OLJCESPC7Z", quantity=2)]
    async with (
        serving("shipping", await shipping.build()) as service,
        stub_for(service, pb_grpc.ShippingServiceStub) as stub,
    ):
        reply = await stub.GetQuote(pb.GetQuoteRequest(address=ADDRESS, items=items))
        assert (reply.cost_usd.units, reply.cost_usd.nanos) == (8, 990_000_000)
        shipped = await stub.ShipOrder(pb.ShipOrderRequest(address=ADDRESS, items=items))
        assert re.fullmatch(r"[A-Z]{2}-\d{5}-\d{9}", shipped.tracking_id)

        bad = {
            "items[0].quantity -1 is outside 1..1000": stub.GetQuote(
                pb.GetQuoteRequest(items=[pb.CartItem(product_id="A", quantity=-1)])
            ),
            "address is required": stub.ShipOrder(pb.ShipOrderRequest(items=items)),
            "address.city must not be empty": stub.ShipOrder(
                pb.ShipOrderRequest(
                    address=pb.Address(street_address="1 Rue", country="FR"), items=items
                )
            ),
            "items must hold at least one unit": stub.ShipOrder(
                pb.ShipOrderRequest(address=ADDRESS)
            ),
        }
        for message, call in bad.items():
            error = await rpc_error(call)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert message in error.details()
