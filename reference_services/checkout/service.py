"""CheckoutService over gRPC: PlaceOrder across the other services, recorded durably.

A placed order is announced by a ``boutique.order.placed`` event, written with the
order in one transaction and published by the relay: the notification service
sends the confirmation e-mail from it, in the order's trace. The same process
serves OrderService (reference_services/checkout/order_service.py) over the
order store, its callers' tokens verified with the user service's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from opentelemetry import metrics, trace

from clue import log
from reference_services.checkout.order_service import RULES, Orders, trace_id
from reference_services.checkout.orders import OrderStore
from reference_services.common import fields, money
from reference_services.common.auth import Authorizer, PublishedKeys
from reference_services.common.clients import Clients
from reference_services.common.config import env_addr
from reference_services.common.database import StoreUnavailable, open_database
from reference_services.common.events import (
    PAUSE_SWITCH,
    Broker,
    Outbox,
    Relay,
    Stream,
    nats_url,
    pause_switch,
)
from reference_services.common.faults import Faults
from reference_services.common.rpc import (
    RpcFailure,
    failed_precondition,
    invalid_argument,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.runtime import AddServicer, Entry, Wiring
from reference_services.common.settings import store_url
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc

T = TypeVar("T")
CALL_TIMEOUT = 5.0

METER = metrics.get_meter("reference_services.checkout")
ORDERS = METER.create_counter(
    "boutique.orders.placed", unit="{order}", description="Orders placed, by currency"
)
ORDER_VALUE = METER.create_histogram(
    "boutique.order.value", unit="1", description="Order totals in the user's currency"
)
FAILED = METER.create_counter(
    "boutique.orders.failed", unit="{order}", description="PlaceOrder failures, by step"
)

_PASS_THROUGH = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Downstream:
    """Stubs of the services a checkout calls."""

    cart: pb_grpc.CartServiceAsyncStub
    catalog: pb_grpc.ProductCatalogServiceAsyncStub
    currency: pb_grpc.CurrencyServiceAsyncStub
    shipping: pb_grpc.ShippingServiceAsyncStub
    payment: pb_grpc.PaymentServiceAsyncStub


def faults() -> Faults:
    """Checkout's switch: hold the event relay (placed orders' events wait in the outbox)."""
    return Faults(pause_switch())


def _check_request(request: pb.PlaceOrderRequest) -> None:
    """Every field within its bounds before anything is called (the card itself is the
    payment service's to judge)."""
    fields.identifier(request.user_id, "user_id")
    money.check_code(request.user_currency, "user_currency")
    fields.email(request.email)
    if not request.HasField("address"):
        raise invalid_argument("address is required")
    fields.address(request.address)
    if not request.HasField("credit_card"):
        raise invalid_argument("credit_card is required")
    number = "credit_card.credit_card_number"
    fields.text(request.credit_card.credit_card_number, number, fields.MAX_CARD_NUMBER)


class Checkout(pb_grpc.CheckoutServiceServicer):
    """Places orders; each one's event goes to ``outbox``, which ``relay`` publishes."""

    def __init__(
        self, downstream: Downstream, orders: OrderStore, outbox: Outbox, relay: Relay
    ) -> None:
        self.down = downstream
        self.orders = orders
        self.outbox = outbox
        self.relay = relay

    async def _call(self, step: str, call: Awaitable[T]) -> T:
        """Await a downstream call; its failure becomes this RPC's, named by ``step``."""
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            FAILED.add(1, {"step": step})
            code = exc.code()
            message = f"{step}: {exc.details()}"
            if code in _PASS_THROUGH:
                raise RpcFailure(code, message) from None
            if code in _RETRYABLE:
                raise unavailable(message) from None
            raise RpcFailure(grpc.StatusCode.INTERNAL, message) from None

    @rpc
    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: Any
    ) -> pb.PlaceOrderResponse:
        """Charge the cart, ship it, record the order and its event, empty the cart."""
        _check_request(request)
        order_id = str(uuid.uuid4())
        span = trace.get_current_span()
        span.set_attribute("app.order.id", order_id)
        span.set_attribute("app.user.id", request.user_id)
        span.set_attribute("app.order.currency", request.user_currency)
        remaining = context.time_remaining()
        timeout = CALL_TIMEOUT if remaining is None else min(CALL_TIMEOUT, remaining)
        with log.context(order_id=order_id):
            cart, items, shipping_cost, total = await self._prepare(request, timeout)
            units = sum(line.quantity for line in cart.items)
            span.set_attribute("app.order.items", units)
            span.set_attribute("app.order.amount", money.to_nanos(total) / money.NANOS_PER_UNIT)
            span.add_event("prepared", {"items": units, "total": money.format_money(total)})
            log.info("order prepared", items=units, total=money.format_money(total))

            charge = await self._call(
                "charge card",
                self.down.payment.Charge(
                    pb.ChargeRequest(amount=total, credit_card=request.credit_card),
                    timeout=timeout,
                ),
            )
            span.add_event("charged", {"transaction_id": charge.transaction_id})
            log.info("order charged", transaction_id=charge.transaction_id)

            shipped = await self._call(
                "ship order",
                self.down.shipping.ShipOrder(
                    pb.ShipOrderRequest(address=request.address, items=cart.items),
                    timeout=timeout,
                ),
            )
            span.add_event("shipped", {"tracking_id": shipped.tracking_id})
            span.set_attribute("app.order.tracking_id", shipped.tracking_id)
            result = pb.OrderResult(
                order_id=order_id,
                shipping_tracking_id=shipped.tracking_id,
                shipping_cost=shipping_cost,
                shipping_address=request.address,
                items=items,
            )
            await self._record(request, result, total, charge.transaction_id)
            await self._empty_cart(request, timeout)
            log.info("order placed", tracking_id=shipped.tracking_id)
            return pb.PlaceOrderResponse(order=result)

    async def _prepare(
        self, request: pb.PlaceOrderRequest, timeout: float
    ) -> tuple[pb.Cart, list[pb.OrderItem], pb.Money, pb.Money]:
        """The cart, its priced items, the shipping cost and the total, in the user's currency."""
        d, currency = self.down, request.user_currency
        cart = await self._call(
            "get cart",
            d.cart.GetCart(pb.GetCartRequest(user_id=request.user_id), timeout=timeout),
        )
        if not cart.items:
            FAILED.add(1, {"step": "empty cart"})
            raise failed_precondition(f"the cart of user {quote(request.user_id)} is empty")
        if len(cart.items) > fields.MAX_LINES:
            FAILED.add(1, {"step": "get cart"})
            raise failed_precondition(
                f"the cart holds {len(cart.items)} lines, more than {fields.MAX_LINES}"
            )
        items: list[pb.OrderItem] = []
        for line in cart.items:
            product = await self._call(
                "get product",
                d.catalog.GetProduct(pb.GetProductRequest(id=line.product_id), timeout=timeout),
            )
            price = await self._convert("convert price", product.price_usd, currency, timeout)
            items.append(pb.OrderItem(item=line, cost=price))
        shipping_quote = await self._call(
            "quote shipping",
            d.shipping.GetQuote(
                pb.GetQuoteRequest(address=request.address, items=cart.items), timeout=timeout
            ),
        )
        shipping_cost = await self._convert(
            "convert shipping", shipping_quote.cost_usd, currency, timeout
        )
        total = shipping_cost
        for item in items:
            total = money.add(total, money.multiply(item.cost, item.item.quantity))
        return cart, items, shipping_cost, total

    async def _convert(self, step: str, amount: pb.Money, to: str, timeout: float) -> pb.Money:
        request = pb.CurrencyConversionRequest(to_code=to)
        getattr(request, "from").CopyFrom(amount)
        return await self._call(step, self.down.currency.Convert(request, timeout=timeout))

    async def _record(
        self, request: pb.PlaceOrderRequest, result: pb.OrderResult, total: pb.Money, tx: str
    ) -> None:
        """Commit the order and its event before anyone is told it is placed."""
        try:
            await self.orders.record(
                result,
                user_id=request.user_id,
                email=request.email,
                total=total,
                transaction_id=tx,
                trace_id=trace_id(),
                outbox=self.outbox,
            )
        except StoreUnavailable as exc:
            FAILED.add(1, {"step": "record order"})
            log.error("order charged and shipped but not recorded", exc=exc)
            raise unavailable(f"record order: {exc}") from None
        currency = {"currency": total.currency_code}
        ORDERS.add(1, currency)
        ORDER_VALUE.record(money.to_nanos(total) / money.NANOS_PER_UNIT, currency)
        self.relay.wake()

    async def _empty_cart(self, request: pb.PlaceOrderRequest, timeout: float) -> None:
        """Empty the cart of a placed order; a failure here is only logged."""
        try:
            await self._call(
                "empty cart",
                self.down.cart.EmptyCart(
                    pb.EmptyCartRequest(user_id=request.user_id), timeout=timeout
                ),
            )
        except RpcFailure as exc:
            log.error("order placed but the cart was not emptied", reason=exc.message)


@dataclass(frozen=True)
class Config:
    """Where the downstream services, the order store, the event broker and the user
    service (whose keys verify OrderService's callers; None: OrderService is not served)
    are."""

    cart_addr: str
    catalog_addr: str
    currency_addr: str
    shipping_addr: str
    payment_addr: str
    order_store: str
    nats_url: str
    stream: str = "BOUTIQUE"
    user_addr: str | None = None

    @classmethod
    def from_env(cls) -> Config:
        """The six ``*_SERVICE_ADDR`` (``USER_SERVICE_ADDR`` included), ``ORDER_STORE``
        (default ``$DATA_DIR/orders.db``), ``NATS_URL`` and ``EVENTS_STREAM``."""
        return cls(
            cart_addr=env_addr("CART_SERVICE_ADDR"),
            catalog_addr=env_addr("PRODUCT_CATALOG_SERVICE_ADDR"),
            currency_addr=env_addr("CURRENCY_SERVICE_ADDR"),
            shipping_addr=env_addr("SHIPPING_SERVICE_ADDR"),
            payment_addr=env_addr("PAYMENT_SERVICE_ADDR"),
            order_store=store_url("ORDER_STORE", "orders.db"),
            nats_url=nats_url(),
            stream=Stream.from_env().name,
            user_addr=env_addr("USER_SERVICE_ADDR"),
        )


async def build(config: Config, orders: OrderStore | None = None) -> Wiring:
    """The checkout servicer and its event relay, and with a user service the order
    servicer; the order store migrated first; every downstream service, the order
    store and the broker are pinged."""
    store = orders or OrderStore(open_database(config.order_store))
    try:
        await store.migrate()
    except StoreUnavailable as exc:
        await store.close()
        raise OSError(f"order store: {exc}") from exc
    clients = Clients()
    downstream = Downstream(
        cart=clients.stub("cart", config.cart_addr, pb_grpc.CartServiceStub),
        catalog=clients.stub(
            "productcatalog", config.catalog_addr, pb_grpc.ProductCatalogServiceStub
        ),
        currency=clients.stub("currency", config.currency_addr, pb_grpc.CurrencyServiceStub),
        shipping=clients.stub("shipping", config.shipping_addr, pb_grpc.ShippingServiceStub),
        payment=clients.stub("payment", config.payment_addr, pb_grpc.PaymentServiceStub),
    )
    outbox = Outbox(store.db)
    broker = Broker(config.nats_url, Stream(config.stream))
    switches = faults()
    relay = Relay(outbox, broker, paused=lambda: switches.on(PAUSE_SWITCH))
    broker.start()
    relay.start()
    checkout = Checkout(downstream, store, outbox, relay)
    servicers: list[tuple[AddServicer, object]] = [
        (pb_grpc.add_CheckoutServiceServicer_to_server, checkout)
    ]
    authorizer = None
    if config.user_addr is not None:
        users = clients.stub("user", config.user_addr, upb_grpc.UserServiceStub)
        authorizer = Authorizer(PublishedKeys.from_stub(users), RULES)
        orders_servicer = Orders(store, outbox, relay)
        servicers.append((opb_grpc.add_OrderServiceServicer_to_server, orders_servicer))
    return Wiring(
        servicers=servicers,
        pingers=[*clients.pingers, store, broker],
        faults=switches,
        closers=[clients.close, store.close, broker.close, relay.stop],  # run last to first
        authorizer=authorizer,
    )


ENTRY = Entry("checkout", build, Config.from_env)
