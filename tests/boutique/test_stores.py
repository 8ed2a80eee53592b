"""Cart and order stores against real SQLite, PostgreSQL and Redis: durable, and loud when down."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from reference_services.cart.store import (
    CartFull,
    LineFull,
    RedisCartStore,
    SQLCartStore,
    open_cart_store,
)
from reference_services.checkout import orders
from reference_services.checkout.orders import OrderStore
from reference_services.checkout.saga_log import PLACE, SagaLog
from reference_services.common.database import (
    Postgres,
    SQLite,
    StoreUnavailable,
    open_database,
    redact,
)
from reference_services.common.fields import MAX_LINES, MAX_QUANTITY
from reference_services.protos import hipstershop_pb2 as pb
from tests.boutique.conftest import unique

CartFactory = Callable[[], SQLCartStore | RedisCartStore]


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def cart_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[CartFactory]:
    """Makes store objects over the same backing data (as a restarted service would)."""
    name = unique("cart")
    made: list[SQLCartStore | RedisCartStore] = []

    def make() -> SQLCartStore | RedisCartStore:
        store: SQLCartStore | RedisCartStore
        if request.param == "sqlite":
            store = SQLCartStore(SQLite(tmp_path / "cart.db"), name)
        elif request.param == "postgresql":
            store = SQLCartStore(Postgres(request.getfixturevalue("postgres_url")), name)
        else:
            store = RedisCartStore(request.getfixturevalue("redis_url"), prefix=f"{name}:")
        made.append(store)
        return store

    yield make
    cleaner = make()
    if isinstance(cleaner, SQLCartStore):
        await cleaner.drop()
    else:
        keys = await cleaner.client.keys(f"{name}:*")
        if keys:
            await cleaner.client.delete(*keys)
    for store in made:
        await store.close()


async def test_cart_store_adds_merges_reads_and_empties(cart_factory: CartFactory) -> None:
    store = cart_factory()
    assert await store.get("alice") == []
    assert await store.add("alice", "OLJCESPC7Z", 2) == 2
    assert await store.add("alice", "6E92ZMYYFZ", 1) == 1
    assert await store.add("alice", "OLJCESPC7Z", 3) == 5
    await store.add("bob", "6E92ZMYYFZ", 4)
    assert await store.get("alice") == [("OLJCESPC7Z", 5), ("6E92ZMYYFZ", 1)]
    with pytest.raises(LineFull, match=f"at most {MAX_QUANTITY}"):
        await store.add("alice", "OLJCESPC7Z", MAX_QUANTITY - 4)
    assert await store.get("alice") == [("OLJCESPC7Z", 5), ("6E92ZMYYFZ", 1)]
    await store.empty("alice")
    assert await store.get("alice") == []
    assert await store.get("bob") == [("6E92ZMYYFZ", 4)]
    await store.ping()


async def test_cart_store_holds_at_most_max_lines_products(cart_factory: CartFactory) -> None:
    store = cart_factory()
    ids = [f"P{i:03d}" for i in range(MAX_LINES)]
    for product_id in ids:
        await store.add("carol", product_id, 1)
    with pytest.raises(CartFull, match=f"at most {MAX_LINES} different products"):
        await store.add("carol", "ONE-TOO-MANY", 1)
    assert await store.add("carol", ids[-1], 2) == 3  # a product already there still adds up
    with pytest.raises(LineFull):
        await store.add("carol", ids[0], MAX_QUANTITY)
    cart = await store.get("carol")
    assert [p for p, _ in cart] == ids and sum(q for _, q in cart) == MAX_LINES + 2
    assert await store.add("dave", "ONE-TOO-MANY", 1) == 1  # another cart is not full


async def test_cart_survives_a_new_store_object(cart_factory: CartFactory) -> None:
    first = cart_factory()
    await first.add("carol", "L9ECAV7KIM", 1)
    await first.add("carol", "1YMWWN1N4O", 2)
    await first.close()
    second = cart_factory()
    assert await second.get("carol") == [("L9ECAV7KIM", 1), ("1YMWWN1N4O", 2)]


async def test_unreachable_stores_raise_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "missing-dir-is-a-file").write_text("not a directory")
    db_file = tmp_path / "missing-dir-is-a-file" / "x.db"
    # each message names the store, its password masked, then the driver's reason
    stores = {
        "postgresql database postgresql://postgres:***@127.0.0.1:1/test is unreachable: ": (
            SQLCartStore(Postgres("postgresql://postgres:s3cret@127.0.0.1:1/test"))
        ),
        "redis redis://:***@127.0.0.1:1/0 is unreachable: ": RedisCartStore(
            "redis://:s3cret@127.0.0.1:1/0"
        ),
        f"sqlite file {db_file}: ": SQLCartStore(SQLite(db_file)),
    }
    for named, store in stores.items():
        with pytest.raises(StoreUnavailable) as read:
            await store.get("dave")
        with pytest.raises(StoreUnavailable) as pinged:
            await store.ping()
        await store.close()
        for caught in (read, pinged):
            assert str(caught.value).startswith(named)
            assert "s3cret" not in str(caught.value)


def test_urls_pick_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_cart_store(f"sqlite:///{tmp_path}/c.db"), SQLCartStore)
    assert isinstance(open_cart_store("redis://127.0.0.1:6379/0"), RedisCartStore)
    assert isinstance(open_database("postgresql://postgres@127.0.0.1/test"), Postgres)
    with pytest.raises(ValueError, match="unsupported database URL 'mysql://u:\\*\\*\\*@h/db'"):
        open_database("mysql://u:pw@h/db")
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="table name"):
        SQLCartStore(SQLite(tmp_path / "c.db"), "carts; DROP TABLE x")


def order(order_id: str) -> pb.OrderResult:
    return pb.OrderResult(
        order_id=order_id,
        shipping_tracking_id="AB-12345-123456789",
        shipping_cost=pb.Money(currency_code="EUR", units=7, nanos=950_000_000),
        items=[
            pb.OrderItem(
                item=pb.CartItem(product_id="6E92ZMYYFZ", quantity=2),
                cost=pb.Money(currency_code="EUR", units=7, nanos=950_000_000),
            )
        ],
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_order_store_records_durably(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    table = unique("orders")

    def make() -> OrderStore:
        if backend == "sqlite":
            db: SQLite | Postgres = SQLite(tmp_path / "orders.db")
        else:
            db = Postgres(request.getfixturevalue("postgres_url"))
        return OrderStore(db, prefix=table)

    store = make()
    total = pb.Money(currency_code="EUR", units=23, nanos=850_000_000)
    try:
        placed = await store.record(
            order("o-1"), user_id="erin", email="e@example.com", total=total, transaction_id="t-1"
        )
        await store.record(
            order("o-2"), user_id="erin", email="e@example.com", total=total, transaction_id="t-2"
        )
        await store.close()
        reopened = make()
        found = await reopened.get("o-1")
        assert found == placed
        assert found is not None and found.result == order("o-1") and found.total == total
        assert [o.order_id for o in await reopened.for_user("erin")] == ["o-1", "o-2"]
        assert await reopened.get("nope") is None
        await reopened.ping()
    finally:
        cleaner = make()
        await cleaner.drop()
        await cleaner.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_version_3_order_database_gets_the_saga_owner_index_and_keeps_its_sagas(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    db: SQLite | Postgres
    if backend == "sqlite":
        db = SQLite(tmp_path / "orders.db")
    else:
        db = Postgres(request.getfixturevalue("postgres_url"))
    store = OrderStore(db, prefix=unique("v3") + "_")
    index = f"{store.saga_table}_by_owner"
    if backend == "sqlite":
        indexes = f"SELECT name FROM sqlite_master WHERE type = 'index' AND name = '{index}'"
    else:
        indexes = f"SELECT indexname FROM pg_indexes WHERE indexname = '{index}'"
    try:
        with monkeypatch.context() as patch:  # the database as the checkout of version 3 left it
            patch.setattr(orders, "SCHEMA_VERSION", 3)
            assert await store.migrate() == 0
        dead = SagaLog(store, "checkout-gone")
        async with db.transaction() as tx:
            await dead.write(tx, "o-1", kind=PLACE, step="charge", carrier={})
        assert not await db.execute(indexes)

        assert await OrderStore(db, store.table.removesuffix("orders")).migrate() == 3
        assert await db.execute(indexes) == [(index,)]
        version = await db.execute(f"SELECT version FROM {store.schema_table}")
        assert version == [(orders.SCHEMA_VERSION,)] and orders.SCHEMA_VERSION == 4
        # recovery's lookup still finds the saga a dead owner left (its lease long over)
        (orphan,) = await SagaLog(store, "checkout-alive").orphans(settled_for=0, lease=0)
        assert (orphan.order_id, orphan.owner, orphan.step) == ("o-1", "checkout-gone", "charge")
    finally:
        await store.drop()
        await store.close()


async def test_order_store_down_is_store_unavailable() -> None:
    store = OrderStore(Postgres("postgresql://postgres@127.0.0.1:1/test"))
    with pytest.raises(StoreUnavailable, match=re.escape("127.0.0.1:1/test is unreachable")):
        await store.get("o-1")
    await store.close()
