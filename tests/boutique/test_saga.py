"""The checkout saga through the real doors: the checkout a process of its own
(``python -m reference_services.checkout``), the services it calls on real gRPC
servers with their stores, a real NATS. An order placed; one refused for want of
stock (nothing charged); one whose shipping fails (refunded, released, FAILED with
the reason, every compensation a span of the order's trace); and the checkout
SIGKILLed after each saga step in turn (``crash_after``), restarted, and every
invariant checked through the services' own RPCs within the recovery interval."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import pytest_asyncio
from opentelemetry.trace import StatusCode

from clue.testing import capture_logs
from reference_services.cart import service as cart
from reference_services.checkout import service as checkout
from reference_services.checkout.recovery import Timing
from reference_services.checkout.saga import STEPS
from reference_services.common.auth import bearer
from reference_services.common.events import Broker, Stream
from reference_services.common.runtime import GrpcService
from reference_services.currency import service as currency
from reference_services.launcher import Process, is_healthy
from reference_services.payment import service as payment
from reference_services.productcatalog import service as productcatalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import ledger_pb2 as lpb
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc
from reference_services.protos.boutique.v1 import order_pb2 as opb
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.shipping import service as shipping
from reference_services.user import service as user
from tests.boutique.conftest import Telemetry, serving, unique
from tests.boutique.shop import WATCH
from tests.boutique.test_checkout import order_request
from tests.conftest import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.asyncio(loop_scope="module"),
]

ROOT = Path(__file__).resolve().parents[2]
RECOVERY_INTERVAL = 2.0
"""CHECKOUT_RECOVERY_INTERVAL_S of the test's checkout (10 by default)."""
LEASE = 1.0
"""CHECKOUT_SAGA_LEASE_S: a checkout silent that long is taken for dead (3 by default)."""
PASSWORD = "correct horse battery"
MUG = "6E92ZMYYFZ"
SETTLED = {
    ev.ORDER_STATUS_SHIPPED,
    ev.ORDER_STATUS_IN_TRANSIT,
    ev.ORDER_STATUS_DELIVERED,
    ev.ORDER_STATUS_FAILED,
}
SHIPPED_OR_LATER = {ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_IN_TRANSIT, ev.ORDER_STATUS_DELIVERED}


class CheckoutProcess:
    """The checkout as a child process, killed by its own switch and restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.probe = Process("checkout", int(env["PORT"]), int(env["ADMIN_PORT"]), str(log))

    @property
    def address(self) -> str:
        return self.probe.address

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reference_services.checkout"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(is_healthy, self.probe):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "checkout not healthy in 60 s"
            await asyncio.sleep(0.05)

    async def died(self) -> int:
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, 10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=15)


@dataclass
class Rig:
    """The checkout's partners in this process, the checkout a child process."""

    services: dict[str, GrpcService]
    checkout: CheckoutProcess
    config: checkout.Config
    """The settings an in-process checkout over the same partners would take."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> AsyncIterator[Rig]:
    data = tmp_path_factory.mktemp("saga")
    stream = unique("SAGA").upper()
    async with AsyncExitStack() as stack:
        services: dict[str, GrpcService] = {}

        async def start(name: str, wiring: Any) -> GrpcService:
            services[name] = await stack.enter_async_context(serving(name, wiring))
            return services[name]

        def db(name: str) -> str:
            return f"sqlite:///{data / name}"

        inventory = productcatalog.Config(
            database_url=db("inventory.db"), nats_url=nats_url, stream=stream
        )
        catalog = await start("productcatalog", await productcatalog.build(inventory))
        await start("currency", await currency.build())
        await start("cart", await cart.build(cart.Config(db("cart.db"), catalog.address)))
        courier = shipping.Config(
            db("shipping.db"), nats_url, stream, pickup_delay=600, delivery_delay=600
        )
        await start("shipping", await shipping.build(courier))
        await start(
            "payment", await payment.build(payment.Config(db("payment.db"), nats_url, stream))
        )
        await start("user", await user.build(user.Config(db("user.db"), data / "keys")))
        config = checkout.Config(
            cart_addr=services["cart"].address,
            catalog_addr=catalog.address,
            currency_addr=services["currency"].address,
            shipping_addr=services["shipping"].address,
            payment_addr=services["payment"].address,
            order_store=db("orders.db"),
            nats_url=nats_url,
            stream=stream,
            user_addr=services["user"].address,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            HOST="127.0.0.1",
            PORT=str(free_port()),
            ADMIN_PORT=str(free_port()),
            CART_SERVICE_ADDR=config.cart_addr,
            PRODUCT_CATALOG_SERVICE_ADDR=config.catalog_addr,
            CURRENCY_SERVICE_ADDR=config.currency_addr,
            SHIPPING_SERVICE_ADDR=config.shipping_addr,
            PAYMENT_SERVICE_ADDR=config.payment_addr,
            USER_SERVICE_ADDR=config.user_addr or "",
            ORDER_STORE=config.order_store,
            NATS_URL=nats_url,
            EVENTS_STREAM=stream,
            CHECKOUT_RECOVERY_INTERVAL_S=str(RECOVERY_INTERVAL),
            CHECKOUT_SAGA_LEASE_S=str(LEASE),
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        process = CheckoutProcess(env, data / "checkout.log")
        stack.callback(process.stop)
        broker = Broker(nats_url, Stream(stream))

        async def forget_stream() -> None:
            await broker.stream.delete(await broker.jetstream())
            await broker.close()

        stack.push_async_callback(forget_stream)
        await process.start()
        yield Rig(services, process, config)


@dataclass
class Customer:
    user_id: str
    token: str


@dataclass
class Doors:
    """Stubs of the boutique's processes, over channels of the running test's loop."""

    rig: Rig
    channels: list[grpc.aio.Channel]

    def _channel(self, name: str) -> grpc.aio.Channel:
        address = (
            self.rig.checkout.address if name == "checkout" else self.rig.services[name].address
        )
        channel = grpc.aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    def __post_init__(self) -> None:
        self.cart = pb_grpc.CartServiceStub(self._channel("cart"))
        self.checkout = pb_grpc.CheckoutServiceStub(self._channel("checkout"))
        self.orders = opb_grpc.OrderServiceStub(self._channel("checkout"))
        self.inventory = ipb_grpc.InventoryServiceStub(self._channel("productcatalog"))
        self.ledger = lpb_grpc.PaymentLedgerStub(self._channel("payment"))
        self.users = upb_grpc.UserServiceStub(self._channel("user"))

    async def customer(self) -> Customer:
        """A new account, signed in through the user service."""
        email = f"saga-{uuid.uuid4().hex[:10]}@example.com"
        made = await self.users.Register(
            upb.RegisterRequest(email=email, name="Saga", password=PASSWORD)
        )
        token = await self.users.Authenticate(
            upb.AuthenticateRequest(email=email, password=PASSWORD)
        )
        return Customer(made.id, token.token)

    async def fill(self, who: Customer, lines: dict[str, int]) -> None:
        for product_id, quantity in lines.items():
            item = pb.CartItem(product_id=product_id, quantity=quantity)
            await self.cart.AddItem(pb.AddItemRequest(user_id=who.user_id, item=item))

    async def place(self, who: Customer, lines: dict[str, int]) -> pb.OrderResult:
        await self.fill(who, lines)
        reply = await self.checkout.PlaceOrder(order_request(who.user_id), timeout=30)
        return reply.order

    async def order(self, who: Customer, order_id: str) -> opb.Order:
        return await self.orders.GetOrder(
            opb.GetOrderRequest(order_id=order_id), metadata=bearer(who.token), timeout=5
        )

    async def only_order(self, who: Customer) -> opb.Order:
        listed = await self.orders.ListOrders(
            opb.ListOrdersRequest(), metadata=bearer(who.token), timeout=5
        )
        (order,) = listed.orders
        return order

    async def stock(self, product_id: str) -> ipb.StockLevel:
        reply = await self.inventory.GetStock(ipb.GetStockRequest(product_ids=[product_id]))
        (level,) = reply.levels
        return level

    async def payment(self, order_id: str) -> lpb.Payment | None:
        try:
            return await self.ledger.GetPayment(lpb.GetPaymentRequest(order_id=order_id))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND, exc.details()
            return None

    async def payments(self, who: Customer) -> list[lpb.Payment]:
        reply = await self.ledger.ListPayments(
            lpb.ListPaymentsRequest(user_id=who.user_id, page_size=100)
        )
        return list(reply.payments)


@pytest_asyncio.fixture(loop_scope="module")
async def doors(rig: Rig) -> AsyncIterator[Doors]:
    opened = Doors(rig, [])
    try:
        yield opened
    finally:
        for channel in opened.channels:
            await channel.close()


async def set_faults(rig: Rig, service: str, **switches: str) -> None:
    """Set fault switches on a service's admin port, as an operator does."""
    admin = (
        rig.checkout.probe.admin_url if service == "checkout" else rig.services[service].admin.url
    )
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(f"{admin}/faults", params=switches)
    assert response.status_code == 200, response.text


async def settled(doors: Doors, who: Customer, order_id: str, within: float) -> opb.Order:
    """The order once the saga is over with it (shipped or failed), within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        order = await doors.order(who, order_id)
        if order.status in SETTLED:
            return order
        assert time.monotonic() < deadline, f"still {ev.OrderStatus.Name(order.status)}"
        await asyncio.sleep(0.05)


async def test_an_order_is_reserved_charged_shipped_and_committed(doors: Doors) -> None:
    who = await doors.customer()
    before = await doors.stock(MUG)
    result = await doors.place(who, {MUG: 2})
    assert result.shipping_tracking_id
    order = await doors.order(who, result.order_id)
    assert order.status == ev.ORDER_STATUS_SHIPPED
    assert order.tracking_id == result.shipping_tracking_id
    assert [c.to_status for c in order.history] == [
        ev.ORDER_STATUS_PENDING,
        ev.ORDER_STATUS_PAID,
        ev.ORDER_STATUS_SHIPPED,
    ]
    assert len({c.trace_id for c in order.history}) == 1  # one trace: the order's
    payment = await doors.payment(result.order_id)
    assert payment is not None
    assert payment.status == lpb.PAYMENT_STATUS_CHARGED
    assert payment.amount == order.total
    after = await doors.stock(MUG)
    assert (after.on_hand, after.reserved) == (before.on_hand - 2, before.reserved)
    cart = await doors.cart.GetCart(pb.GetCartRequest(user_id=who.user_id))
    assert not cart.items


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
async def test_history_keeps_the_trace_id_only_of_a_sampled_trace(
    doors: Doors, sampled: bool
) -> None:
    """A trace the sampler dropped never reaches the viewer: its id is not stored,
    so the shop shows no link to a trace it cannot find (order.proto: "empty if untraced")."""
    who = await doors.customer()
    await doors.fill(who, {MUG: 1})
    trace = uuid.uuid4().hex
    parent = f"00-{trace}-{uuid.uuid4().hex[:16]}-{'01' if sampled else '00'}"
    reply = await doors.checkout.PlaceOrder(
        order_request(who.user_id), metadata=(("traceparent", parent),), timeout=30
    )
    order = await doors.order(who, reply.order.order_id)
    assert [c.to_status for c in order.history] == [
        ev.ORDER_STATUS_PENDING,
        ev.ORDER_STATUS_PAID,
        ev.ORDER_STATUS_SHIPPED,
    ]
    assert [c.trace_id for c in order.history] == [trace if sampled else ""] * 3


async def test_too_little_stock_is_failed_precondition_and_nothing_is_charged(
    rig: Rig, doors: Doors
) -> None:
    who = await doors.customer()
    before = await doors.stock(MUG)
    await set_faults(rig, "productcatalog", stock_exhausted=MUG)
    try:
        await doors.fill(who, {MUG: 1})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await doors.checkout.PlaceOrder(order_request(who.user_id), timeout=30)
    finally:
        await set_faults(rig, "productcatalog", stock_exhausted="")
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("reserve stock: ")
    order = await doors.only_order(who)
    assert order.status == ev.ORDER_STATUS_FAILED
    assert order.history[-1].reason == caught.value.details()
    assert await doors.payment(order.id) is None
    assert await doors.payments(who) == []
    after = await doors.stock(MUG)
    assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)


async def test_a_failed_shipment_is_refunded_released_and_failed_with_its_reason(
    rig: Rig, doors: Doors, otel: Telemetry
) -> None:
    # a checkout in this process over the same partners and store: its spans are captured
    async with serving("checkout", await checkout.build(rig.config)) as local:
        channel = grpc.aio.insecure_channel(local.address)
        doors.channels.append(channel)
        doors.checkout = pb_grpc.CheckoutServiceStub(channel)
        who = await doors.customer()
        before = await doors.stock(MUG)
        await set_faults(rig, "shipping", failure_rate="1")
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await doors.place(who, {MUG: 1})
        finally:
            await set_faults(rig, "shipping", failure_rate="0")
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details().startswith("ship order: ")
    order = await doors.only_order(who)
    assert order.status == ev.ORDER_STATUS_FAILED
    assert [c.to_status for c in order.history] == [
        ev.ORDER_STATUS_PENDING,
        ev.ORDER_STATUS_PAID,
        ev.ORDER_STATUS_FAILED,
    ]
    assert order.history[-1].reason == caught.value.details()
    payment = await doors.payment(order.id)
    assert payment is not None
    assert payment.status == lpb.PAYMENT_STATUS_REFUNDED
    assert payment.refund_reason == caught.value.details()
    after = await doors.stock(MUG)
    assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)
    # each step and compensation is a span of the order's trace, the calls their children
    spans = otel.finished()
    trace_id = int(order.history[-1].trace_id, 16)
    in_trace = [s for s in spans if s.context.trace_id == trace_id]  # type: ignore[union-attr]
    by_id = {s.context.span_id: s for s in in_trace}  # type: ignore[union-attr]
    names = {s.name for s in in_trace}
    assert {"saga reserve", "saga charge", "saga ship", "saga compensate"} <= names
    for step, call in {
        "saga void": "boutique.v1.ShipmentService/GetOrderShipment",
        "saga refund": "boutique.v1.PaymentLedger/Refund",
        "saga release": "boutique.v1.InventoryService/Release",
    }.items():
        (span,) = [s for s in in_trace if s.name == step]
        assert span.parent is not None
        assert by_id[span.parent.span_id].name == "saga compensate"
        assert call in {
            s.name for s in in_trace if s.parent and s.parent.span_id == span.context.span_id
        }  # type: ignore[union-attr]


@pytest.mark.parametrize("step", STEPS)
async def test_a_checkout_killed_after_each_step_settles_every_order_on_restart(
    rig: Rig, doors: Doors, step: str
) -> None:
    who = await doors.customer()
    before = await doors.stock(MUG)
    await set_faults(rig, "checkout", crash_after=step)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await doors.place(who, {MUG: 3})
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # the process is gone
    assert await rig.checkout.died() == -signal.SIGKILL
    spawned = time.monotonic()
    await rig.checkout.start()
    restarted = time.monotonic()

    order = await doors.only_order(who)
    order = await settled(doors, who, order.id, RECOVERY_INTERVAL + 2.0)
    took = time.monotonic() - restarted
    payment = await doors.payment(order.id)
    after = await doors.stock(MUG)
    assert len(await doors.payments(who)) <= 1  # never charged twice
    if STEPS.index(step) >= STEPS.index("charge"):  # past the payment: driven forward
        assert order.status in SHIPPED_OR_LATER, (step, order.history)
        assert payment is not None
        assert payment.status == lpb.PAYMENT_STATUS_CHARGED
        assert payment.amount == order.total
        assert order.tracking_id
        assert (after.on_hand, after.reserved) == (before.on_hand - 3, before.reserved)
    else:  # before it: compensated (no money kept, no stock held)
        assert order.status == ev.ORDER_STATUS_FAILED, (step, order.history)
        assert payment is None or payment.status == lpb.PAYMENT_STATUS_REFUNDED
        assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)
        assert order.history[-1].reason == "checkout interrupted before the payment was recorded"
    print(
        f"crash_after={step}: settled {took:.2f} s after the restarted checkout was healthy,"
        f" {time.monotonic() - spawned:.2f} s after it was started"
    )
    assert took < RECOVERY_INTERVAL + 2.0


async def test_a_paid_order_whose_stock_is_gone_still_ships_with_the_gap_in_view(
    rig: Rig, doors: Doors, otel: Telemetry
) -> None:
    """The checkout dies once the parcel is labelled; while it is down the order's
    reservation stops holding (released here; expired and sold in real life), so its
    Commit is refused. The order is paid and labelled: recovery still ships it, and the
    refusal is in plain view, an error log naming the order and the step's span an error."""
    who = await doors.customer()
    before = await doors.stock(MUG)
    await set_faults(rig, "checkout", crash_after="ship")
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await doors.place(who, {MUG: 1})
        assert await rig.checkout.died() == -signal.SIGKILL
        (charged,) = await doors.payments(who)  # the OrderService went down with it
        await doors.inventory.Release(ipb.ReleaseRequest(order_id=charged.order_id))
        # recovery in this process (its spans and log captured) finishes the saga
        config = replace(rig.config, timing=Timing(interval=0.2, lease=LEASE))
        with capture_logs() as logs:
            async with serving("checkout", await checkout.build(config)) as local:
                channel = grpc.aio.insecure_channel(local.address)
                doors.channels.append(channel)
                doors.orders = opb_grpc.OrderServiceStub(channel)
                order = await settled(doors, who, charged.order_id, LEASE + 5.0)
    finally:
        await rig.checkout.start()
    assert order.status == ev.ORDER_STATUS_SHIPPED and order.tracking_id
    payment = await doors.payment(order.id)
    assert payment is not None and payment.status == lpb.PAYMENT_STATUS_CHARGED
    after = await doors.stock(MUG)
    assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)  # not taken
    (entry,) = logs.where(msg="stock of a shipped order not committed")
    assert entry["level"] == "error" and entry["order_id"] == order.id
    assert "released" in entry["reason"]
    (span,) = [
        s
        for s in otel.finished()
        if s.name == "saga complete" and (s.attributes or {}).get("app.order.id") == order.id
    ]
    assert span.status.status_code is StatusCode.ERROR
    assert "released" in (span.status.description or "")


async def test_a_sigterm_drains_the_order_in_flight_then_exits_0(rig: Rig, doors: Doors) -> None:
    """A rolling update's SIGTERM: the PlaceOrder in flight, slowed past the runtime's
    default 5 s grace by the catalog's latency switch (two lines, 3 s a lookup, each
    within the checkout's 5 s call timeout), still answers OK with its order SHIPPED,
    and the process exits 0 within CHECKOUT_DRAIN_S (default 10 s)."""
    who = await doors.customer()
    await doors.fill(who, {MUG: 1, WATCH: 1})
    await set_faults(rig, "productcatalog", extra_latency_ms="3000")
    try:
        placing = asyncio.ensure_future(
            doors.checkout.PlaceOrder(order_request(who.user_id), timeout=30)
        )
        await asyncio.sleep(0.5)  # the call is in the checkout, waiting on the catalog
        assert not placing.done()
        assert rig.checkout.process is not None
        rig.checkout.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        reply = await placing
        assert await rig.checkout.died() == 0
        took = time.monotonic() - signalled
    finally:
        await set_faults(rig, "productcatalog", extra_latency_ms="0")
    await rig.checkout.start()
    order = await doors.order(who, reply.order.order_id)
    assert order.status in SHIPPED_OR_LATER, order.history
    assert "sagas still running at stop" not in rig.checkout.log.read_text()
    print(f"drained and exited {took:.2f} s after SIGTERM")
    assert took < checkout.DRAIN_SECONDS
