"""Every RPC of the nine services against hostile input, through real gRPC calls.

Huge strings, control characters, huge, negative and overflowing numbers and
unknown ids are refused with INVALID_ARGUMENT (or NOT_FOUND) and a short message
naming the field; nothing is stored; good input still works.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from reference_services.ad import service as ad
from reference_services.cart import service as cart
from reference_services.checkout import service as checkout
from reference_services.common import fields, money
from reference_services.common.rpc import MAX_MESSAGE, QUOTED_PREFIX
from reference_services.common.runtime import Wiring
from reference_services.payment import card as card_rules
from reference_services.productcatalog import catalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import Boutique, rpc_error, serving, stub_for

HUGE = "x" * (3 * 1024 * 1024)  # 3 MB: within gRPC's 4 MB message limit
SHORT_MESSAGE = 200
NEXT_YEAR = dt.date.today().year + 1
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
ADDRESS = pb.Address(
    street_address="1 Rue de Rivoli", city="Paris", state="IDF", country="France", zip_code=75001
)
CARD = pb.CreditCardInfo(
    credit_card_number="4432801561520454",
    credit_card_cvv=672,
    credit_card_expiration_year=NEXT_YEAR,
    credit_card_expiration_month=1,
)
MUG = "6E92ZMYYFZ"


@dataclass
class Stubs:
    """A stub of each service of a running boutique."""

    ad: pb_grpc.AdServiceStub
    cart: pb_grpc.CartServiceStub
    catalog: pb_grpc.ProductCatalogServiceStub
    checkout: pb_grpc.CheckoutServiceStub
    currency: pb_grpc.CurrencyServiceStub
    email: pb_grpc.EmailServiceStub
    payment: pb_grpc.PaymentServiceStub
    recommendation: pb_grpc.RecommendationServiceStub
    shipping: pb_grpc.ShippingServiceStub


@pytest.fixture
async def stubs(boutique: Boutique) -> AsyncIterator[Stubs]:
    async with AsyncExitStack() as stack:

        async def stub(name: str, stub_class: Any) -> Any:
            return await stack.enter_async_context(stub_for(boutique[name], stub_class))

        yield Stubs(
            ad=await stub("ad", pb_grpc.AdServiceStub),
            cart=await stub("cart", pb_grpc.CartServiceStub),
            catalog=await stub("productcatalog", pb_grpc.ProductCatalogServiceStub),
            checkout=await stub("checkout", pb_grpc.CheckoutServiceStub),
            currency=await stub("currency", pb_grpc.CurrencyServiceStub),
            email=await stub("email", pb_grpc.EmailServiceStub),
            payment=await stub("payment", pb_grpc.PaymentServiceStub),
            recommendation=await stub("recommendation", pb_grpc.RecommendationServiceStub),
            shipping=await stub("shipping", pb_grpc.ShippingServiceStub),
        )


# --- request builders: a good request, with one field changed ------------------------------


def add_item(user_id: str = "u1", product_id: str = MUG, quantity: int = 1) -> pb.AddItemRequest:
    item = pb.CartItem(product_id=product_id, quantity=quantity)
    return pb.AddItemRequest(user_id=user_id, item=item)


def usd(units: int, nanos: int = 0, code: str = "USD") -> pb.Money:
    return pb.Money(currency_code=code, units=units, nanos=nanos)


def convert(amount: pb.Money, to_code: str = "EUR") -> pb.CurrencyConversionRequest:
    request = pb.CurrencyConversionRequest(to_code=to_code)
    getattr(request, "from").CopyFrom(amount)
    return request


def address(**changes: Any) -> pb.Address:
    changed = pb.Address()
    changed.CopyFrom(ADDRESS)
    for name, value in changes.items():
        setattr(changed, name, value)
    return changed


def card(**changes: Any) -> pb.CreditCardInfo:
    changed = pb.CreditCardInfo()
    changed.CopyFrom(CARD)
    for name, value in changes.items():
        setattr(changed, name, value)
    return changed


def charge(amount: pb.Money | None = None, **card_changes: Any) -> pb.ChargeRequest:
    return pb.ChargeRequest(amount=amount or usd(10), credit_card=card(**card_changes))


def items(*pairs: tuple[str, int]) -> list[pb.CartItem]:
    return [pb.CartItem(product_id=p, quantity=q) for p, q in pairs]


def order(
    lines: list[pb.OrderItem] | None = None, shipping_cost: pb.Money | None = None, **changes: Any
) -> pb.OrderResult:
    result = pb.OrderResult(
        order_id="3d1a5f0e-0000-4000-8000-000000000001",
        shipping_tracking_id="AB-12345-123456789",
        shipping_cost=shipping_cost or usd(8, 990_000_000),
        shipping_address=ADDRESS,
        items=lines
        if lines is not None
        else [pb.OrderItem(item=pb.CartItem(product_id=MUG, quantity=2), cost=usd(8))],
    )
    for name, value in changes.items():
        if isinstance(value, pb.Address):
            getattr(result, name).CopyFrom(value)
        else:
            setattr(result, name, value)
    return result


def confirmation(email: str = "a@example.com", **order_changes: Any) -> Any:
    return pb.SendOrderConfirmationRequest(email=email, order=order(**order_changes))


def place_order(**changes: Any) -> pb.PlaceOrderRequest:
    request: dict[str, Any] = {
        "user_id": "buyer",
        "user_currency": "EUR",
        "address": ADDRESS,
        "email": "someone@example.com",
        "credit_card": CARD,
    }
    request.update(changes)
    return pb.PlaceOrderRequest(**request)


async def refused(call: Awaitable[Any], field: str) -> str:
    """The details of ``call``'s INVALID_ARGUMENT: short, naming ``field``."""
    error = await rpc_error(call)
    details = error.details() or ""
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (field, error.code(), details[:300])
    assert field in details, (field, details[:300])
    assert len(details) <= SHORT_MESSAGE, (field, len(details))
    return details


def huge_cases(s: Stubs) -> dict[str, Awaitable[Any]]:
    """One call per string field of every RPC, with a 3 MB value in that field."""
    return {
        "user_id": s.cart.AddItem(add_item(user_id=HUGE)),
        "item.product_id": s.cart.AddItem(add_item(product_id=HUGE)),
        "GetCart user_id": s.cart.GetCart(pb.GetCartRequest(user_id=HUGE)),
        "EmptyCart user_id": s.cart.EmptyCart(pb.EmptyCartRequest(user_id=HUGE)),
        "id": s.catalog.GetProduct(pb.GetProductRequest(id=HUGE)),
        "query": s.catalog.SearchProducts(pb.SearchProductsRequest(query=HUGE)),
        "from.currency_code": s.currency.Convert(convert(usd(1, code=HUGE))),
        "to_code": s.currency.Convert(convert(usd(1), HUGE)),
        "address.street_address": s.shipping.GetQuote(
            pb.GetQuoteRequest(address=address(street_address=HUGE))
        ),
        "items[0].product_id": s.shipping.GetQuote(pb.GetQuoteRequest(items=items((HUGE, 1)))),
        "address.city": s.shipping.ShipOrder(
            pb.ShipOrderRequest(address=address(city=HUGE), items=items((MUG, 1)))
        ),
        "amount.currency_code": s.payment.Charge(charge(usd(1, code=HUGE))),
        "credit_card_number": s.payment.Charge(charge(credit_card_number=HUGE)),
        "email": s.email.SendOrderConfirmation(confirmation(email=HUGE)),
        "order.order_id": s.email.SendOrderConfirmation(confirmation(order_id=HUGE)),
        "order.shipping_tracking_id": s.email.SendOrderConfirmation(
            confirmation(shipping_tracking_id=HUGE)
        ),
        "PlaceOrder user_id": s.checkout.PlaceOrder(place_order(user_id=HUGE)),
        "user_currency": s.checkout.PlaceOrder(place_order(user_currency=HUGE)),
        "PlaceOrder email": s.checkout.PlaceOrder(place_order(email=HUGE)),
        "address.country": s.checkout.PlaceOrder(place_order(address=address(country=HUGE))),
        "address.state": s.checkout.PlaceOrder(place_order(address=address(state=HUGE))),
        "credit_card.credit_card_number": s.checkout.PlaceOrder(
            place_order(credit_card=card(credit_card_number=HUGE))
        ),
        "product_ids[0]": s.recommendation.ListRecommendations(
            pb.ListRecommendationsRequest(user_id="u1", product_ids=[HUGE])
        ),
        "ListRecommendations user_id": s.recommendation.ListRecommendations(
            pb.ListRecommendationsRequest(user_id=HUGE)
        ),
        "context_keys[0]": s.ad.GetAds(pb.AdRequest(context_keys=[HUGE])),
    }


async def test_3mb_strings_get_a_short_invalid_argument_naming_the_field(stubs: Stubs) -> None:
    for case, call in huge_cases(stubs).items():
        field = case.split()[-1]
        details = await refused(call, field)
        assert "x" * (QUOTED_PREFIX + 1) not in details, case
    assert (await stubs.cart.GetCart(pb.GetCartRequest(user_id="u1"))).items == []


async def test_control_characters_are_refused(stubs: Stubs) -> None:
    s = stubs
    cases: dict[str, Awaitable[Any]] = {
        "user_id": s.cart.AddItem(add_item(user_id="u1\x00")),
        "item.product_id": s.cart.AddItem(add_item(product_id="6E92\nZMYYFZ")),
        "id": s.catalog.GetProduct(pb.GetProductRequest(id="6E92ZMYYFZ\x1b")),
        "query": s.catalog.SearchProducts(pb.SearchProductsRequest(query="mug\x1b[31m")),
        "address.street_address": s.shipping.ShipOrder(
            pb.ShipOrderRequest(
                address=address(street_address="1 Main St\r\nBcc: all"), items=items((MUG, 1))
            )
        ),
        "email": s.email.SendOrderConfirmation(confirmation(email="a\x07b@example.com")),
        "address.city": s.checkout.PlaceOrder(place_order(address=address(city="Par\u202eis"))),
        "product_ids[0]": s.recommendation.ListRecommendations(
            pb.ListRecommendationsRequest(user_id="u1", product_ids=["\x00"])
        ),
        "context_keys[1]": s.ad.GetAds(pb.AdRequest(context_keys=["kitchen", "decor\x00"])),
        "order.shipping_address.country": s.email.SendOrderConfirmation(
            confirmation(shipping_address=address(country="France\x00"))
        ),
    }
    # the first unprintable character of each value, and its position
    found = {
        "user_id": "(U+0000) at position 2",
        "item.product_id": "(U+000A) at position 4",
        "id": "(U+001B) at position 10",
        "query": "(U+001B) at position 3",
        "address.street_address": "(U+000D) at position 9",
        "email": "(U+0007) at position 1",
        "address.city": "(U+202E) at position 3",
        "product_ids[0]": "(U+0000) at position 0",
        "context_keys[1]": "(U+0000) at position 5",
        "order.shipping_address.country": "(U+0000) at position 6",
    }
    assert found.keys() == cases.keys()
    for field, call in cases.items():
        details = await refused(call, field)
        assert details == f"{field} holds a control character {found[field]}"
    # a space inside an id is not an id either, and nothing reached the cart
    await refused(s.cart.AddItem(add_item(user_id="u 1")), "user_id")
    assert (await s.cart.GetCart(pb.GetCartRequest(user_id="u1"))).items == []
    # printable non-ASCII text (and a no-break space) is fine where text is free
    found = await s.catalog.SearchProducts(pb.SearchProductsRequest(query="café\u00a0mug"))
    assert list(found.results) == []


async def test_quantities_counts_and_amounts_are_bounded(stubs: Stubs) -> None:
    s = stubs
    many = items(*[(MUG, 1)] * 100_000)
    line = pb.OrderItem(item=pb.CartItem(product_id=MUG, quantity=1), cost=usd(8))
    cases: dict[str, tuple[str, Awaitable[Any]]] = {
        "AddItem huge": ("item.quantity", s.cart.AddItem(add_item(quantity=INT32_MAX))),
        "AddItem negative": ("item.quantity", s.cart.AddItem(add_item(quantity=-1))),
        "GetQuote huge": (
            "items[0].quantity",
            s.shipping.GetQuote(pb.GetQuoteRequest(items=items((MUG, INT32_MAX)))),
        ),
        "GetQuote 100,000 items": (
            "items holds 100000 entries, more than 100",
            s.shipping.GetQuote(pb.GetQuoteRequest(items=many)),
        ),
        "ShipOrder negative": (
            "items[1].quantity -5",
            s.shipping.ShipOrder(
                pb.ShipOrderRequest(address=ADDRESS, items=items((MUG, 1), (MUG, -5)))
            ),
        ),
        "Email negative quantity": (
            "order.items[0].item.quantity -2",
            s.email.SendOrderConfirmation(
                confirmation(
                    lines=[pb.OrderItem(item=pb.CartItem(product_id=MUG, quantity=-2), cost=usd(8))]
                )
            ),
        ),
        "Email mixed signs": (
            "order.items[0].cost.nanos -5 has a different sign",
            s.email.SendOrderConfirmation(
                confirmation(
                    lines=[
                        pb.OrderItem(item=pb.CartItem(product_id=MUG, quantity=1), cost=usd(8, -5))
                    ]
                )
            ),
        ),
        "Email negative cost": (
            "order.shipping_cost USD -3.00 is negative",
            s.email.SendOrderConfirmation(confirmation(shipping_cost=usd(-3))),
        ),
        "Email 101 lines": (
            "order.items holds 101 entries",
            s.email.SendOrderConfirmation(confirmation(lines=[line] * 101)),
        ),
        "Charge int64 max": ("amount.units", s.payment.Charge(charge(usd(INT64_MAX)))),
        "Charge above the bound": (
            f"amount.units {money.MAX_UNITS + 1} is outside",
            s.payment.Charge(charge(usd(money.MAX_UNITS + 1))),
        ),
        "Charge year far ahead": (
            "credit_card_expiration_year",
            s.payment.Charge(charge(credit_card_expiration_year=INT32_MAX)),
        ),
        "Convert near 2**63": ("from.units", s.currency.Convert(convert(usd(INT64_MAX - 5)))),
        "Convert most negative": ("from.units", s.currency.Convert(convert(usd(-(2**63))))),
        "Ads 21 keys": (
            "context_keys holds 21",
            s.ad.GetAds(pb.AdRequest(context_keys=["a"] * 21)),
        ),
        "Recommendations 101 ids": (
            "product_ids holds 101",
            s.recommendation.ListRecommendations(
                pb.ListRecommendationsRequest(user_id="u1", product_ids=[MUG] * 101)
            ),
        ),
        "ShipOrder negative zip": (
            "address.zip_code -1",
            s.shipping.ShipOrder(
                pb.ShipOrderRequest(address=address(zip_code=-1), items=items((MUG, 1)))
            ),
        ),
    }
    for case, (expected, call) in cases.items():
        details = await refused(call, expected)
        assert details, case


async def test_the_bounds_themselves_are_accepted(stubs: Stubs) -> None:
    s = stubs
    most = fields.MAX_QUANTITY
    await s.cart.AddItem(add_item(product_id=MUG, quantity=most))
    cart = await s.cart.GetCart(pb.GetCartRequest(user_id="u1"))
    assert [(i.product_id, i.quantity) for i in cart.items] == [(MUG, most)]
    quote = await s.shipping.GetQuote(
        pb.GetQuoteRequest(items=items(*[(MUG, most)] * fields.MAX_LINES))
    )
    assert (quote.cost_usd.units, quote.cost_usd.nanos) == (8, 990_000_000)
    converted = await s.currency.Convert(convert(usd(money.MAX_UNITS), "IDR"))
    assert converted.currency_code == "IDR" and converted.units > money.MAX_UNITS
    paid = await s.payment.Charge(charge(usd(money.MAX_UNITS, 999_999_999)))
    assert paid.transaction_id
    line = pb.OrderItem(item=pb.CartItem(product_id=MUG, quantity=most), cost=usd(8))
    await s.email.SendOrderConfirmation(confirmation(lines=[line] * fields.MAX_LINES))
    ads = await s.ad.GetAds(pb.AdRequest(context_keys=["kitchen"] * 20))
    assert len(ads.ads) == 2
    found = await s.catalog.SearchProducts(pb.SearchProductsRequest(query="Mug"))
    assert [p.id for p in found.results] == [MUG]


async def test_unknown_product_is_not_found_and_the_cart_is_unchanged(stubs: Stubs) -> None:
    s = stubs
    await s.cart.AddItem(add_item(user_id="ann", product_id=MUG, quantity=2))
    error = await rpc_error(s.cart.AddItem(add_item(user_id="ann", product_id="NOSUCHITEM")))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "no product with id 'NOSUCHITEM'"
    long_unknown = "Z" * fields.MAX_PRODUCT_ID
    error = await rpc_error(s.cart.AddItem(add_item(user_id="ann", product_id=long_unknown)))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert len(error.details() or "") < SHORT_MESSAGE
    for bad in ("x" * (fields.MAX_PRODUCT_ID + 1), "MUG\x00", HUGE):
        await refused(s.cart.AddItem(add_item(user_id="ann", product_id=bad)), "item.product_id")
    error = await rpc_error(s.catalog.GetProduct(pb.GetProductRequest(id="NOSUCHITEM")))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    cart = await s.cart.GetCart(pb.GetCartRequest(user_id="ann"))
    assert [(i.product_id, i.quantity) for i in cart.items] == [(MUG, 2)]
    # that user can still check out
    placed = await s.checkout.PlaceOrder(place_order(user_id="ann"))
    assert [(i.item.product_id, i.item.quantity) for i in placed.order.items] == [(MUG, 2)]


async def test_a_refused_order_charges_nothing_and_keeps_the_cart(boutique: Boutique) -> None:
    async with (
        stub_for(boutique["cart"], pb_grpc.CartServiceStub) as carts,
        stub_for(boutique["checkout"], pb_grpc.CheckoutServiceStub) as checkout,
    ):
        await carts.AddItem(add_item(user_id="bea", quantity=3))
        for request, field in (
            (place_order(user_id="bea", email="bea@example.com\n"), "email"),
            (place_order(user_id="bea", address=address(zip_code=-7)), "address.zip_code"),
            (place_order(user_id="bea", user_currency="eur"), "user_currency"),
        ):
            await refused(checkout.PlaceOrder(request), field)
        cart = await carts.GetCart(pb.GetCartRequest(user_id="bea"))
        assert [(i.product_id, i.quantity) for i in cart.items] == [(MUG, 3)]
    assert boutique.orders is not None and await boutique.orders.for_user("bea") == []


async def test_cart_without_its_catalog_answers_unavailable(tmp_path: Path) -> None:
    config = cart.Config(f"sqlite:///{tmp_path / 'cart.db'}", "127.0.0.1:1")
    async with (
        serving("cart", await cart.build(config)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
    ):
        error = await rpc_error(stub.AddItem(add_item()))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert error.details().startswith("product catalog: ")
        assert (await stub.GetCart(pb.GetCartRequest(user_id="u1"))).items == []


def test_money_arithmetic_never_overflows_int64() -> None:
    most = usd(INT64_MAX)
    with pytest.raises(money.MoneyError, match="overflows"):
        money.add(most, usd(1))
    with pytest.raises(money.MoneyError, match="overflows"):
        money.multiply(usd(money.MAX_UNITS), 10_000_000)
    with pytest.raises(money.MoneyError, match="overflows"):
        money.from_nanos("USD", -(2**63 + 1) * money.NANOS_PER_UNIT)
    assert money.add(usd(INT64_MAX - 1), usd(1)).units == INT64_MAX


def test_the_documented_limits_are_the_code_s() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "boutique.md").read_text()
    start = doc.index("\n### Input limits\n")
    limits = doc[start : doc.index("\n### ", start + 1)]
    for phrase in (
        f"at most the\nfirst {QUOTED_PREFIX} characters",
        f"| 1..{fields.MAX_ID} visible ASCII characters: no spaces",
        f"| 1..{fields.MAX_PRODUCT_ID} visible ASCII characters;",
        f"| at most {fields.MAX_EMAIL} characters",
        f"| 1..{fields.MAX_STREET} printable characters |",
        f"| 1..{fields.MAX_PLACE} printable characters |",
        f"| 1..{fields.MAX_QUANTITY}; a cart line adds up to at most {fields.MAX_QUANTITY}",
        f"| at most {fields.MAX_LINES}; a cart holds at most {fields.MAX_LINES} products",
        "`units` within ±10^12",
        f"| 0..{catalog.MAX_QUERY} printable characters |",
        f"at most {ad.MAX_KEYS} keys of at most {ad.MAX_KEY_LENGTH} printable",
        f"| at most {fields.MAX_CARD_NUMBER} characters;",
        f"at most {card_rules.MAX_YEARS_AHEAD} years ahead",
    ):
        assert phrase in limits, phrase
    assert money.MAX_UNITS == 10**12


async def test_the_documented_3mb_message(stubs: Stubs) -> None:
    error = await rpc_error(stubs.cart.GetCart(pb.GetCartRequest(user_id=HUGE)))
    assert error.details() == "user_id is 3145728 characters long, more than 128"


class WordyCurrency(pb_grpc.CurrencyServiceServicer):
    """A foreign currency service whose refusals echo a whole 6,000-character value."""

    async def Convert(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad amount " + "y" * 6000)


async def test_a_downstream_s_long_message_is_cut_short(
    boutique: Boutique, tmp_path: Path, nats_url: str
) -> None:
    wordy = Wiring(servicers=[(pb_grpc.add_CurrencyServiceServicer_to_server, WordyCurrency())])
    async with serving("currency", wordy) as currency:
        config = checkout.Config(
            cart_addr=boutique["cart"].address,
            catalog_addr=boutique["productcatalog"].address,
            currency_addr=currency.address,
            shipping_addr=boutique["shipping"].address,
            payment_addr=boutique["payment"].address,
            order_store=f"sqlite:///{tmp_path / 'orders.db'}",
            nats_url=nats_url,
            stream=boutique.stream.name,  # type: ignore[union-attr]
        )
        async with (
            serving("checkout", await checkout.build(config)) as service,
            stub_for(service, pb_grpc.CheckoutServiceStub) as stub,
            stub_for(boutique["cart"], pb_grpc.CartServiceStub) as carts,
        ):
            await carts.AddItem(add_item(user_id="cy"))
            error = await rpc_error(stub.PlaceOrder(place_order(user_id="cy")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith("convert price: bad amount yyy")
    assert len(details) == MAX_MESSAGE + len("...") and details.endswith("y...")
