"""The surfaces of orders, inventory, the payment ledger and shipments against hostile
input, through real gRPC calls and the services' real admin ports.

Huge, empty and control-character ids and reasons, too many lines, out-of-range
quantities, amounts and page sizes, forged page tokens, unknown enum values,
repeated or oversized metadata and another user's order are refused with a short
message naming the field (INVALID_ARGUMENT, NOT_FOUND), and nothing changes. A fault
switch given a huge or unknown value is a short 400 and every switch stays as it was.
One boutique serves the whole module.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from reference_services import dead_letters
from reference_services.checkout import service as checkout_service
from reference_services.common.auth import bearer
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import ledger_pb2 as lpb
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from reference_services.protos.boutique.v1 import order_pb2 as opb
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from reference_services.protos.boutique.v1 import shipment_pb2 as spb
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc
from tests.boutique.conftest import Boutique, boutique_running, rpc_error, serving, stub_for
from tests.boutique.test_input_bounds import ADDRESS, CARD, MUG, SHORT_MESSAGE, place_order, usd

pytestmark = pytest.mark.timeout(120)
IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
"""The async tests share the loop of the module's boutique."""

HUGE = "x" * (1024 * 1024)
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
BUYER = "bounds-buyer"
STRANGER = "bounds-stranger"
PAST_INT64_TOKEN = base64.urlsafe_b64encode(f"{2**64}:x".encode()).decode()
"""A well-formed page token whose time no database integer holds."""
UNICODE_DIGITS_TOKEN = base64.urlsafe_b64encode("\u0661\u0662:x".encode()).decode()
"""A page token whose time is written in Arabic-Indic digits."""
SHIP = pb.ShipOrderRequest(address=ADDRESS, items=[pb.CartItem(product_id=MUG, quantity=1)])


@dataclass
class Rig:
    """A running boutique, stubs of its new services, and an order ``BUYER`` placed."""

    shop: Boutique
    inventory: ipb_grpc.InventoryServiceStub
    ledger: lpb_grpc.PaymentLedgerStub
    shipments: spb_grpc.ShipmentServiceStub
    shipping: pb_grpc.ShippingServiceStub
    orders: opb_grpc.OrderServiceStub
    notifications: npb_grpc.NotificationServiceStub
    order_id: str

    def token(self, sub: str, role: str = "customer") -> Any:
        assert self.shop.issuer is not None
        return bearer(self.shop.issuer.token(sub, role))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> AsyncIterator[Rig]:
    data = tmp_path_factory.mktemp("bounds-orders")
    async with AsyncExitStack() as stack:
        shop = await stack.enter_async_context(boutique_running(data, nats_url))

        async def stub(name: str, stub_class: Any) -> Any:
            return await stack.enter_async_context(stub_for(shop[name], stub_class))

        assert shop.issuer is not None and shop.stream is not None
        # the module's own checkout also serves OrderService: it verifies tokens with the
        # user service's keys (the shared boutique's checkout starts before that service)
        config = checkout_service.Config(
            cart_addr=shop["cart"].address,
            catalog_addr=shop["productcatalog"].address,
            currency_addr=shop["currency"].address,
            shipping_addr=shop["shipping"].address,
            payment_addr=shop["payment"].address,
            order_store=f"sqlite:///{data / 'orders.db'}",
            nats_url=nats_url,
            stream=shop.stream.name,
            user_addr=shop.issuer.address,
        )
        checkout_wiring = await checkout_service.build(config)
        orders = await stack.enter_async_context(serving("checkout", checkout_wiring))
        shop.services["checkout"] = orders
        cart = await stub("cart", pb_grpc.CartServiceStub)
        item = pb.CartItem(product_id=MUG, quantity=1)
        await cart.AddItem(pb.AddItemRequest(user_id=BUYER, item=item))
        checkout = await stub("checkout", pb_grpc.CheckoutServiceStub)
        placed = await checkout.PlaceOrder(place_order(user_id=BUYER))
        yield Rig(
            shop=shop,
            inventory=await stub("productcatalog", ipb_grpc.InventoryServiceStub),
            ledger=await stub("payment", lpb_grpc.PaymentLedgerStub),
            shipments=await stub("shipping", spb_grpc.ShipmentServiceStub),
            shipping=await stub("shipping", pb_grpc.ShippingServiceStub),
            orders=await stub("checkout", opb_grpc.OrderServiceStub),
            notifications=await stub("notification", npb_grpc.NotificationServiceStub),
            order_id=placed.order.order_id,
        )


def lines(count: int, quantity: int = 1) -> list[ipb.ReservationLine]:
    return [ipb.ReservationLine(product_id=MUG, quantity=quantity)] * count


def reserve(items: list[ipb.ReservationLine], order_id: str = "") -> ipb.ReserveRequest:
    return ipb.ReserveRequest(order_id=order_id or str(uuid.uuid4()), items=items)


def charge_order(amount: pb.Money, order_id: str = "") -> lpb.ChargeOrderRequest:
    return lpb.ChargeOrderRequest(
        order_id=order_id or f"o-{uuid.uuid4().hex}", user_id=BUYER, amount=amount, credit_card=CARD
    )


Case = Callable[[Rig], Awaitable[Any]]
INVALID: dict[str, tuple[str, Case]] = {
    # InventoryService
    "GetStock huge id": (
        "product_ids[0]",
        lambda r: r.inventory.GetStock(ipb.GetStockRequest(product_ids=[HUGE])),
    ),
    "GetStock control character": (
        "product_ids[0]",
        lambda r: r.inventory.GetStock(ipb.GetStockRequest(product_ids=["a\x00b"])),
    ),
    "GetStock 10,000 ids": (
        "product_ids",
        lambda r: r.inventory.GetStock(ipb.GetStockRequest(product_ids=[MUG] * 10_000)),
    ),
    "Reserve huge order id": ("order_id", lambda r: r.inventory.Reserve(reserve(lines(1), HUGE))),
    "Reserve path order id": (
        "order_id",
        lambda r: r.inventory.Reserve(reserve(lines(1), "../../x")),
    ),
    "Reserve 10,000 lines": ("items", lambda r: r.inventory.Reserve(reserve(lines(10_000)))),
    "Reserve no lines": ("items", lambda r: r.inventory.Reserve(reserve([]))),
    "Reserve quantity 0": (
        "items[0].quantity",
        lambda r: r.inventory.Reserve(reserve(lines(1, 0))),
    ),
    "Reserve quantity -1": (
        "items[0].quantity",
        lambda r: r.inventory.Reserve(reserve(lines(1, -1))),
    ),
    "Reserve quantity 2**31-1": (
        "items[0].quantity",
        lambda r: r.inventory.Reserve(reserve(lines(1, INT32_MAX))),
    ),
    "Commit empty order id": ("order_id", lambda r: r.inventory.Commit(ipb.CommitRequest())),
    "Release control character": (
        "order_id",
        lambda r: r.inventory.Release(ipb.ReleaseRequest(order_id="\x1b[31m")),
    ),
    # PaymentLedger
    "ChargeOrder huge order id": (
        "order_id",
        lambda r: r.ledger.ChargeOrder(charge_order(usd(1), HUGE)),
    ),
    "ChargeOrder int64 max": (
        "amount.units",
        lambda r: r.ledger.ChargeOrder(charge_order(usd(INT64_MAX, 999_999_999))),
    ),
    "ChargeOrder int64 min": (
        "amount.units",
        lambda r: r.ledger.ChargeOrder(charge_order(usd(-INT64_MAX - 1, -999_999_999))),
    ),
    "ChargeOrder mixed signs": (
        "amount.nanos",
        lambda r: r.ledger.ChargeOrder(charge_order(usd(1, -5))),
    ),
    "ChargeOrder other currency": (
        "amount",
        lambda r: r.ledger.ChargeOrder(
            lpb.ChargeOrderRequest(
                order_id=r.order_id,
                user_id=BUYER,
                amount=usd(1, code="JPY"),
                credit_card=CARD,
            )
        ),
    ),
    "Refund huge reason": (
        "reason",
        lambda r: r.ledger.Refund(lpb.RefundRequest(order_id=r.order_id, reason=HUGE)),
    ),
    "Refund control reason": (
        "reason",
        lambda r: r.ledger.Refund(lpb.RefundRequest(order_id=r.order_id, reason="a\x1b[31m")),
    ),
    "ListPayments page_size -1": (
        "page_size",
        lambda r: r.ledger.ListPayments(lpb.ListPaymentsRequest(user_id=BUYER, page_size=-1)),
    ),
    "ListPayments page_size 2**31-1": (
        "page_size",
        lambda r: r.ledger.ListPayments(
            lpb.ListPaymentsRequest(user_id=BUYER, page_size=INT32_MAX)
        ),
    ),
    "ListPayments forged token": (
        "page_token",
        lambda r: r.ledger.ListPayments(
            lpb.ListPaymentsRequest(user_id=BUYER, page_token="Zm9vYmFy")
        ),
    ),
    "ListPayments token past int64": (
        "page_token",
        lambda r: r.ledger.ListPayments(
            lpb.ListPaymentsRequest(user_id=BUYER, page_token=PAST_INT64_TOKEN)
        ),
    ),
    "ListPayments huge token": (
        "page_token",
        lambda r: r.ledger.ListPayments(lpb.ListPaymentsRequest(user_id=BUYER, page_token=HUGE)),
    ),
    # ShipmentService and ShipOrder's metadata
    "GetShipment huge id": (
        "tracking_id",
        lambda r: r.shipments.GetShipment(spb.GetShipmentRequest(tracking_id=HUGE)),
    ),
    "GetOrderShipment control character": (
        "order_id",
        lambda r: r.shipments.GetOrderShipment(spb.GetOrderShipmentRequest(order_id="\x7f")),
    ),
    "VoidShipment empty id": (
        "tracking_id",
        lambda r: r.shipments.VoidShipment(spb.VoidShipmentRequest()),
    ),
    "ShipOrder repeated metadata": (
        "boutique-order-id",
        lambda r: r.shipping.ShipOrder(
            SHIP, metadata=(("boutique-order-id", "a"), ("boutique-order-id", "b"))
        ),
    ),
    "ShipOrder oversized metadata": (
        "boutique-order-id",
        lambda r: r.shipping.ShipOrder(SHIP, metadata=(("boutique-order-id", "x" * 7000),)),
    ),
    "ShipOrder empty metadata": (
        "boutique-order-id",
        lambda r: r.shipping.ShipOrder(SHIP, metadata=(("boutique-order-id", ""),)),
    ),
    # OrderService
    "GetOrder huge id": (
        "order_id",
        lambda r: r.orders.GetOrder(opb.GetOrderRequest(order_id=HUGE), metadata=r.token(BUYER)),
    ),
    "CancelOrder huge reason": (
        "reason",
        lambda r: r.orders.CancelOrder(
            opb.CancelOrderRequest(order_id=r.order_id, reason=HUGE), metadata=r.token(BUYER)
        ),
    ),
    "CancelOrder control reason": (
        "reason",
        lambda r: r.orders.CancelOrder(
            opb.CancelOrderRequest(order_id=r.order_id, reason="\x00"), metadata=r.token(BUYER)
        ),
    ),
    "CancelOrder empty id": (
        "order_id",
        lambda r: r.orders.CancelOrder(opb.CancelOrderRequest(), metadata=r.token(BUYER)),
    ),
    "ListOrders page_size -1": (
        "page_size",
        lambda r: r.orders.ListOrders(opb.ListOrdersRequest(page_size=-1), metadata=r.token(BUYER)),
    ),
    "ListOrders forged token": (
        "page_token",
        lambda r: r.orders.ListOrders(
            opb.ListOrdersRequest(page_token="Zm9vYmFy"), metadata=r.token(BUYER)
        ),
    ),
    "ListOrders token past int64": (
        "page_token",
        lambda r: r.orders.ListOrders(
            opb.ListOrdersRequest(page_token=PAST_INT64_TOKEN), metadata=r.token(BUYER)
        ),
    ),
    "ListOrders token of Unicode digits": (
        "page_token",
        lambda r: r.orders.ListOrders(
            opb.ListOrdersRequest(page_token=UNICODE_DIGITS_TOKEN), metadata=r.token(BUYER)
        ),
    ),
    "GetNotificationHistory token past int64": (
        "page_token",
        lambda r: r.notifications.GetNotificationHistory(
            npb.GetNotificationHistoryRequest(user_id=BUYER, page_token=PAST_INT64_TOKEN),
            metadata=r.token(BUYER),
        ),
    ),
    "ListOrders huge token": (
        "page_token",
        lambda r: r.orders.ListOrders(
            opb.ListOrdersRequest(page_token=HUGE), metadata=r.token(BUYER)
        ),
    ),
    "UpdateOrderStatus status 99": (
        "status",
        lambda r: r.orders.UpdateOrderStatus(
            opb.UpdateOrderStatusRequest(order_id=r.order_id, status=99),
            metadata=r.token("bounds-admin", "admin"),
        ),
    ),
    "UpdateOrderStatus status -1": (
        "status",
        lambda r: r.orders.UpdateOrderStatus(
            opb.UpdateOrderStatusRequest(order_id=r.order_id, status=-1),
            metadata=r.token("bounds-admin", "admin"),
        ),
    ),
}


async def order_unchanged(rig: Rig) -> None:
    """The buyer's order is not cancelled and its payment still charged (the courier may
    move it on meanwhile)."""
    order = await rig.orders.GetOrder(
        opb.GetOrderRequest(order_id=rig.order_id), metadata=rig.token(BUYER)
    )
    assert order.status != ev.ORDER_STATUS_CANCELLED, order.history
    payment = await rig.ledger.GetPayment(lpb.GetPaymentRequest(order_id=rig.order_id))
    assert payment.status == lpb.PAYMENT_STATUS_CHARGED
    assert not payment.refund_reason


@IN_MODULE_LOOP
@pytest.mark.parametrize("case", INVALID)
async def test_bad_argument_is_refused_naming_the_field(rig: Rig, case: str) -> None:
    field, call = INVALID[case]
    error = await rpc_error(call(rig))
    details = error.details() or ""
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (case, error.code(), details[:300])
    assert field in details, (case, details[:300])
    assert len(details) <= SHORT_MESSAGE, (case, len(details))
    await order_unchanged(rig)


@IN_MODULE_LOOP
async def test_another_users_order_is_not_found_and_stays_placed(rig: Rig) -> None:
    request = opb.CancelOrderRequest(order_id=rig.order_id, reason="not mine")
    cancel = await rpc_error(rig.orders.CancelOrder(request, metadata=rig.token(STRANGER)))
    assert cancel.code() is grpc.StatusCode.NOT_FOUND, cancel.details()
    get = opb.GetOrderRequest(order_id=rig.order_id)
    seen = await rpc_error(rig.orders.GetOrder(get, metadata=rig.token(STRANGER)))
    assert seen.code() is grpc.StatusCode.NOT_FOUND, seen.details()
    listed = await rig.orders.ListOrders(opb.ListOrdersRequest(), metadata=rig.token(STRANGER))
    assert not listed.orders
    await order_unchanged(rig)


@IN_MODULE_LOOP
async def test_unknown_ids_are_not_found(rig: Rig) -> None:
    calls = {
        "GetStock": rig.inventory.GetStock(ipb.GetStockRequest(product_ids=["NOPE"])),
        "Commit": rig.inventory.Commit(ipb.CommitRequest(order_id=str(uuid.uuid4()))),
        "Refund": rig.ledger.Refund(lpb.RefundRequest(order_id="nope")),
        "GetShipment": rig.shipments.GetShipment(spb.GetShipmentRequest(tracking_id="AB-1")),
        "VoidShipment": rig.shipments.VoidShipment(spb.VoidShipmentRequest(tracking_id="AB-1")),
        "CancelOrder": rig.orders.CancelOrder(
            opb.CancelOrderRequest(order_id=str(uuid.uuid4())), metadata=rig.token(BUYER)
        ),
    }
    for name, call in calls.items():
        error = await rpc_error(call)
        assert error.code() is grpc.StatusCode.NOT_FOUND, (name, error.code(), error.details())
        assert len(error.details() or "") <= SHORT_MESSAGE, name


BAD_SWITCHES = {
    "checkout crash_after path": ("checkout", "crash_after", "../../x"),
    "checkout crash_after 10 KB": ("checkout", "crash_after", "x" * 10_000),
    "productcatalog stock_exhausted 10 KB": ("productcatalog", "stock_exhausted", "y" * 10_000),
    "payment failure_rate 10 KB digits": ("payment", "failure_rate", "9" * 10_000),
    "payment failure_rate 10 KB text": ("payment", "failure_rate", "z" * 10_000),
    "shipping unknown 10 KB switch": ("shipping", "z" * 10_000, "1"),
}


@IN_MODULE_LOOP
@pytest.mark.parametrize("case", BAD_SWITCHES)
async def test_bad_fault_switch_is_a_short_400_and_changes_nothing(rig: Rig, case: str) -> None:
    service, name, value = BAD_SWITCHES[case]
    url = f"{rig.shop[service].admin.url}/faults"
    async with httpx.AsyncClient(timeout=10.0) as client:
        before = (await client.get(url)).json()
        response = await client.post(url, params={name: value})
        after = (await client.get(url)).json()
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert name[:32] in error, error[:300]
    assert len(error) <= 2 * SHORT_MESSAGE, (case, len(error))
    assert after == before


@pytest.mark.parametrize(
    "argv",
    [
        ["replay-dead-letters", "--event-id", "e" * 5000],
        ["replay-dead-letters", "--event-id", "a\x1bb"],
        ["replay-dead-letters", "--event-id", ""],
        ["list-dead-letters", "--limit", "9" * 5000],
        ["list-dead-letters", "--consumer", "../../x"],
    ],
)
def test_bad_dead_letter_argument_exits_2_before_connecting(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:  # no NATS_URL: it never gets that far
        dead_letters.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    error = captured.err.splitlines()[-1]
    assert argv[1] in error, error[:300]
    assert len(error) <= 2 * SHORT_MESSAGE + 100, len(error)  # the usage names the options
    assert not captured.out
