"""OrderService over real gRPC, with tokens the real user service signs: each customer
reads their own orders (paged, newest first), another's is NOT_FOUND, the admin moves
an order along its lifecycle (history, trace id, an event on NATS), every refusal and
bad input has its code; on SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
import pytest
from opentelemetry import trace

from reference_services.cart import service as cart
from reference_services.checkout import service as checkout
from reference_services.checkout.orders import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Forbidden,
    OrderStore,
    PlacedOrder,
)
from reference_services.common.auth import bearer
from reference_services.common.database import Database, Postgres, SQLite
from reference_services.common.events import Broker, Stream
from reference_services.common.rpc import quote
from reference_services.common.runtime import GrpcService
from reference_services.currency import service as currency
from reference_services.payment import service as payment
from reference_services.productcatalog import service as productcatalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import order_pb2 as opb
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.shipping import service as shipping
from reference_services.user import service as user
from tests.boutique.conftest import Telemetry, rpc_error, serving, stub_for, unique
from tests.boutique.test_checkout import ADDRESS, order_request
from tests.boutique.test_events import stream_messages

PASSWORD = "correct horse battery"
ADMIN_EMAIL = "admin@example.com"
DEADLINE = 10.0


@dataclass
class Account:
    user_id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        return bearer(self.token)


@dataclass
class Shop:
    """The services a checkout needs, a user service, and the checkout serving OrderService."""

    services: dict[str, GrpcService]
    broker: Broker

    async def account(self, email: str) -> Account:
        """Register ``email`` and log in, through the user service."""
        async with stub_for(self.services["user"], upb_grpc.UserServiceStub) as users:
            made = await users.Register(
                upb.RegisterRequest(email=email, name="N", password=PASSWORD)
            )
            token = await users.Authenticate(
                upb.AuthenticateRequest(email=email, password=PASSWORD)
            )
        return Account(made.id, token.token)

    async def place(self, owner: str, lines: dict[str, int]) -> pb.OrderResult:
        """Fill ``owner``'s cart and place its order, as the web shop does."""
        async with stub_for(self.services["cart"], pb_grpc.CartServiceStub) as carts:
            for product_id, quantity in lines.items():
                item = pb.CartItem(product_id=product_id, quantity=quantity)
                await carts.AddItem(pb.AddItemRequest(user_id=owner, item=item))
        async with stub_for(self.services["checkout"], pb_grpc.CheckoutServiceStub) as stub:
            return (await stub.PlaceOrder(order_request(owner))).order

    @asynccontextmanager
    async def orders(self) -> AsyncIterator[opb_grpc.OrderServiceAsyncStub]:
        async with stub_for(self.services["checkout"], opb_grpc.OrderServiceStub) as stub:
            yield stub


@asynccontextmanager
async def own_database(postgres_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own (its outbox shared with no other test)."""
    name = unique("orders")
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, nats_url: str
) -> AsyncIterator[Shop]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            store_url = f"sqlite:///{tmp_path / 'orders.db'}"
        else:
            store_url = await stack.enter_async_context(
                own_database(request.getfixturevalue("postgres_url"))
            )
        services: dict[str, GrpcService] = {}

        async def start(name: str, wiring: Any) -> GrpcService:
            services[name] = await stack.enter_async_context(serving(name, wiring))
            return services[name]

        stream = unique("ORDERS").upper()
        catalog = await start("productcatalog", await productcatalog.build(productcatalog.Config()))
        await start("currency", await currency.build())
        await start(
            "cart",
            await cart.build(cart.Config(f"sqlite:///{tmp_path / 'cart.db'}", catalog.address)),
        )
        shipments = shipping.Config(f"sqlite:///{tmp_path / 'shipping.db'}", nats_url, stream)
        await start("shipping", await shipping.build(shipments))
        ledger = payment.Config(f"sqlite:///{tmp_path / 'payment.db'}", nats_url, stream)
        await start("payment", await payment.build(ledger))
        accounts = user.Config(
            f"sqlite:///{tmp_path / 'user.db'}", tmp_path / "keys", frozenset({ADMIN_EMAIL})
        )
        await start("user", await user.build(accounts))
        broker = Broker(nats_url, Stream(stream))

        async def forget_stream() -> None:
            await broker.stream.delete(await broker.jetstream())
            await broker.close()

        stack.push_async_callback(forget_stream)
        config = checkout.Config(
            cart_addr=services["cart"].address,
            catalog_addr=catalog.address,
            currency_addr=services["currency"].address,
            shipping_addr=services["shipping"].address,
            payment_addr=services["payment"].address,
            order_store=store_url,
            nats_url=nats_url,
            stream=broker.stream.name,
            user_addr=services["user"].address,
        )
        await start("checkout", await checkout.build(config))
        yield Shop(services, broker)


def rfc3339_ns(at: str) -> int:
    return int(dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1e9)


async def test_customers_read_their_own_orders_newest_first_a_page_at_a_time(
    shop: Shop,
) -> None:
    ana = await shop.account(f"{unique('ana')}@example.com")
    bea = await shop.account(f"{unique('bea')}@example.com")
    placed = [await shop.place(ana.user_id, {"OLJCESPC7Z": n}) for n in (1, 2, 3)]
    theirs = await shop.place(bea.user_id, {"6E92ZMYYFZ": 1})
    async with shop.orders() as orders:
        first = await orders.ListOrders(opb.ListOrdersRequest(page_size=2), metadata=ana.auth)
        assert [o.id for o in first.orders] == [placed[2].order_id, placed[1].order_id]
        assert first.next_page_token
        rest = await orders.ListOrders(
            opb.ListOrdersRequest(page_size=2, page_token=first.next_page_token),
            metadata=ana.auth,
        )
        assert [o.id for o in rest.orders] == [placed[0].order_id]
        assert rest.next_page_token == ""
        everything = await orders.ListOrders(opb.ListOrdersRequest(), metadata=ana.auth)
        assert len(everything.orders) == 3  # the default page holds them all

        order = await orders.GetOrder(
            opb.GetOrderRequest(order_id=placed[1].order_id), metadata=ana.auth
        )
        result = placed[1]
        assert order == everything.orders[1]
        assert (order.user_id, order.email) == (ana.user_id, "someone@example.com")
        assert [(i.product_id, i.quantity, i.unit_cost) for i in order.items] == [
            ("OLJCESPC7Z", 2, result.items[0].cost)
        ]
        assert order.shipping_cost == result.shipping_cost
        assert order.currency == order.total.currency_code == "EUR"
        unit, ship = result.items[0].cost, result.shipping_cost
        total_nanos = 2 * (unit.units * 10**9 + unit.nanos) + ship.units * 10**9 + ship.nanos
        assert order.total.units * 10**9 + order.total.nanos == total_nanos
        assert order.shipping_address == ADDRESS
        assert order.tracking_id == result.shipping_tracking_id
        assert order.status == ev.ORDER_STATUS_SHIPPED
        # the checkout saga's moves: created, charged, labelled
        assert [(c.from_status, c.to_status, c.reason) for c in order.history] == [
            (ev.ORDER_STATUS_UNSPECIFIED, ev.ORDER_STATUS_PENDING, "checkout started"),
            (ev.ORDER_STATUS_PENDING, ev.ORDER_STATUS_PAID, "payment charged"),
            (ev.ORDER_STATUS_PAID, ev.ORDER_STATUS_SHIPPED, "placed"),
        ]
        entry = order.history[0]
        assert entry.at == order.placed_at
        assert abs(rfc3339_ns(entry.at) - time.time_ns()) < 60 * 10**9

        # another's order is not found, exactly like one that does not exist
        for missing in (theirs.order_id, "no-such-order"):
            error = await rpc_error(
                orders.GetOrder(opb.GetOrderRequest(order_id=missing), metadata=ana.auth)
            )
            assert error.code() is grpc.StatusCode.NOT_FOUND
            assert error.details() == f"no order with id {quote(missing)}"
        mine = await orders.ListOrders(opb.ListOrdersRequest(), metadata=bea.auth)
        assert [o.id for o in mine.orders] == [theirs.order_id]


async def test_the_admin_moves_an_order_along_its_lifecycle_with_history_and_events(
    shop: Shop, otel: Telemetry
) -> None:
    ana = await shop.account(f"{unique('ana')}@example.com")
    admin = await shop.account(ADMIN_EMAIL)
    placed = await shop.place(ana.user_id, {"OLJCESPC7Z": 1})
    async with shop.orders() as orders:
        with trace.get_tracer("tests").start_as_current_span("admin moves") as span:
            moved = await orders.UpdateOrderStatus(
                opb.UpdateOrderStatusRequest(
                    order_id=placed.order_id, status=ev.ORDER_STATUS_IN_TRANSIT, reason="picked up"
                ),
                metadata=admin.auth,
            )
        trace_id = format(span.get_span_context().trace_id, "032x")
        assert moved.status == ev.ORDER_STATUS_IN_TRANSIT
        *_, placed_entry, change = moved.history
        assert (change.from_status, change.to_status, change.reason) == (
            ev.ORDER_STATUS_SHIPPED,
            ev.ORDER_STATUS_IN_TRANSIT,
            "picked up",
        )
        assert change.trace_id == trace_id  # the trace of the call that made the change
        assert re.fullmatch(r"[0-9a-f]{32}", placed_entry.trace_id)  # PlaceOrder's trace
        assert placed_entry.trace_id != trace_id

        # the owner sees the change; the admin reads anyone's order
        seen = await orders.GetOrder(
            opb.GetOrderRequest(order_id=placed.order_id), metadata=ana.auth
        )
        assert seen == moved
        assert moved == await orders.GetOrder(
            opb.GetOrderRequest(order_id=placed.order_id), metadata=admin.auth
        )

        # a move the lifecycle forbids changes nothing
        error = await rpc_error(
            orders.UpdateOrderStatus(
                opb.UpdateOrderStatusRequest(order_id=placed.order_id, status=ev.ORDER_STATUS_PAID),
                metadata=admin.auth,
            )
        )
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert ": it is IN_TRANSIT and cannot become PAID (allowed: DELIVERED)" in (
            error.details() or ""
        )
        assert seen == await orders.GetOrder(
            opb.GetOrderRequest(order_id=placed.order_id), metadata=ana.auth
        )
        done = await orders.UpdateOrderStatus(
            opb.UpdateOrderStatusRequest(
                order_id=placed.order_id, status=ev.ORDER_STATUS_DELIVERED
            ),
            metadata=admin.auth,
        )
        assert [c.to_status for c in done.history] == [
            ev.ORDER_STATUS_PENDING,
            ev.ORDER_STATUS_PAID,
            ev.ORDER_STATUS_SHIPPED,
            ev.ORDER_STATUS_IN_TRANSIT,
            ev.ORDER_STATUS_DELIVERED,
        ]

    deadline = time.monotonic() + DEADLINE
    while len(messages := await stream_messages(shop.broker, "order.status_changed")) < 4:
        assert time.monotonic() < deadline, "the status_changed events were not published"
        await asyncio.sleep(0.05)
    events = [ev.OrderStatusChanged.FromString(m.data) for m in messages]
    assert [(e.order_id, e.from_status, e.to_status, e.reason) for e in events] == [
        (placed.order_id, ev.ORDER_STATUS_PENDING, ev.ORDER_STATUS_PAID, "payment charged"),
        (placed.order_id, ev.ORDER_STATUS_PAID, ev.ORDER_STATUS_SHIPPED, "placed"),
        (placed.order_id, ev.ORDER_STATUS_SHIPPED, ev.ORDER_STATUS_IN_TRANSIT, "picked up"),
        (placed.order_id, ev.ORDER_STATUS_IN_TRANSIT, ev.ORDER_STATUS_DELIVERED, ""),
    ]
    assert trace_id in (messages[2].headers or {})["traceparent"]


async def test_refusals_and_bad_inputs_have_their_codes_and_change_nothing(
    shop: Shop,
) -> None:
    ana = await shop.account(f"{unique('ana')}@example.com")
    admin = await shop.account(ADMIN_EMAIL)
    placed = await shop.place(ana.user_id, {"OLJCESPC7Z": 1})
    order_id = placed.order_id
    get = opb.GetOrderRequest(order_id=order_id)
    move = opb.UpdateOrderStatusRequest(order_id=order_id, status=ev.ORDER_STATUS_IN_TRANSIT)
    async with shop.orders() as orders:
        before = await orders.GetOrder(get, metadata=ana.auth)
        for call in (
            orders.GetOrder(get),
            orders.ListOrders(opb.ListOrdersRequest()),
            orders.UpdateOrderStatus(move),
            orders.GetOrder(get, metadata=bearer("not-a-jwt")),
        ):
            assert (await rpc_error(call)).code() is grpc.StatusCode.UNAUTHENTICATED
        denied = await rpc_error(orders.UpdateOrderStatus(move, metadata=ana.auth))
        assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
        assert denied.details() == "only the role 'admin' may call this"

        long_id = "x" * 5000
        bad: list[tuple[Any, str]] = [
            (
                orders.GetOrder(opb.GetOrderRequest(), metadata=ana.auth),
                "order_id must not be empty",
            ),
            (
                orders.GetOrder(opb.GetOrderRequest(order_id=long_id), metadata=ana.auth),
                "order_id is 5000 characters long, more than 128",
            ),
            (
                orders.GetOrder(opb.GetOrderRequest(order_id="a b"), metadata=ana.auth),
                "order_id 'a b' may hold only visible ASCII characters, no spaces",
            ),
            (
                orders.ListOrders(opb.ListOrdersRequest(page_size=-1), metadata=ana.auth),
                "page_size -1 is outside 0..100",
            ),
            (
                orders.ListOrders(opb.ListOrdersRequest(page_size=101), metadata=ana.auth),
                "page_size 101 is outside 0..100",
            ),
            (
                orders.ListOrders(opb.ListOrdersRequest(page_token="garbage!"), metadata=ana.auth),
                "page_token 'garbage!' is not a token this service gave",
            ),
            (
                orders.ListOrders(
                    opb.ListOrdersRequest(page_token="bm9jb2xvbg"), metadata=ana.auth
                ),
                "page_token 'bm9jb2xvbg' is not a token this service gave",
            ),
            (
                orders.ListOrders(opb.ListOrdersRequest(page_token="A" * 300), metadata=ana.auth),
                "page_token is 300 characters long, more than 256",
            ),
            (
                orders.UpdateOrderStatus(
                    opb.UpdateOrderStatusRequest(order_id=order_id), metadata=admin.auth
                ),
                "status 0 is not an order status",
            ),
            (
                orders.UpdateOrderStatus(
                    opb.UpdateOrderStatusRequest(order_id=order_id, status=99),  # type: ignore[arg-type]
                    metadata=admin.auth,
                ),
                "status 99 is not an order status",
            ),
            (
                orders.UpdateOrderStatus(
                    opb.UpdateOrderStatusRequest(
                        order_id=order_id, status=ev.ORDER_STATUS_IN_TRANSIT, reason="r" * 257
                    ),
                    metadata=admin.auth,
                ),
                "reason is 257 characters long, more than 256",
            ),
        ]
        for call, message in bad:
            error = await rpc_error(call)
            assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
        unknown = opb.UpdateOrderStatusRequest(order_id="nope", status=ev.ORDER_STATUS_PAID)
        error = await rpc_error(orders.UpdateOrderStatus(unknown, metadata=admin.auth))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert before == await orders.GetOrder(get, metadata=ana.auth)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database: Database
    if request.param == "sqlite":
        database = SQLite(tmp_path / "orders.db")
    else:
        database = Postgres(request.getfixturevalue("postgres_url"))
    yield database
    await database.close()


async def test_the_first_boutique_s_orders_are_migrated_with_their_status(db: Database) -> None:
    prefix = unique("m") + "_"
    store = OrderStore(db, prefix)
    # the table the first boutique wrote, with one order in it
    await db.execute(MIGRATIONS[1][0].format(o=store.table))
    result = pb.OrderResult(order_id="old-1", shipping_tracking_id="AB-12345-123456789")
    await db.execute(
        f"INSERT INTO {store.table} (order_id, user_id, email, currency_code, total_units,"
        " total_nanos, transaction_id, result_json, placed_at_ns)"
        " VALUES ('old-1', 'session-1', 'a@example.com', 'USD', 12, 0, 'tx', %s, 1000000000)",
        ('{"orderId": "old-1", "shippingTrackingId": "AB-12345-123456789"}',),
    )
    try:
        assert await store.migrate() == 0
        assert await OrderStore(db, prefix).migrate() == SCHEMA_VERSION  # nothing done
        old = await store.get("old-1")
        assert old is not None and old.result == result
        assert old.status == "SHIPPED"
        assert [(c.from_status, c.to_status, c.at_ns, c.reason) for c in old.history] == [
            ("UNSPECIFIED", "SHIPPED", 1_000_000_000, "placed")
        ]
        page, following = await store.page("session-1", 10)
        assert [o.order_id for o in page] == ["old-1"] and following is None
    finally:
        await store.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_connections(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Database, Database]]:
    """Two connections to one database, as two checkout replicas have."""
    pair: tuple[Database, Database]
    if request.param == "sqlite":
        pair = (SQLite(tmp_path / "orders.db"), SQLite(tmp_path / "orders.db"))
    else:
        url = request.getfixturevalue("postgres_url")
        pair = (Postgres(url), Postgres(url))
    yield pair
    for database in pair:
        await database.close()


async def test_two_replicas_moving_one_order_at_once_make_one_move(
    two_connections: tuple[Database, Database],
) -> None:
    prefix = unique("r") + "_"
    one, other = (OrderStore(db, prefix) for db in two_connections)
    total = pb.Money(currency_code="EUR", units=10)
    try:
        for n in range(5):
            order_id = f"o-{n}"
            await one.record(
                pb.OrderResult(order_id=order_id),
                user_id="u",
                email="u@example.com",
                total=total,
                transaction_id="tx",
            )
            outcomes = await asyncio.gather(
                one.transition(order_id, "IN_TRANSIT", "picked up", ""),
                other.transition(order_id, "CANCELLED", "changed my mind", ""),
                return_exceptions=True,
            )
            moved = [o for o in outcomes if isinstance(o, PlacedOrder)]
            refused = [o for o in outcomes if isinstance(o, Forbidden)]
            assert len(moved) == 1 and len(refused) == 1, outcomes
            final = await other.get(order_id)
            assert final is not None and final == moved[0]
            assert [c.to_status for c in final.history] == ["SHIPPED", final.status]
    finally:
        for table in (one.table, one.history_table, one.schema_table):
            await one.db.execute(f"DROP TABLE IF EXISTS {table}")
