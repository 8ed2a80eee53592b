"""InventoryService in the productcatalog process: real gRPC calls, its store on SQLite and
PostgreSQL, LowStock on a real NATS server, the fault switch over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import nats.errors
import pytest
from nats.js import api

from clue.testing import capture_logs
from reference_services.common.auth import bearer
from reference_services.common.config import ConfigError
from reference_services.common.database import Postgres, SQLite
from reference_services.common.events import (
    ID_HEADER,
    INVENTORY_LOW_STOCK,
    ORDER_STATUS_CHANGED,
    TYPE_HEADER,
    VERSION_HEADER,
    Broker,
    Outbox,
    Stream,
)
from reference_services.common.rpc import quote
from reference_services.common.runtime import GrpcService
from reference_services.productcatalog import service as productcatalog
from reference_services.productcatalog.inventory import StockSettings
from reference_services.productcatalog.stock_store import (
    COMMITTED,
    EXPIRED,
    HELD,
    RELEASED,
    Ended,
    NoReservation,
    StockStore,
    Thresholds,
    TooLittle,
)
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from tests.boutique.conftest import Telemetry, rpc_error, serving, stub_for, unique
from tests.boutique.tokens import issuing

SUNGLASSES = "OLJCESPC7Z"
MUG = "6E92ZMYYFZ"
LOAF = "L9ECAV7KIM"
HELD_STATE = ipb.RESERVATION_STATE_HELD
Code = grpc.StatusCode


def new_order() -> str:
    return str(uuid.uuid4())


def lines(**quantities: int) -> list[ipb.ReservationLine]:
    names = {"sunglasses": SUNGLASSES, "mug": MUG, "loaf": LOAF}
    return [ipb.ReservationLine(product_id=names[k], quantity=q) for k, q in quantities.items()]


@dataclass
class Running:
    """A productcatalog service serving InventoryService, a stub and its admin port."""

    service: GrpcService
    stub: ipb_grpc.InventoryServiceAsyncStub
    admin: httpx.AsyncClient

    async def level(self, product_id: str) -> ipb.StockLevel:
        reply = await self.stub.GetStock(ipb.GetStockRequest(product_ids=[product_id]))
        return reply.levels[0]

    async def reserve(self, order_id: str, **quantities: int) -> ipb.Reservation:
        request = ipb.ReserveRequest(order_id=order_id, items=lines(**quantities))
        return await self.stub.Reserve(request)


@asynccontextmanager
async def running(
    tmp_path: Path,
    stock: StockSettings,
    *,
    nats_url: str | None = None,
    stream: str = "BOUTIQUE",
    user_addr: str | None = None,
) -> AsyncIterator[Running]:
    config = productcatalog.Config(
        database_url=f"sqlite:///{tmp_path / 'inventory.db'}",
        nats_url=nats_url,
        stream=stream,
        user_addr=user_addr,
        stock=stock,
    )
    async with (
        serving("productcatalog", await productcatalog.build(config)) as service,
        stub_for(service, ipb_grpc.InventoryServiceStub) as stub,
        httpx.AsyncClient(base_url=service.admin.url) as admin,
    ):
        yield Running(service, cast("ipb_grpc.InventoryServiceAsyncStub", stub), admin)


NO_SUPPLIER = StockSettings(initial=50, ttl_s=60.0, low=10, restock_s=0.0)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(tmp_path, NO_SUPPLIER) as inventory:
        yield inventory


async def test_reserve_commit_and_release_an_order(shop: Running) -> None:
    level = await shop.level(SUNGLASSES)
    assert (level.available, level.low_stock) == (50, NO_SUPPLIER.low)
    order = new_order()
    held = await shop.reserve(order, sunglasses=3, mug=2)
    assert held.state == HELD_STATE and held.order_id == order
    assert {(i.product_id, i.quantity) for i in held.items} == {(SUNGLASSES, 3), (MUG, 2)}
    assert held.expires_at.endswith("Z")
    level = await shop.level(SUNGLASSES)
    assert (level.on_hand, level.reserved, level.available) == (50, 3, 47)
    # the same order again answers its reservation, whatever it asks for
    assert await shop.reserve(order, loaf=1) == held
    assert (await shop.level(LOAF)).reserved == 0

    committed = await shop.stub.Commit(ipb.CommitRequest(order_id=order))
    assert committed.state == ipb.RESERVATION_STATE_COMMITTED and committed.expires_at == ""
    assert await shop.stub.Commit(ipb.CommitRequest(order_id=order)) == committed
    level = await shop.level(SUNGLASSES)
    assert (level.on_hand, level.reserved, level.available) == (47, 0, 47)

    # a cancelled order: releasing its committed reservation restocks it, once
    released = await shop.stub.Release(ipb.ReleaseRequest(order_id=order))
    assert released.state == ipb.RESERVATION_STATE_RELEASED
    assert await shop.stub.Release(ipb.ReleaseRequest(order_id=order)) == released
    assert (await shop.level(SUNGLASSES)).on_hand == 50
    assert (await shop.level(MUG)).on_hand == 50

    error = await rpc_error(shop.stub.Commit(ipb.CommitRequest(order_id=order)))
    assert error.code() is Code.FAILED_PRECONDITION
    assert error.details() == f"the reservation of order {quote(order)} was released"
    error = await rpc_error(shop.reserve(order, mug=1))
    assert error.code() is Code.FAILED_PRECONDITION

    # releasing an order never reserved is no error, and a Reserve arriving late holds nothing
    late = new_order()
    assert (await shop.stub.Release(ipb.ReleaseRequest(order_id=late))).items == []
    assert (await rpc_error(shop.reserve(late, mug=1))).code() is Code.FAILED_PRECONDITION
    assert (await shop.level(MUG)).reserved == 0

    unknown = new_order()
    error = await rpc_error(shop.stub.Commit(ipb.CommitRequest(order_id=unknown)))
    assert error.code() is Code.NOT_FOUND
    assert error.details() == f"no reservation for order {quote(unknown)}"


async def test_too_little_stock_fails_naming_the_product_and_holds_nothing(
    otel: Telemetry, shop: Running
) -> None:
    error = await rpc_error(shop.reserve(new_order(), sunglasses=2, mug=51))
    assert error.code() is Code.FAILED_PRECONDITION
    assert error.details() == f"product {MUG!r} has 50 available, 51 wanted"
    assert (await shop.level(SUNGLASSES)).reserved == 0  # all or nothing
    await shop.reserve(new_order(), mug=50)
    error = await rpc_error(shop.reserve(new_order(), mug=1))
    assert error.details() == f"product {MUG!r} has 0 available, 1 wanted"
    counted = {a["outcome"]: p.value for a, p in otel.points("boutique.inventory.reservations")}
    assert counted == {"insufficient": 2, "held": 1}


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    shop: Running,
) -> None:
    before = await shop.stub.GetStock(ipb.GetStockRequest())
    assert [level.available for level in before.levels] == [50] * 9
    good = new_order()
    long_id = "x" * 5000
    cases: list[tuple[Any, Code, str]] = [
        (
            shop.stub.Reserve(ipb.ReserveRequest(order_id="", items=lines(mug=1))),
            Code.INVALID_ARGUMENT,
            "order_id must not be empty",
        ),
        (
            shop.stub.Reserve(ipb.ReserveRequest(order_id="order-1", items=lines(mug=1))),
            Code.INVALID_ARGUMENT,
            "order_id 'order-1' is not a UUID",
        ),
        (
            shop.stub.Reserve(ipb.ReserveRequest(order_id=long_id, items=lines(mug=1))),
            Code.INVALID_ARGUMENT,
            "order_id is 5000 characters long, more than 128",
        ),
        (
            shop.stub.Reserve(ipb.ReserveRequest(order_id=good)),
            Code.INVALID_ARGUMENT,
            "items must not be empty",
        ),
        (
            shop.stub.Reserve(ipb.ReserveRequest(order_id=good, items=lines(mug=1, loaf=0))),
            Code.INVALID_ARGUMENT,
            "items[1].quantity 0 is outside 1..1000",
        ),
        (
            shop.stub.Reserve(ipb.ReserveRequest(order_id=good, items=lines(mug=1001))),
            Code.INVALID_ARGUMENT,
            "items[0].quantity 1001 is outside 1..1000",
        ),
        (
            shop.stub.Reserve(
                ipb.ReserveRequest(
                    order_id=good,
                    items=[ipb.ReservationLine(product_id=MUG, quantity=1)] * 101,
                )
            ),
            Code.INVALID_ARGUMENT,
            "items holds 101 entries, more than 100",
        ),
        (
            shop.stub.Reserve(
                ipb.ReserveRequest(
                    order_id=good, items=[ipb.ReservationLine(product_id="NOPE" * 20, quantity=1)]
                )
            ),
            Code.INVALID_ARGUMENT,
            "items[0].product_id is 80 characters long, more than 64",
        ),
        (
            shop.stub.Reserve(
                ipb.ReserveRequest(
                    order_id=good, items=[ipb.ReservationLine(product_id="NOPE", quantity=1)]
                )
            ),
            Code.NOT_FOUND,
            "no product with id 'NOPE'",
        ),
        (
            shop.stub.GetStock(ipb.GetStockRequest(product_ids=[MUG, "a b"])),
            Code.INVALID_ARGUMENT,
            "product_ids[1] 'a b' may hold only visible ASCII characters, no spaces",
        ),
        (
            shop.stub.GetStock(ipb.GetStockRequest(product_ids=[MUG] * 101)),
            Code.INVALID_ARGUMENT,
            "product_ids holds 101 entries, more than 100",
        ),
        (
            shop.stub.Commit(ipb.CommitRequest(order_id=long_id[:100])),
            Code.INVALID_ARGUMENT,
            f"order_id {'x' * 32!r}... (100 characters) is not a UUID",
        ),
        (
            shop.stub.Release(ipb.ReleaseRequest(order_id="")),
            Code.INVALID_ARGUMENT,
            "order_id must not be empty",
        ),
    ]
    for call, code, message in cases:
        error = await rpc_error(call)
        assert (error.code(), error.details()) == (code, message)
    assert await shop.stub.GetStock(ipb.GetStockRequest()) == before
    # the good order id was never reserved: Commit finds nothing
    error = await rpc_error(shop.stub.Commit(ipb.CommitRequest(order_id=good)))
    assert error.code() is Code.NOT_FOUND


async def test_racing_orders_for_the_last_units_never_oversell(shop: Running) -> None:
    await shop.reserve(new_order(), loaf=43)  # 7 left
    results = await asyncio.gather(
        *(shop.reserve(new_order(), loaf=1) for _ in range(20)), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, ipb.Reservation)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 7 and len(lost) == 13
    assert {e.code() for e in lost} == {Code.FAILED_PRECONDITION}
    level = await shop.level(LOAF)
    assert (level.on_hand, level.reserved, level.available) == (50, 50, 0)
    # the same order racing itself is reserved once
    order = new_order()
    twice = await asyncio.gather(*(shop.reserve(order, mug=4) for _ in range(5)))
    assert len({r.SerializeToString() for r in twice}) == 1
    assert (await shop.level(MUG)).reserved == 4


async def test_a_reservation_never_committed_expires(tmp_path: Path) -> None:
    settings = StockSettings(initial=50, ttl_s=0.3, low=10, restock_s=0.0)
    async with running(tmp_path, settings) as inventory:
        order, kept = new_order(), new_order()
        await inventory.reserve(order, mug=30)
        await inventory.reserve(kept, mug=5)
        await inventory.stub.Commit(ipb.CommitRequest(order_id=kept))
        assert (await inventory.level(MUG)).available == 15
        await asyncio.sleep(0.35)
        level = await inventory.level(MUG)
        assert (level.on_hand, level.reserved, level.available) == (45, 0, 45)
        error = await rpc_error(inventory.reserve(order, mug=1))
        assert error.code() is Code.FAILED_PRECONDITION
        assert error.details() == f"the reservation of order {quote(order)} was expired"
        released = await inventory.stub.Release(ipb.ReleaseRequest(order_id=order))
        assert released.state == ipb.RESERVATION_STATE_RELEASED
        assert (await inventory.level(MUG)).on_hand == 45  # nothing was taken to give back
        error = await rpc_error(inventory.stub.Commit(ipb.CommitRequest(order_id=order)))
        assert error.code() is Code.FAILED_PRECONDITION  # released stays released
        assert error.details() == f"the reservation of order {quote(order)} was released"


async def test_an_expired_reservation_commits_while_its_stock_is_still_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, otel: Telemetry
) -> None:
    """A checkout down longer than the hold: Commit takes the stock again, all or nothing,
    and refuses (counted, logged) only an order whose stock is gone meanwhile."""
    monkeypatch.setenv("INVENTORY_RESERVATION_TTL_S", "0.2")
    monkeypatch.setenv("INVENTORY_INITIAL_STOCK", "50")
    monkeypatch.setenv("INVENTORY_RESTOCK_S", "0")
    async with running(tmp_path, StockSettings.from_env()) as inventory:
        late, oversold, exhausted = new_order(), new_order(), new_order()
        await inventory.reserve(late, mug=30)
        await inventory.reserve(oversold, sunglasses=2, loaf=10)
        await inventory.reserve(exhausted, sunglasses=1)
        await asyncio.sleep(0.25)  # all three expired (the sweeper may have marked them)
        assert (await inventory.level(MUG)).reserved == 0

        def commit(order: str) -> Any:
            return inventory.stub.Commit(ipb.CommitRequest(order_id=order))

        committed = await commit(late)
        assert committed.state == ipb.RESERVATION_STATE_COMMITTED
        level = await inventory.level(MUG)
        assert (level.on_hand, level.reserved, level.available) == (20, 0, 20)
        assert await commit(late) == committed  # idempotent, taken once

        # the loaf sold meanwhile to another order: nothing taken, the sunglasses neither
        await inventory.reserve(new_order(), loaf=45)
        with capture_logs() as logs:
            error = await rpc_error(commit(oversold))
        assert error.code() is Code.FAILED_PRECONDITION
        assert error.details() == (
            f"the reservation of order {quote(oversold)} expired and product"
            f" {LOAF!r} has 5 available, 10 wanted"
        )
        (entry,) = logs.where(level="error")
        assert (entry["order_id"], entry["product_id"]) == (oversold, LOAF)
        assert (await inventory.level(SUNGLASSES)).on_hand == 50
        level = await inventory.level(LOAF)
        assert (level.on_hand, level.reserved) == (50, 45)
        error = await rpc_error(inventory.reserve(oversold, loaf=1))
        assert error.details() == f"the reservation of order {quote(oversold)} was expired"

        # the fault switch's product has none available: refused the same way
        await inventory.admin.post("/faults", params={"stock_exhausted": SUNGLASSES})
        error = await rpc_error(commit(exhausted))
        assert error.code() is Code.FAILED_PRECONDITION and SUNGLASSES in error.details()
        await inventory.admin.post("/faults", params={"stock_exhausted": ""})
        assert (await commit(exhausted)).state == ipb.RESERVATION_STATE_COMMITTED
        assert (await inventory.level(SUNGLASSES)).on_hand == 49

        # a released reservation stays refused, stock or not
        await inventory.stub.Release(ipb.ReleaseRequest(order_id=late))
        assert (await inventory.level(MUG)).on_hand == 50
        error = await rpc_error(commit(late))
        assert error.details() == f"the reservation of order {quote(late)} was released"
    counted = [(a, p.value) for a, p in otel.points("boutique.inventory.oversold")]
    assert counted == [({"product_id": LOAF}, 1), ({"product_id": SUNGLASSES}, 1)]


async def test_expiry_does_not_wait_for_the_sweeper(tmp_path: Path) -> None:
    store = StockStore(SQLite(tmp_path / "stock.db"), Thresholds(low=10, initial=20))
    await store.migrate()
    await store.stock_new_products([MUG])
    try:
        order = new_order()
        await store.reserve(order, {MUG: 20}, ttl_ns=50_000_000)
        with pytest.raises(TooLittle):
            await store.reserve(new_order(), {MUG: 1}, ttl_ns=10**9)
        await asyncio.sleep(0.06)  # no sweeper runs: the expiry is read lazily
        assert (await store.levels([MUG]))[MUG].available == 20
        found = await store.reservation(order)
        assert found is not None and found.state == EXPIRED
        assert (await store.reserve(new_order(), {MUG: 20}, ttl_ns=10**9)).state == HELD
        assert await store.expire() == [order]
    finally:
        await store.close()


async def stream_events(broker: Broker) -> list[ev.LowStock]:
    """Every LowStock event in the broker's stream so far."""
    js = await broker.jetstream()
    if (await js.stream_info(broker.stream.name)).state.messages == 0:
        return []
    sub = await js.js.pull_subscribe(
        broker.stream.subject(INVENTORY_LOW_STOCK),
        stream=broker.stream.name,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE),
    )
    found: list[ev.LowStock] = []
    try:
        while True:
            found += [ev.LowStock.FromString(m.data) for m in await sub.fetch(100, timeout=0.3)]
    except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when none came
        pass
    await sub.unsubscribe()
    return found


async def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_low_stock_is_published_once_per_crossing(tmp_path: Path, nats_url: str) -> None:
    stream = Stream(unique("INV").upper())
    broker = Broker(nats_url, stream)
    settings = StockSettings(initial=12, ttl_s=60.0, low=10, restock_s=0.0)
    try:
        async with running(tmp_path, settings, nats_url=nats_url, stream=stream.name) as shop:
            first, second, third = new_order(), new_order(), new_order()
            await shop.reserve(first, mug=2)  # 10 left: not low yet
            await shop.reserve(second, mug=1)  # 9: low
            await shop.reserve(third, mug=1)  # 8: still low, no new event
            await shop.stub.Commit(ipb.CommitRequest(order_id=third))
            for order in (first, second):
                await shop.stub.Release(ipb.ReleaseRequest(order_id=order))  # 11: not low
            await shop.reserve(new_order(), mug=5)  # 6: low again

            async def two() -> bool:
                return len(await stream_events(broker)) >= 2

            await wait_for(two)
            events = await stream_events(broker)
            assert [(e.product_id, e.available) for e in events] == [(MUG, 9), (MUG, 6)]
            reply = await shop.admin.get("/healthz")
            assert reply.json()["status"] == {"inventory-store": "OK", "nats": "OK"}
    finally:
        await stream.delete(await broker.jetstream())
        await broker.close()


async def publish_status(broker: Broker, order_id: str, status: ev.OrderStatus) -> None:
    """Publish an OrderStatusChanged as the checkout's relay would."""
    js = await broker.jetstream()
    change = ev.OrderStatusChanged(
        order_id=order_id, from_status=ev.ORDER_STATUS_SHIPPED, to_status=status
    )
    headers = {ID_HEADER: str(uuid.uuid4()), TYPE_HEADER: "boutique.v1.OrderStatusChanged"}
    await js.publish(
        broker.stream.subject(ORDER_STATUS_CHANGED),
        change.SerializeToString(),
        stream=broker.stream.name,
        headers={**headers, VERSION_HEADER: "1"},
    )


async def test_cancelled_and_failed_orders_get_their_stock_back_from_events(
    tmp_path: Path, nats_url: str
) -> None:
    stream = Stream(unique("INV").upper())
    broker = Broker(nats_url, stream)
    try:
        async with running(tmp_path, NO_SUPPLIER, nats_url=nats_url, stream=stream.name) as shop:
            cancelled, failed, shipped = new_order(), new_order(), new_order()
            await shop.reserve(cancelled, mug=5)
            await shop.stub.Commit(ipb.CommitRequest(order_id=cancelled))
            await shop.reserve(failed, mug=7)
            await shop.reserve(shipped, mug=3)
            level = await shop.level(MUG)
            assert (level.on_hand, level.reserved) == (45, 10)
            await publish_status(broker, cancelled, ev.ORDER_STATUS_CANCELLED)
            await publish_status(broker, failed, ev.ORDER_STATUS_FAILED)
            await publish_status(broker, shipped, ev.ORDER_STATUS_IN_TRANSIT)
            await publish_status(broker, cancelled, ev.ORDER_STATUS_CANCELLED)  # again

            async def back() -> bool:
                level = await shop.level(MUG)
                return (level.on_hand, level.reserved) == (50, 3)

            await wait_for(back)
            await asyncio.sleep(0.3)  # the repeated cancellation restocks nothing more
            level = await shop.level(MUG)
            assert (level.on_hand, level.reserved) == (50, 3)
    finally:
        await stream.delete(await broker.jetstream())
        await broker.close()


async def test_the_supplier_restocks_a_product_low_for_a_while(
    otel: Telemetry, tmp_path: Path
) -> None:
    settings = StockSettings(initial=20, ttl_s=60.0, low=10, restock_s=0.2)
    async with running(tmp_path, settings) as shop:
        order = new_order()
        await shop.reserve(order, mug=15)
        await shop.stub.Commit(ipb.CommitRequest(order_id=order))
        assert (await shop.level(MUG)).on_hand == 5
        started = time.monotonic()

        async def restocked() -> bool:
            return (await shop.level(MUG)).on_hand == 20

        await wait_for(restocked)
        assert time.monotonic() - started >= 0.15
        assert (await shop.level(SUNGLASSES)).on_hand == 20  # never low: untouched
    restocks = otel.points("boutique.inventory.restocks")
    assert [(a, p.value) for a, p in restocks] == [({"product_id": MUG}, 1)]


async def test_stock_exhausted_switch_over_http(shop: Running) -> None:
    reply = await shop.admin.post("/faults", params={"stock_exhausted": MUG})
    assert reply.status_code == 200 and reply.json()["stock_exhausted"]["value"] == MUG
    level = await shop.level(MUG)
    assert (level.on_hand, level.available) == (50, 0)
    error = await rpc_error(shop.reserve(new_order(), sunglasses=1, mug=1))
    assert error.code() is Code.FAILED_PRECONDITION
    assert error.details() == f"product {MUG!r} has 0 available, 1 wanted"
    assert (await shop.reserve(new_order(), sunglasses=1)).state == HELD_STATE

    reply = await shop.admin.post("/faults", params={"stock_exhausted": "NOPE"})
    assert reply.status_code == 400 and "stock_exhausted" in reply.json()["error"]
    assert (await shop.admin.get("/faults")).json()["stock_exhausted"]["value"] == MUG
    await shop.admin.post("/faults", params={"stock_exhausted": ""})
    assert (await shop.reserve(new_order(), mug=1)).state == HELD_STATE


async def test_set_stock_is_for_admins_only(tmp_path: Path) -> None:
    async with (
        issuing(tmp_path) as issuer,
        running(tmp_path, NO_SUPPLIER, user_addr=issuer.address) as shop,
    ):
        request = ipb.SetStockRequest(product_id=MUG, on_hand=7)
        error = await rpc_error(shop.stub.SetStock(request))
        assert error.code() is Code.UNAUTHENTICATED
        customer = bearer(issuer.token("ana"))
        error = await rpc_error(shop.stub.SetStock(request, metadata=customer))
        assert error.code() is Code.PERMISSION_DENIED
        admin = bearer(issuer.token("root", role="admin"))
        for bad, code, message in (
            (ipb.SetStockRequest(product_id=MUG, on_hand=-1), Code.INVALID_ARGUMENT, "on_hand"),
            (ipb.SetStockRequest(product_id="NOPE", on_hand=1), Code.NOT_FOUND, "'NOPE'"),
            (ipb.SetStockRequest(on_hand=1), Code.INVALID_ARGUMENT, "product_id"),
        ):
            error = await rpc_error(shop.stub.SetStock(bad, metadata=admin))
            assert error.code() is code and message in (error.details() or "")
        assert (await shop.level(MUG)).on_hand == 50
        level = await shop.stub.SetStock(request, metadata=admin)
        assert (level.on_hand, level.available) == (7, 7)
        assert (await shop.level(MUG)).on_hand == 7
    # without a user service to check tokens, nobody may set the stock
    async with running(tmp_path, NO_SUPPLIER) as alone:
        error = await rpc_error(alone.stub.SetStock(request))
        assert error.code() is Code.PERMISSION_DENIED
        assert (await alone.level(MUG)).on_hand == 7  # the same store, kept across restarts


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StockSettings.from_env() == StockSettings()
    for name, value in {
        "INVENTORY_INITIAL_STOCK": "5",
        "INVENTORY_RESERVATION_TTL_S": "0.5",
        "INVENTORY_LOW_STOCK": "2",
        "INVENTORY_RESTOCK_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    assert StockSettings.from_env() == StockSettings(5, 0.5, 2, 0.0)
    for name, bad in (
        ("INVENTORY_RESERVATION_TTL_S", "soon"),
        ("INVENTORY_RESERVATION_TTL_S", "0"),
        ("INVENTORY_RESTOCK_S", "-1"),
        ("INVENTORY_INITIAL_STOCK", "lots"),
    ):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError, match=name):
            StockSettings.from_env()
        monkeypatch.setenv(name, "1")


# --- the store on SQLite and PostgreSQL --------------------------------------------------

StoreFactory = Callable[[], StockStore]


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Makes store objects over the same tables (another process, or a restart)."""
    prefix = unique("inv") + "_"
    made: list[StockStore] = []

    def make() -> StockStore:
        if request.param == "sqlite":
            db: SQLite | Postgres = SQLite(tmp_path / "stock.db")
        else:
            db = Postgres(request.getfixturevalue("postgres_url"))
        store = StockStore(db, Thresholds(low=3, initial=10), Outbox(db, f"{prefix}outbox"), prefix)
        made.append(store)
        return store

    yield make
    cleaner = make()
    await cleaner.drop()
    await cleaner.db.execute(f"DROP TABLE IF EXISTS {prefix}outbox")
    for store in made:
        await store.close()


async def test_store_keeps_stock_and_reservations_across_restarts(stores: StoreFactory) -> None:
    store = stores()
    assert await store.migrate() == 0
    assert await store.stock_new_products([MUG, LOAF]) == [MUG, LOAF]
    order = new_order()
    await store.reserve(order, {MUG: 4, LOAF: 8}, ttl_ns=60 * 10**9)
    with pytest.raises(TooLittle) as short:
        await store.reserve(new_order(), {MUG: 1, LOAF: 3}, ttl_ns=60 * 10**9)
    assert (short.value.product_id, short.value.available) == (LOAF, 2)
    assert (await store.commit(order)).state == COMMITTED
    await store.close()

    again = stores()
    assert await again.migrate() == 1
    assert await again.stock_new_products([MUG, LOAF, SUNGLASSES]) == [SUNGLASSES]
    levels = await again.levels([MUG, LOAF, SUNGLASSES])
    assert [(lv.on_hand, lv.available) for lv in levels.values()] == [(6, 6), (2, 2), (10, 10)]
    # LOAF fell below 3: one LowStock event, written with the reservation
    events = await again.outbox.pending() if again.outbox else []
    assert [(e.subject, ev.LowStock.FromString(e.payload).product_id) for e in events] == [
        (INVENTORY_LOW_STOCK, LOAF)
    ]
    assert (await again.release(order)).state == RELEASED
    assert (await again.levels([LOAF]))[LOAF].on_hand == 10
    with pytest.raises(Ended):
        await again.commit(order)
    with pytest.raises(NoReservation):
        await again.commit(new_order())
    assert await again.restock(0) == []  # the flag was cleared when LOAF came back
    held = new_order()
    await again.reserve(held, {MUG: 1}, ttl_ns=60 * 10**9)
    gone = new_order()
    await again.reserve(gone, {MUG: 1}, ttl_ns=1)
    assert await again.expire() == [gone]
    assert await again.forget(time.time_ns() + 1) == 2  # the ended ones, not the held one
    assert await again.reservation(order) is None
    assert (await again.levels([MUG]))[MUG].reserved == 1
    await again.ping()


async def test_store_races_between_two_connections_never_oversell(
    stores: StoreFactory,
) -> None:
    first, second = stores(), stores()
    await first.migrate()
    await first.stock_new_products([MUG])
    await second.migrate()
    attempts = [
        (first if i % 2 else second).reserve(new_order(), {MUG: 1}, ttl_ns=60 * 10**9)
        for i in range(16)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 10
    assert all(isinstance(r, TooLittle) for r in results if isinstance(r, BaseException))
    assert (await first.levels([MUG]))[MUG].reserved == 10


def test_catalog_config_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PRODUCTCATALOG_DATABASE_URL", raising=False)
    monkeypatch.delenv("USER_SERVICE_ADDR", raising=False)
    config = productcatalog.Config.from_env()
    assert config.database_url == f"sqlite:///{tmp_path / 'inventory.db'}"
    assert config.user_addr is None and config.nats_url
    monkeypatch.setenv("USER_SERVICE_ADDR", "user:5080")
    assert productcatalog.Config.from_env().user_addr == "user:5080"
    for name, bad in (("USER_SERVICE_ADDR", "user"), ("PRODUCTCATALOG_DATABASE_URL", "mysql://x")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError, match=name):
            productcatalog.Config.from_env()
        monkeypatch.delenv(name)
