"""The order confirmation: rendered with every detail, logged, bad input refused."""

from __future__ import annotations

import grpc
import pytest

from reference_services.common import fields
from reference_services.common.rpc import RpcFailure
from reference_services.email import service as email
from reference_services.email.confirmation import render
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import rpc_error, serving, stub_for
from tests.conftest import Lines

ORDER = pb.OrderResult(
    order_id="3d1a5f0e-0000-4000-8000-000000000001",
    shipping_tracking_id="AB-12345-123456789",
    shipping_cost=pb.Money(currency_code="EUR", units=7, nanos=950_000_000),
    shipping_address=pb.Address(
        street_address="1 Rue de Rivoli",
        city="Paris",
        state="IDF",
        country="France",
        zip_code=75001,
    ),
    items=[
        pb.OrderItem(
            item=pb.CartItem(product_id="6E92ZMYYFZ", quantity=2),
            cost=pb.Money(currency_code="EUR", units=7, nanos=950_000_000),
        )
    ],
)


def test_render_holds_the_order_details() -> None:
    assert render(ORDER) == (
        "Subject: Your boutique order 3d1a5f0e-0000-4000-8000-000000000001\n"
        "\n"
        "Thank you for your order!\n"
        "\n"
        "Order:       3d1a5f0e-0000-4000-8000-000000000001\n"
        "Tracking:    AB-12345-123456789\n"
        "Shipping:    EUR 7.95\n"
        "Ship to:     1 Rue de Rivoli, 75001 Paris, IDF, France\n"
        "\n"
        "Items:\n"
        "  2 x 6E92ZMYYFZ at EUR 7.95 each\n"
    )


def test_valid_email() -> None:
    assert fields.email("a.b@example.co.uk") == "a.b@example.co.uk"
    for bad in ("nope", "a@b", "a b@c.d", "a\x00@b.c", "x" * 250 + "@b.cd"):
        with pytest.raises(RpcFailure):
            fields.email(bad)


async def test_send_confirmation_over_grpc(lines: Lines) -> None:
    async with (
        serving("email", await email.build()) as service,
        stub_for(service, pb_grpc.EmailServiceStub) as stub,
    ):
        await stub.SendOrderConfirmation(
            pb.SendOrderConfirmationRequest(email="a@example.com", order=ORDER)
        )
        bad = {
            "email 'nope' is not an email address": pb.SendOrderConfirmationRequest(
                email="nope", order=ORDER
            ),
            "order is required": pb.SendOrderConfirmationRequest(email="a@example.com"),
            "order.order_id must not be empty": pb.SendOrderConfirmationRequest(
                email="a@example.com", order=pb.OrderResult(shipping_tracking_id="X")
            ),
        }
        for message, request in bad.items():
            error = await rpc_error(stub.SendOrderConfirmation(request))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == message
    (sent,) = lines.entries("order confirmation sent")
    assert sent["order_id"] == ORDER.order_id and "AB-12345-123456789" in sent["body"]


async def test_an_idempotency_key_sends_its_confirmation_once(lines: Lines) -> None:
    async with (
        serving("email", await email.build()) as service,
        stub_for(service, pb_grpc.EmailServiceStub) as stub,
    ):
        request = pb.SendOrderConfirmationRequest(email="a@example.com", order=ORDER)
        for _ in range(2):  # the same confirmation again, as after a crash
            await stub.SendOrderConfirmation(request, metadata=(("idempotency-key", "evt-1"),))
        await stub.SendOrderConfirmation(request, metadata=(("idempotency-key", "evt-2"),))
        for key, message in {
            "has space": "idempotency-key 'has space' may hold only visible ASCII",
            "k" * 200: "idempotency-key is 200 characters long, more than 128",
        }.items():
            error = await rpc_error(
                stub.SendOrderConfirmation(request, metadata=(("idempotency-key", key),))
            )
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert (error.details() or "").startswith(message)
    assert len(lines.entries("order confirmation sent")) == 2  # evt-1 once, evt-2 once
