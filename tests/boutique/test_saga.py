"""The checkout saga through the real doors, every service its own process (the
launcher's boutique, with its NATS and trace viewer): an order placed, one refused
for want of stock (nothing charged), one whose shipping fails (refunded, released,
FAILED with the reason), and the checkout SIGKILLed after each saga step in turn
(``crash_after``), restarted, and every invariant checked through the services'
own RPCs within the recovery interval."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest

from reference_services.checkout.saga import STEPS
from reference_services.common.auth import bearer
from reference_services.launcher import Boutique
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
from tests.boutique.test_checkout import order_request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RECOVERY_INTERVAL = 2.0
"""CHECKOUT_RECOVERY_INTERVAL_S of the test's checkout (10 by default)."""
PASSWORD = "correct horse battery"
MUG = "6E92ZMYYFZ"
SETTLED = {
    ev.ORDER_STATUS_SHIPPED,
    ev.ORDER_STATUS_IN_TRANSIT,
    ev.ORDER_STATUS_DELIVERED,
    ev.ORDER_STATUS_FAILED,
}
SHIPPED_OR_LATER = {ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_IN_TRANSIT, ev.ORDER_STATUS_DELIVERED}


def saga_env(interval: float = RECOVERY_INTERVAL) -> dict[str, dict[str, str]]:
    """Service settings of a boutique whose checkout recovers quickly."""
    return {
        "checkout": {"CHECKOUT_RECOVERY_INTERVAL_S": str(interval), "CHECKOUT_SAGA_LEASE_S": "1"},
        "shipping": {"SHIPPING_PICKUP_DELAY_S": "600", "SHIPPING_DELIVERY_DELAY_S": "600"},
    }


@pytest.fixture(scope="module")
def boutique() -> Iterator[Boutique]:
    data = Path(tempfile.mkdtemp(prefix="saga-"))
    try:
        with Boutique(data, base_port=0, collector=True, service_env=saga_env()) as running:
            yield running
    finally:
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class Customer:
    user_id: str
    token: str


@dataclass
class Doors:
    """Stubs of the boutique's processes, over channels of the running test's loop."""

    boutique: Boutique
    channels: list[grpc.aio.Channel]

    def _channel(self, name: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(self.boutique.processes[name].address)
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


@pytest.fixture
async def doors(boutique: Boutique) -> AsyncIterator[Doors]:
    opened = Doors(boutique, [])
    try:
        yield opened
    finally:
        for channel in opened.channels:
            await channel.close()


def set_faults(boutique: Boutique, service: str, **switches: str) -> None:
    url = f"{boutique.processes[service].admin_url}/faults"
    response = httpx.post(url, params=switches, timeout=5)
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


async def test_too_little_stock_is_failed_precondition_and_nothing_is_charged(
    boutique: Boutique, doors: Doors
) -> None:
    who = await doors.customer()
    before = await doors.stock(MUG)
    set_faults(boutique, "productcatalog", stock_exhausted=MUG)
    try:
        await doors.fill(who, {MUG: 1})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await doors.checkout.PlaceOrder(order_request(who.user_id), timeout=30)
    finally:
        set_faults(boutique, "productcatalog", stock_exhausted="")
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
    boutique: Boutique, doors: Doors
) -> None:
    who = await doors.customer()
    before = await doors.stock(MUG)
    set_faults(boutique, "shipping", failure_rate="1")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await doors.place(who, {MUG: 1})
    finally:
        set_faults(boutique, "shipping", failure_rate="0")
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
    # the compensation is in the order's trace, as the viewer shows it
    trace_id = order.history[-1].trace_id
    viewer = boutique.processes["collector"].admin_url
    deadline = time.monotonic() + 15
    names: set[str] = set()
    while not {"saga ship", "saga compensate", "saga refund", "saga release"} <= names:
        assert time.monotonic() < deadline, f"spans seen: {sorted(names)}"
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"{viewer}/api/traces/{trace_id}")
        if reply.status_code == 200:
            names = {span["name"] for span in reply.json()["spans"]}


@pytest.mark.parametrize("step", STEPS)
async def test_a_checkout_killed_after_each_step_settles_every_order_on_restart(
    boutique: Boutique, doors: Doors, step: str
) -> None:
    who = await doors.customer()
    before = await doors.stock(MUG)
    set_faults(boutique, "checkout", crash_after=step)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await doors.place(who, {MUG: 3})
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # the process is gone
    child = boutique.child("checkout")
    assert child is not None
    assert await asyncio.to_thread(child.wait, 10) == -9  # SIGKILL
    await asyncio.to_thread(boutique.start_service, "checkout")
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
    print(f"crash_after={step}: settled {took:.2f} s after the restart")
    assert took < RECOVERY_INTERVAL + 2.0
