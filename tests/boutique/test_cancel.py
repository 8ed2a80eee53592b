"""OrderService.CancelOrder over real gRPC with real tokens, the ledger, the inventory and
the courier running on their stores and a real NATS: a customer cancels before the
pickup (voided, CANCELLED with the reason, refunded, restocked, the status_changed
event sent, all in the cancel's trace); after it, FAILED_PRECONDITION and the parcel
goes on to DELIVERED, moved by the courier's events; another's order is NOT_FOUND."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from reference_services.cart import service as cart
from reference_services.checkout import service as checkout
from reference_services.common.events import Broker, Stream
from reference_services.common.runtime import GrpcService
from reference_services.currency import service as currency
from reference_services.payment import service as payment
from reference_services.productcatalog import service as productcatalog
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import ledger_pb2 as lpb
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc
from reference_services.protos.boutique.v1 import order_pb2 as opb
from reference_services.protos.boutique.v1 import shipment_pb2 as spb
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc
from reference_services.shipping import service as shipping
from reference_services.user import service as user
from tests.boutique.conftest import Telemetry, rpc_error, serving, stub_for, unique
from tests.boutique.test_events import stream_messages
from tests.boutique.test_orders import ADMIN_EMAIL, Shop

T = TypeVar("T")
PICKUP_DELAY = 2.0
"""Seconds from the label to the courier's pickup in these tests (30 by default)."""
MUG = "6E92ZMYYFZ"


@pytest.fixture
async def shop(tmp_path: Path, nats_url: str) -> AsyncIterator[Shop]:
    """The services a cancel needs, in this process, on SQLite stores and one stream."""
    stream = unique("CANCEL").upper()
    async with AsyncExitStack() as stack:
        services: dict[str, GrpcService] = {}

        async def start(name: str, wiring: Any) -> GrpcService:
            services[name] = await stack.enter_async_context(serving(name, wiring))
            return services[name]

        def db(name: str) -> str:
            return f"sqlite:///{tmp_path / name}"

        catalog = await start(
            "productcatalog",
            await productcatalog.build(
                productcatalog.Config(
                    database_url=db("inventory.db"), nats_url=nats_url, stream=stream
                )
            ),
        )
        await start("currency", await currency.build())
        await start("cart", await cart.build(cart.Config(db("cart.db"), catalog.address)))
        courier = shipping.Config(
            db("shipping.db"), nats_url, stream, pickup_delay=PICKUP_DELAY, delivery_delay=0.3
        )
        await start("shipping", await shipping.build(courier))
        await start(
            "payment", await payment.build(payment.Config(db("payment.db"), nats_url, stream))
        )
        accounts = user.Config(db("user.db"), tmp_path / "keys", frozenset({ADMIN_EMAIL}))
        await start("user", await user.build(accounts))
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
        await start("checkout", await checkout.build(config))
        broker = Broker(nats_url, Stream(stream))

        async def forget_stream() -> None:
            await broker.stream.delete(await broker.jetstream())
            await broker.close()

        stack.push_async_callback(forget_stream)
        yield Shop(services, broker)


async def eventually(read: Callable[[], Awaitable[T]], holds: Callable[[T], bool]) -> T:
    deadline = time.monotonic() + 15
    while not holds(value := await read()):
        assert time.monotonic() < deadline, f"still {value}"
        await asyncio.sleep(0.05)
    return value


async def test_a_customer_cancels_before_the_pickup_refunded_restocked_voided(
    shop: Shop, otel: Telemetry
) -> None:
    ana = await shop.account(f"{unique('ana')}@example.com")
    bea = await shop.account(f"{unique('bea')}@example.com")
    async with stub_for(shop.services["productcatalog"], ipb_grpc.InventoryServiceStub) as stock:
        before = (await stock.GetStock(ipb.GetStockRequest(product_ids=[MUG]))).levels[0]
        placed = await shop.place(ana.user_id, {MUG: 2})
        held = (await stock.GetStock(ipb.GetStockRequest(product_ids=[MUG]))).levels[0]
        assert held.on_hand == before.on_hand - 2
        request = opb.CancelOrderRequest(order_id=placed.order_id, reason="changed my mind")
        async with shop.orders() as orders:
            # another customer's order is not theirs to cancel: as if it did not exist
            error = await rpc_error(orders.CancelOrder(request, metadata=bea.auth))
            assert error.code() is grpc.StatusCode.NOT_FOUND
            cancelled = await orders.CancelOrder(request, metadata=ana.auth)
            assert cancelled.status == ev.ORDER_STATUS_CANCELLED
            last = cancelled.history[-1]
            assert (last.from_status, last.to_status, last.reason) == (
                ev.ORDER_STATUS_SHIPPED,
                ev.ORDER_STATUS_CANCELLED,
                "changed my mind",
            )
            # cancelling again answers it unchanged
            again = await orders.CancelOrder(request, metadata=ana.auth)
            assert again == cancelled
        after = (await stock.GetStock(ipb.GetStockRequest(product_ids=[MUG]))).levels[0]
        assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)
    async with stub_for(shop.services["payment"], lpb_grpc.PaymentLedgerStub) as ledger:
        paid = await ledger.GetPayment(lpb.GetPaymentRequest(order_id=placed.order_id))
    assert paid.status == lpb.PAYMENT_STATUS_REFUNDED
    assert paid.refund_reason == "changed my mind"
    async with stub_for(shop.services["shipping"], spb_grpc.ShipmentServiceStub) as shipments:
        parcel = await shipments.GetOrderShipment(
            spb.GetOrderShipmentRequest(order_id=placed.order_id)
        )
    assert parcel.status == spb.SHIPMENT_STATUS_VOIDED

    # the status_changed event, which the notification service turns into an e-mail
    async def cancellations() -> list[ev.OrderStatusChanged]:
        found = [
            ev.OrderStatusChanged.FromString(m.data)
            for m in await stream_messages(shop.broker, "order.status_changed")
        ]
        return [e for e in found if e.to_status == ev.ORDER_STATUS_CANCELLED]

    (event,) = await eventually(cancellations, bool)
    assert (event.order_id, event.reason) == (placed.order_id, "changed my mind")

    # every step of the cancel is a span of the cancel's trace
    spans = otel.finished()
    (cancel,) = [s for s in spans if s.name == "saga cancel"]
    trace_id = cancel.context.trace_id  # type: ignore[union-attr]
    assert format(trace_id, "032x") == last.trace_id
    in_trace = {s.name for s in spans if s.context.trace_id == trace_id}  # type: ignore[union-attr]
    assert {"saga void", "saga refund", "saga release"} <= in_trace

    # the voided parcel is never picked up
    await asyncio.sleep(PICKUP_DELAY + 0.5)
    async with shop.orders() as orders:
        still = await orders.GetOrder(
            opb.GetOrderRequest(order_id=placed.order_id), metadata=ana.auth
        )
    assert still.status == ev.ORDER_STATUS_CANCELLED


async def test_after_the_pickup_it_is_too_late_and_the_parcel_is_delivered(shop: Shop) -> None:
    ana = await shop.account(f"{unique('ana')}@example.com")
    placed = await shop.place(ana.user_id, {MUG: 1})
    get = opb.GetOrderRequest(order_id=placed.order_id)
    async with shop.orders() as orders:

        async def status() -> int:
            return int((await orders.GetOrder(get, metadata=ana.auth)).status)

        await eventually(status, lambda s: s == ev.ORDER_STATUS_IN_TRANSIT)
        request = opb.CancelOrderRequest(order_id=placed.order_id, reason="too slow")
        error = await rpc_error(orders.CancelOrder(request, metadata=ana.auth))
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot be cancelled" in (error.details() or "")
        await eventually(status, lambda s: s == ev.ORDER_STATUS_DELIVERED)
        order = await orders.GetOrder(get, metadata=ana.auth)
    assert [(c.to_status, c.reason) for c in order.history[-2:]] == [
        (ev.ORDER_STATUS_IN_TRANSIT, "picked up by the courier"),
        (ev.ORDER_STATUS_DELIVERED, "delivered"),
    ]
    async with stub_for(shop.services["payment"], lpb_grpc.PaymentLedgerStub) as ledger:
        paid = await ledger.GetPayment(lpb.GetPaymentRequest(order_id=placed.order_id))
    assert paid.status == lpb.PAYMENT_STATUS_CHARGED  # nothing refunded


async def test_bad_cancels_have_their_codes_and_change_nothing(shop: Shop) -> None:
    ana = await shop.account(f"{unique('ana')}@example.com")
    placed = await shop.place(ana.user_id, {MUG: 1})
    async with shop.orders() as orders:
        cases = {
            "": (grpc.StatusCode.INVALID_ARGUMENT, "order_id must not be empty"),
            "x" * 200: (grpc.StatusCode.INVALID_ARGUMENT, "order_id is 200 characters long"),
            "no-such-order": (grpc.StatusCode.NOT_FOUND, "no order with id 'no-such-order'"),
        }
        for order_id, (code, message) in cases.items():
            request = opb.CancelOrderRequest(order_id=order_id)
            error = await rpc_error(orders.CancelOrder(request, metadata=ana.auth))
            assert (error.code(), message in (error.details() or "")) == (code, True), order_id
        long_reason = opb.CancelOrderRequest(order_id=placed.order_id, reason="r" * 257)
        error = await rpc_error(orders.CancelOrder(long_reason, metadata=ana.auth))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "reason is 257 characters long" in (error.details() or "")
        no_token = opb.CancelOrderRequest(order_id=placed.order_id)
        error = await rpc_error(orders.CancelOrder(no_token))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        order = await orders.GetOrder(
            opb.GetOrderRequest(order_id=placed.order_id), metadata=ana.auth
        )
    assert order.status == ev.ORDER_STATUS_SHIPPED
