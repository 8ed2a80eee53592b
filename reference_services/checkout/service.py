"""CheckoutService over gRPC: PlaceOrder prices the cart, then runs the checkout saga.

The saga (reference_services/checkout/saga.py) reserves the stock, charges the
order, ships it and commits, its state written durably before each step and
settled by recovery after a crash (recovery.py). A placed order is announced
by a ``boutique.order.placed`` event, written with its SHIPPED status in one
transaction and published by the relay: the notification service sends the
confirmation e-mail from it, in the order's trace. The same process serves
OrderService (order_service.py) over the order store, its callers' tokens
verified with the user service's keys, and moves orders on with the courier's
events (shipments.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from opentelemetry import metrics, trace

from clue import health, log
from reference_services.checkout.order_service import RULES, Orders
from reference_services.checkout.orders import OrderStore
from reference_services.checkout.recovery import Recovery, Timing
from reference_services.checkout.saga import Partners, Plan, Saga, StepFailed, crash_switch
from reference_services.checkout.saga_log import SagaLog
from reference_services.checkout.shipments import ShipmentEvents
from reference_services.common import fields, money
from reference_services.common.auth import Authorizer, PublishedKeys
from reference_services.common.clients import Clients
from reference_services.common.config import env_addr, env_float, env_str
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
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc

T = TypeVar("T")
CALL_TIMEOUT = 5.0
UNSAFE_SWITCH = "CHECKOUT_UNSAFE_SKIP_SAGA_LOG"
DRAIN_SECONDS = 10.0
"""How long a stop waits for the sagas in flight (``CHECKOUT_DRAIN_S``)."""
MAX_DRAIN_SECONDS = 300.0
"""Set to 1 (benchmarks only, never in use: a crash then loses money and stock) to run
the saga without writing its state or any event."""

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


def faults() -> Faults:
    """Checkout's switches: hold the event relay (placed orders' events wait in the
    outbox); kill the process right after a saga step's state is written."""
    return Faults(pause_switch(), crash_switch())


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


def failure(step: str, exc: grpc.aio.AioRpcError) -> RpcFailure:
    """The error PlaceOrder answers when ``step``'s call failed with ``exc`` (counted)."""
    FAILED.add(1, {"step": step})
    code = exc.code()
    message = f"{step}: {exc.details()}"
    if code in _PASS_THROUGH:
        return RpcFailure(code, message)
    if code in _RETRYABLE:
        return unavailable(message)
    return RpcFailure(grpc.StatusCode.INTERNAL, message)


class Checkout(pb_grpc.CheckoutServiceServicer):
    """Places orders: prices the cart, then runs the ``saga``."""

    def __init__(self, downstream: Downstream, saga: Saga) -> None:
        self.down = downstream
        self.saga = saga

    async def _call(self, step: str, call: Awaitable[T]) -> T:
        """Await a downstream call; its failure becomes this RPC's, named by ``step``."""
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise failure(step, exc) from None

    @rpc
    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: Any
    ) -> pb.PlaceOrderResponse:
        """Price the cart, then reserve, charge, ship and commit it as a saga."""
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
            plan = Plan(
                pb.OrderResult(
                    order_id=order_id,
                    shipping_cost=shipping_cost,
                    shipping_address=request.address,
                    items=items,
                ),
                user_id=request.user_id,
                email=request.email,
                total=total,
                card=request.credit_card,
            )
            try:
                result = await self.saga.place(plan)
            except StepFailed as exc:
                raise failure(exc.label, exc.error) from None
            except StoreUnavailable as exc:
                FAILED.add(1, {"step": "record order"})
                raise unavailable(f"record order: {exc}") from None
            span.set_attribute("app.order.tracking_id", result.shipping_tracking_id)
            currency = {"currency": total.currency_code}
            ORDERS.add(1, currency)
            ORDER_VALUE.record(money.to_nanos(total) / money.NANOS_PER_UNIT, currency)
            log.info("order placed", tracking_id=result.shipping_tracking_id)
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
    timing: Timing = field(default_factory=Timing)
    drain: float = DRAIN_SECONDS
    """Seconds a stop waits for the PlaceOrders and sagas in flight (`Saga.drain`)."""
    durable: bool = True
    """False only for the benchmark's unsafe baseline (`UNSAFE_SWITCH`): no saga log,
    no outbox."""

    @classmethod
    def from_env(cls) -> Config:
        """The six ``*_SERVICE_ADDR`` (``USER_SERVICE_ADDR`` included), ``ORDER_STORE``
        (default ``$DATA_DIR/orders.db``), ``NATS_URL``, ``EVENTS_STREAM``, the saga's
        recovery timing (`Timing.from_env`), ``CHECKOUT_DRAIN_S`` (default 10: how long a stop
        waits for the sagas in flight) and the benchmark's `UNSAFE_SWITCH`."""
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
            timing=Timing.from_env(),
            drain=env_float(
                "CHECKOUT_DRAIN_S", DRAIN_SECONDS, minimum=0, maximum=MAX_DRAIN_SECONDS
            ),
            durable=env_str(UNSAFE_SWITCH, "") != "1",
        )


async def build(config: Config, orders: OrderStore | None = None) -> Wiring:
    """The checkout servicer, its saga, recovery and event relay, the courier's events'
    consumer, and with a user service the order servicer; the order store migrated
    first; every downstream service, the order store and the broker are pinged."""
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
    )
    # the saga's own channels, to processes pinged once each (the payment one just below)
    payment = health.GRPCPinger("payment", config.payment_addr, timeout=1.0)
    channels = Clients()
    partners = Partners(
        inventory=channels.stub("inventory", config.catalog_addr, ipb_grpc.InventoryServiceStub),
        ledger=channels.stub("ledger", config.payment_addr, lpb_grpc.PaymentLedgerStub),
        shipping=downstream.shipping,
        shipments=channels.stub("shipments", config.shipping_addr, spb_grpc.ShipmentServiceStub),
        cart=downstream.cart,
    )
    outbox = Outbox(store.db)
    broker = Broker(config.nats_url, Stream(config.stream))
    switches = faults()
    relay = Relay(outbox, broker, paused=lambda: switches.on(PAUSE_SWITCH))
    saga = Saga(
        store,
        SagaLog(store, owner=uuid.uuid4().hex),
        outbox,
        relay,
        partners,
        switches,
        durable=config.durable,
    )
    recovery = Recovery(saga, config.timing)
    couriers = ShipmentEvents(store, outbox, relay).consumers(broker)
    broker.start()
    relay.start()
    for consumer in couriers:
        consumer.start()
    recovery.start()
    servicers: list[tuple[AddServicer, object]] = [
        (pb_grpc.add_CheckoutServiceServicer_to_server, Checkout(downstream, saga))
    ]
    authorizer = None
    if config.user_addr is not None:
        users = clients.stub("user", config.user_addr, upb_grpc.UserServiceStub)
        authorizer = Authorizer(PublishedKeys.from_stub(users), RULES)
        orders_servicer = Orders(store, outbox, relay, canceller=saga.cancel)
        servicers.append((opb_grpc.add_OrderServiceServicer_to_server, orders_servicer))
    stops: list[Callable[[], Awaitable[object]]] = [
        clients.close,
        channels.close,
        store.close,
        broker.close,
        relay.stop,
        *(consumer.stop for consumer in couriers),
        recovery.stop,
    ]
    return Wiring(
        servicers=servicers,
        pingers=[*clients.pingers, payment, store, broker],
        faults=switches,
        closers=stops,  # run last to first
        authorizer=authorizer,
        grace=config.drain,
        drain=saga.drain,
    )


ENTRY = Entry("checkout", build, Config.from_env)
