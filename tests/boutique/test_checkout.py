"""CheckoutService.PlaceOrder against the eight other services running on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid

import grpc
import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from reference_services.checkout.orders import OrderStore
from reference_services.common.auth import bearer
from reference_services.common.database import SQLite
from reference_services.common.events import ORDER_PLACED
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from tests.boutique.conftest import Boutique, Telemetry, rpc_error, stub_for
from tests.conftest import Lines

VISA = "4432801561520454"
NEXT_YEAR = dt.date.today().year + 1
ADDRESS = pb.Address(
    street_address="1600 Amphitheatre Parkway",
    city="Mountain View",
    state="CA",
    country="United States",
    zip_code=94043,
)


def order_request(user_id: str, **changes: object) -> pb.PlaceOrderRequest:
    card = pb.CreditCardInfo(
        credit_card_number=VISA,
        credit_card_cvv=672,
        credit_card_expiration_year=NEXT_YEAR,
        credit_card_expiration_month=1,
    )
    fields: dict[str, object] = {
        "user_id": user_id,
        "user_currency": "EUR",
        "address": ADDRESS,
        "email": "someone@example.com",
        "credit_card": card,
    }
    fields.update(changes)
    return pb.PlaceOrderRequest(**fields)  # type: ignore[arg-type]


async def fill_cart(shop: Boutique, user_id: str, lines: dict[str, int]) -> None:
    async with stub_for(shop["cart"], pb_grpc.CartServiceStub) as cart:
        for product_id, quantity in lines.items():
            item = pb.CartItem(product_id=product_id, quantity=quantity)
            await cart.AddItem(pb.AddItemRequest(user_id=user_id, item=item))


async def cart_of(shop: Boutique, user_id: str) -> dict[str, int]:
    async with stub_for(shop["cart"], pb_grpc.CartServiceStub) as cart:
        found = await cart.GetCart(pb.GetCartRequest(user_id=user_id))
    return {i.product_id: i.quantity for i in found.items}


async def convert(shop: Boutique, amount: pb.Money, to: str) -> pb.Money:
    async with stub_for(shop["currency"], pb_grpc.CurrencyServiceStub) as currency:
        request = pb.CurrencyConversionRequest(to_code=to)
        getattr(request, "from").CopyFrom(amount)
        return await currency.Convert(request)


def nanos(m: pb.Money) -> int:
    return m.units * 1_000_000_000 + m.nanos


async def test_place_order_charges_ships_records_and_empties_the_cart(
    boutique: Boutique, otel: Telemetry, lines: Lines
) -> None:
    user = f"user-{uuid.uuid4()}"
    await fill_cart(boutique, user, {"OLJCESPC7Z": 3, "6E92ZMYYFZ": 1})
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        reply = await checkout.PlaceOrder(order_request(user))
    order = reply.order
    assert uuid.UUID(order.order_id)
    assert re.fullmatch(r"[A-Z]{2}-\d{5}-\d{9}", order.shipping_tracking_id)
    assert order.shipping_address == ADDRESS
    shipping = await convert(
        boutique, pb.Money(currency_code="USD", units=8, nanos=990000000), "EUR"
    )
    assert order.shipping_cost == shipping
    sunglasses = await convert(
        boutique, pb.Money(currency_code="USD", units=19, nanos=990000000), "EUR"
    )
    assert [(i.item.product_id, i.item.quantity) for i in order.items] == [
        ("OLJCESPC7Z", 3),
        ("6E92ZMYYFZ", 1),
    ]
    assert order.items[0].cost == sunglasses  # the unit price, in the user's currency
    expected_total = nanos(shipping) + sum(nanos(i.cost) * i.item.quantity for i in order.items)

    # recorded durably: a fresh store object on the same file finds it
    reopened = OrderStore(SQLite(boutique.orders.db.path))  # type: ignore[union-attr]
    placed = await reopened.get(order.order_id)
    await reopened.close()
    assert placed is not None and placed.user_id == user
    assert placed.result == order
    assert nanos(placed.total) == expected_total and placed.total.currency_code == "EUR"
    assert uuid.UUID(placed.transaction_id)
    assert await cart_of(boutique, user) == {}

    # one trace: PlaceOrder's server span is the parent of every downstream call
    finished = otel.finished()
    (root,) = [
        s
        for s in finished
        if s.name == "hipstershop.CheckoutService/PlaceOrder" and s.kind is SpanKind.SERVER
    ]
    attrs = dict(root.attributes or {})
    assert attrs["app.order.id"] == order.order_id
    assert attrs["app.order.items"] == 4
    assert attrs["app.order.currency"] == "EUR"
    assert abs(float(attrs["app.order.amount"]) - expected_total / 1e9) < 1e-6  # type: ignore[arg-type]
    assert [e.name for e in root.events] == ["prepared", "charged", "shipped"]
    trace_id = root.context.trace_id  # type: ignore[union-attr]

    def children_of(parent: ReadableSpan) -> list[ReadableSpan]:
        return [
            s
            for s in finished
            if s.parent and s.parent.span_id == parent.context.span_id  # type: ignore[union-attr]
        ]

    children = children_of(root)
    assert [s.name for s in children] == [
        "hipstershop.CartService/GetCart",
        "hipstershop.ProductCatalogService/GetProduct",
        "hipstershop.CurrencyService/Convert",
        "hipstershop.ProductCatalogService/GetProduct",
        "hipstershop.CurrencyService/Convert",
        "hipstershop.ShippingService/GetQuote",
        "hipstershop.CurrencyService/Convert",
        "saga create",
        "saga reserve",
        "saga charge",
        "saga ship",
        "saga complete",
    ]
    # each step of the saga is a span, the calls it makes its children
    steps = {
        s.name: [c.name for c in children_of(s) if not c.name.startswith("publish ")]
        for s in children
        if s.name.startswith("saga")
    }
    assert steps == {
        "saga create": [],
        "saga reserve": ["boutique.v1.InventoryService/Reserve"],
        "saga charge": ["boutique.v1.PaymentLedger/ChargeOrder"],
        "saga ship": ["hipstershop.ShippingService/ShipOrder"],
        "saga complete": [
            "boutique.v1.InventoryService/Commit",
            "hipstershop.CartService/EmptyCart",
        ],
    }
    calls = [c for s in children for c in children_of(s)] + children
    calls = [c for c in calls if c.kind is SpanKind.CLIENT]
    servers = {
        s.name
        for s in finished
        if s.kind is SpanKind.SERVER and s.context.trace_id == trace_id  # type: ignore[union-attr]
    }
    assert {c.name for c in calls} <= servers
    assert VISA not in lines.text

    ((placed_attrs, placed_point),) = otel.points("boutique.orders.placed")
    assert placed_attrs == {"currency": "EUR"} and placed_point.value == 1
    ((_, value_point),) = otel.points("boutique.order.value")
    assert value_point.count == 1 and abs(value_point.sum - expected_total / 1e9) < 1e-6
    sizes = [p for _, p in otel.points("boutique.cart.size")]
    assert sizes and sizes[0].max == 4  # the cart read by checkout held 4 units


async def test_declined_card_ships_nothing_records_nothing_and_keeps_the_cart(
    boutique: Boutique, otel: Telemetry, lines: Lines
) -> None:
    user = f"user-{uuid.uuid4()}"
    await fill_cart(boutique, user, {"L9ECAV7KIM": 2})
    expired = pb.CreditCardInfo(
        credit_card_number=VISA,
        credit_card_cvv=672,
        credit_card_expiration_year=2020,
        credit_card_expiration_month=3,
    )
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        error = await rpc_error(checkout.PlaceOrder(order_request(user, credit_card=expired)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "charge card: credit card ending 0454 expired on 03/2020"
    (failed,) = await boutique.orders.for_user(user)  # type: ignore[union-attr]
    assert failed.status == "FAILED"  # compensated: its stock released, nothing charged
    assert failed.history[-1].reason == error.details()
    assert await cart_of(boutique, user) == {"L9ECAV7KIM": 2}
    names = [s.name for s in otel.finished()]
    assert "boutique.v1.PaymentLedger/ChargeOrder" in names
    assert "boutique.v1.InventoryService/Release" in names
    assert "hipstershop.ShippingService/ShipOrder" not in names
    assert "hipstershop.EmailService/SendOrderConfirmation" not in names
    assert VISA not in lines.text
    assert [(a, p.value) for a, p in otel.points("boutique.payment.failures")] == [
        ({"reason": "expired"}, 1)
    ]
    assert otel.points("boutique.orders.placed") == []


async def test_payment_outage_is_unavailable_and_loses_nothing(boutique: Boutique) -> None:
    user = f"user-{uuid.uuid4()}"
    await fill_cart(boutique, user, {"9SIQT8TOJO": 1})
    boutique.faults("payment").set({"failure_rate": "1"})
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        error = await rpc_error(checkout.PlaceOrder(order_request(user)))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert error.details() == (
            "charge card: payment processor unavailable (injected fault failure_rate)"
        )
        (failed,) = await boutique.orders.for_user(user)  # type: ignore[union-attr]
        assert (failed.status, failed.history[-1].reason) == ("FAILED", error.details())
        assert await cart_of(boutique, user) == {"9SIQT8TOJO": 1}

        boutique.faults("payment").set({"failure_rate": "0"})
        reply = await checkout.PlaceOrder(order_request(user))
    orders = await boutique.orders.for_user(user)  # type: ignore[union-attr]
    assert [(p.order_id, p.status) for p in orders] == [
        (failed.order_id, "FAILED"),
        (reply.order.order_id, "SHIPPED"),
    ]


async def test_payment_service_down_fails_checkout_and_its_health(boutique: Boutique) -> None:
    user = f"user-{uuid.uuid4()}"
    await fill_cart(boutique, user, {"2ZYFJ3GM2N": 1})
    await boutique["payment"].stop()
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        error = await rpc_error(checkout.PlaceOrder(order_request(user)))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith("charge card:")
    assert await cart_of(boutique, user) == {"2ZYFJ3GM2N": 1}
    # PENDING while its refund cannot reach the payment service: recovery compensates it
    (waiting,) = await boutique.orders.for_user(user)  # type: ignore[union-attr]
    assert waiting.status == "PENDING"
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{boutique['checkout'].admin.url}/healthz")
    assert health.status_code == 503
    status = health.json()["status"]
    assert status["payment"] == "NOT OK"
    assert status["cart"] == "OK" and status["order-store"] == "OK"


async def test_empty_cart_is_failed_precondition(boutique: Boutique) -> None:
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        user = f"user-{uuid.uuid4().hex[:12]}"  # short enough to be quoted whole
        error = await rpc_error(checkout.PlaceOrder(order_request(user)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"the cart of user {user!r} is empty"


async def test_bad_requests_are_invalid_argument_naming_the_field(boutique: Boutique) -> None:
    user = f"user-{uuid.uuid4()}"
    await fill_cart(boutique, user, {"66VCHSJNUP": 1})
    cases = {
        "user_id": order_request(""),
        "user_currency": order_request(user, user_currency="euro"),
        "email": order_request(user, email="not-an-email"),
        "address.city": order_request(
            user, address=pb.Address(street_address="1 Main St", country="France")
        ),
        "to_code 'XYZ' is not a supported currency": order_request(user, user_currency="XYZ"),
        "credit card number ending 1234 is not valid": order_request(
            user,
            credit_card=pb.CreditCardInfo(
                credit_card_number="4000000000001234",
                credit_card_expiration_year=NEXT_YEAR,
                credit_card_expiration_month=1,
            ),
        ),
    }
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        for needle, request in cases.items():
            error = await rpc_error(checkout.PlaceOrder(request))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, needle
            assert needle in error.details(), (needle, error.details())
    assert await cart_of(boutique, user) == {"66VCHSJNUP": 1}
    # only the card, judged by the payment service during the saga, leaves a FAILED order
    (failed,) = await boutique.orders.for_user(user)  # type: ignore[union-attr]
    assert failed.status == "FAILED"
    assert failed.history[-1].reason.endswith("credit card number ending 1234 is not valid")


async def test_the_confirmation_follows_in_the_order_s_trace_through_the_broker(
    boutique: Boutique, otel: Telemetry, lines: Lines
) -> None:
    user = f"user-{uuid.uuid4()}"
    await fill_cart(boutique, user, {"6E92ZMYYFZ": 2})
    async with stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout:
        reply = await checkout.PlaceOrder(order_request(user))
    order_id = reply.order.order_id

    def confirmation_served() -> list[ReadableSpan]:
        return [
            s
            for s in otel.finished()
            if s.name == "hipstershop.EmailService/SendOrderConfirmation"
            and s.kind is SpanKind.SERVER
        ]

    def chain_to_root() -> list[ReadableSpan] | None:
        """The e-mail's span and its ancestors, once all have ended (the consumer's ends
        after the e-mail's, and other consumers' spans may end before either)."""
        served = confirmation_served()
        if len(served) != 1:
            return None
        by_id = {s.context.span_id: s for s in otel.finished()}  # type: ignore[union-attr]
        chain = served
        while (parent := chain[-1].parent) is not None:
            if parent.span_id not in by_id:
                return None
            chain = [*chain, by_id[parent.span_id]]
        return chain

    deadline = asyncio.get_running_loop().time() + 20
    while (chain := chain_to_root()) is None:
        assert asyncio.get_running_loop().time() < deadline, "no confirmation sent"
        await asyncio.sleep(0.02)
    assert [(s.kind, s.name) for s in chain] == [
        (SpanKind.SERVER, "hipstershop.EmailService/SendOrderConfirmation"),
        (SpanKind.CLIENT, "hipstershop.EmailService/SendOrderConfirmation"),
        (SpanKind.CONSUMER, f"process {boutique.stream.subject(ORDER_PLACED)}"),  # type: ignore[union-attr]
        (SpanKind.PRODUCER, f"publish {boutique.stream.subject(ORDER_PLACED)}"),  # type: ignore[union-attr]
        (SpanKind.INTERNAL, "saga complete"),
        (SpanKind.SERVER, "hipstershop.CheckoutService/PlaceOrder"),
        (SpanKind.CLIENT, "hipstershop.CheckoutService/PlaceOrder"),
    ]
    assert dict(chain[2].attributes or {})["app.order.id"] == order_id

    # one e-mail, one notification on record
    sent = [e for e in lines.entries("order confirmation sent") if e["order_id"] == order_id]
    assert len(sent) == 1
    async with stub_for(boutique["notification"], npb_grpc.NotificationServiceStub) as history:
        found = await history.GetNotificationHistory(
            npb.GetNotificationHistoryRequest(user_id=user),
            metadata=bearer(boutique.issuer.token(user)),  # type: ignore[union-attr]
        )
    assert [(n.order_id, n.email) for n in found.notifications] == [
        (order_id, "someone@example.com")
    ]
