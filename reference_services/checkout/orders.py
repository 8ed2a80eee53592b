"""The durable record of placed orders and their status history (SQLite or PostgreSQL).

An order is written, committed, before PlaceOrder answers, together with the
first entry of its history and the ``boutique.order.placed`` event announcing
it (in the outbox of the same database, one transaction:
reference_services/common/events). Each later move of its status is written
with its history entry and its ``boutique.order.status_changed`` event, in one
transaction too.

The schema is versioned: `OrderStore.migrate` (run at start) applies the steps
of `MIGRATIONS` past the version recorded in ``order_schema``, each step in one
transaction with its new version. Version 1 is the table of the first boutique,
so an existing order database is brought forward with its orders, each given
the status SHIPPED its PlaceOrder ended with. The store is also the checkout's
health pinger for its database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from google.protobuf import json_format

from reference_services.common.database import Database, Transaction, table_prefix
from reference_services.common.events import ORDER_PLACED, ORDER_STATUS_CHANGED, Outbox
from reference_services.common.migrations import apply_migrations
from reference_services.common.pages import Cursor
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev

#: version -> the statements that bring the schema from the previous version to it.
#: ``{o}`` is the orders table, ``{h}`` the history table, ``{s}`` the saga log, ``{w}``
#: the checkout processes' heartbeats.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS {o} ("
        " order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, email TEXT NOT NULL,"
        " currency_code TEXT NOT NULL, total_units BIGINT NOT NULL,"
        " total_nanos INTEGER NOT NULL, transaction_id TEXT NOT NULL,"
        " result_json TEXT NOT NULL, placed_at_ns BIGINT NOT NULL)",
    ),
    2: (
        "ALTER TABLE {o} ADD COLUMN status TEXT NOT NULL DEFAULT 'SHIPPED'",
        "CREATE INDEX IF NOT EXISTS {o}_by_user ON {o} (user_id, placed_at_ns, order_id)",
        "CREATE TABLE IF NOT EXISTS {h} ("
        " order_id TEXT NOT NULL, seq INTEGER NOT NULL, from_status TEXT NOT NULL,"
        " to_status TEXT NOT NULL, at_ns BIGINT NOT NULL, reason TEXT NOT NULL,"
        " trace_id TEXT NOT NULL, PRIMARY KEY (order_id, seq))",
        # the orders placed before there was a history: the move PlaceOrder made
        "INSERT INTO {h} (order_id, seq, from_status, to_status, at_ns, reason, trace_id)"
        " SELECT order_id, 1, 'UNSPECIFIED', 'SHIPPED', placed_at_ns, 'placed', '' FROM {o}",
    ),
    3: (
        # the checkout saga's durable state (reference_services/checkout/saga_log.py)
        "CREATE TABLE IF NOT EXISTS {s} ("
        " order_id TEXT PRIMARY KEY, kind TEXT NOT NULL, step TEXT NOT NULL,"
        " state TEXT NOT NULL, reason TEXT NOT NULL, owner TEXT NOT NULL,"
        " carrier_json TEXT NOT NULL, updated_ns BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {s}_open ON {s} (state, updated_ns)",
        # the checkout processes alive, each beating while it runs sagas
        "CREATE TABLE IF NOT EXISTS {w} (owner TEXT PRIMARY KEY, beat_ns BIGINT NOT NULL)",
    ),
    4: (
        # recovery looks sagas up by their owner (SagaLog.orphans: this process's own,
        # or those of an owner whose lease ran out), unfinished ones, oldest first
        "CREATE INDEX IF NOT EXISTS {s}_by_owner ON {s} (owner, state, updated_ns)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

PENDING = "PENDING"
"""The status of an order whose checkout saga has begun."""
PLACED = "SHIPPED"
"""The status of an order PlaceOrder recorded (it answers once the label is created)."""
#: status -> the statuses it may move to (docs/boutique.md, "Orders").
TRANSITIONS: dict[str, frozenset[str]] = {
    "PENDING": frozenset({"PAID", "FAILED", "CANCELLED"}),
    "PAID": frozenset({"SHIPPED", "FAILED", "CANCELLED"}),
    "SHIPPED": frozenset({"IN_TRANSIT", "CANCELLED"}),
    "IN_TRANSIT": frozenset({"DELIVERED"}),
    "DELIVERED": frozenset(),
    "FAILED": frozenset(),
    "CANCELLED": frozenset(),
}


def wire_status(name: str) -> str:
    """The wire enum name of a stored status (``SHIPPED``: ``ORDER_STATUS_SHIPPED``)."""
    return f"ORDER_STATUS_{name}"


class Forbidden(Exception):
    """The order cannot make this move now (its message says why)."""


@dataclass(frozen=True)
class Change:
    """One move of an order's status."""

    from_status: str
    to_status: str
    at_ns: int
    reason: str
    trace_id: str


@dataclass(frozen=True)
class PlacedOrder:
    """One placed order as recorded, with its status and history (oldest first)."""

    order_id: str
    user_id: str
    email: str
    total: pb.Money
    transaction_id: str
    result: pb.OrderResult
    placed_at_ns: int
    status: str = PLACED
    history: tuple[Change, ...] = ()


def order_placed(
    result: pb.OrderResult, *, user_id: str, email: str, total: pb.Money
) -> ev.OrderPlaced:
    """The ``boutique.order.placed`` event of an order shipped with ``result``."""
    return ev.OrderPlaced(
        order_id=result.order_id,
        user_id=user_id,
        email=email,
        items=[
            ev.OrderLine(
                product_id=line.item.product_id, quantity=line.item.quantity, unit_cost=line.cost
            )
            for line in result.items
        ],
        shipping_cost=result.shipping_cost,
        total=total,
        shipping_address=result.shipping_address,
        tracking_id=result.shipping_tracking_id,
    )


_COLUMNS = (
    "order_id, user_id, email, currency_code, total_units, total_nanos, transaction_id,"
    " result_json, placed_at_ns, status"
)


class OrderStore:
    """Orders in the table ``<prefix>orders`` of ``db``, their history in
    ``<prefix>order_history``, the schema version in ``<prefix>order_schema``
    (tests sharing a database give each store a prefix)."""

    name = "order-store"

    def __init__(self, db: Database, prefix: str = "") -> None:
        prefix = table_prefix(prefix)
        self.db = db
        self.table = f"{prefix}orders"
        self.history_table = f"{prefix}order_history"
        self.schema_table = f"{prefix}order_schema"
        self.saga_table = f"{prefix}order_sagas"
        self.beat_table = f"{prefix}checkout_beats"
        self._migrated = False

    async def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; the version it was at before."""
        tables = {
            "o": self.table,
            "h": self.history_table,
            "s": self.saga_table,
            "w": self.beat_table,
        }
        before = await apply_migrations(
            self.db, self.schema_table, MIGRATIONS, tables, "order", newest=SCHEMA_VERSION
        )
        self._migrated = True
        return before

    async def _ready(self) -> None:
        if not self._migrated:
            await self.migrate()

    async def drop(self) -> None:
        """Drop the store's tables (for tests that made their own)."""
        tables = (self.history_table, self.table, self.saga_table, self.beat_table)
        for table in (*tables, self.schema_table):
            await self.db.execute(f"DROP TABLE IF EXISTS {table}")
        self._migrated = False

    async def record(
        self,
        result: pb.OrderResult,
        *,
        user_id: str,
        email: str,
        total: pb.Money,
        transaction_id: str,
        trace_id: str = "",
        outbox: Outbox | None = None,
    ) -> PlacedOrder:
        """Write the order, SHIPPED, with the first entry of its history, and commit it
        with its OrderPlaced event in ``outbox`` (an outbox of this store's database)."""
        await self._ready()
        now = time.time_ns()
        first = Change("UNSPECIFIED", PLACED, now, "placed", trace_id)
        placed = PlacedOrder(
            result.order_id, user_id, email, total, transaction_id, result, now, PLACED, (first,)
        )
        async with self.db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO {self.table} ({_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    placed.order_id,
                    placed.user_id,
                    placed.email,
                    total.currency_code,
                    total.units,
                    total.nanos,
                    transaction_id,
                    json_format.MessageToJson(result, indent=None),
                    now,
                    PLACED,
                ),
            )
            await self._add_change(tx, placed.order_id, 1, first)
            if outbox is not None:
                await outbox.add(
                    tx,
                    ORDER_PLACED,
                    order_placed(result, user_id=user_id, email=email, total=total),
                )
        return placed

    async def _add_change(self, tx: Transaction, order_id: str, seq: int, change: Change) -> None:
        await tx.execute(
            f"INSERT INTO {self.history_table} (order_id, seq, from_status, to_status, at_ns,"
            " reason, trace_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                order_id,
                seq,
                change.from_status,
                change.to_status,
                change.at_ns,
                change.reason,
                change.trace_id,
            ),
        )

    async def create(
        self,
        tx: Transaction,
        result: pb.OrderResult,
        *,
        user_id: str,
        email: str,
        total: pb.Money,
        trace_id: str,
    ) -> None:
        """Write a new order PENDING in ``tx``: its items priced and its shipping address
        known, its payment and tracking id not yet (`settle` sets them)."""
        await self._ready()
        now = time.time_ns()
        await tx.execute(
            f"INSERT INTO {self.table} ({_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                result.order_id,
                user_id,
                email,
                total.currency_code,
                total.units,
                total.nanos,
                "",
                json_format.MessageToJson(result, indent=None),
                now,
                PENDING,
            ),
        )
        first = Change("UNSPECIFIED", PENDING, now, "checkout started", trace_id)
        await self._add_change(tx, result.order_id, 1, first)

    async def settle(
        self,
        tx: Transaction,
        order_id: str,
        *,
        transaction_id: str | None = None,
        result: pb.OrderResult | None = None,
    ) -> None:
        """Record in ``tx`` the card transaction an order got, or its result as it is now
        (with the tracking id of its label)."""
        if transaction_id is not None:
            await tx.execute(
                f"UPDATE {self.table} SET transaction_id = %s WHERE order_id = %s",
                (transaction_id, order_id),
            )
        if result is not None:
            await tx.execute(
                f"UPDATE {self.table} SET result_json = %s WHERE order_id = %s",
                (json_format.MessageToJson(result, indent=None), order_id),
            )

    async def transition(
        self, order_id: str, to: str, reason: str, trace_id: str, outbox: Outbox | None = None
    ) -> PlacedOrder | None:
        """Move the order to status ``to``, adding the change to its history, with its
        OrderStatusChanged event in ``outbox``, all in one transaction; the order as it
        is then, None if there is none. `Forbidden` (nothing written) when
        `TRANSITIONS` does not allow the move."""
        await self._ready()
        async with self.db.transaction() as tx:
            if await self.move(tx, order_id, to, reason, trace_id, outbox) is None:
                return None
        return await self.get(order_id)

    async def move(
        self,
        tx: Transaction,
        order_id: str,
        to: str,
        reason: str,
        trace_id: str,
        outbox: Outbox | None = None,
    ) -> str | None:
        """`transition` inside the caller's transaction ``tx``; the status it moved from,
        None if there is no such order."""
        rows = await tx.execute(f"SELECT status FROM {self.table} WHERE order_id = %s", (order_id,))
        if not rows:
            return None
        current = str(rows[0][0])
        allowed = TRANSITIONS.get(current, frozenset())
        if to not in allowed:
            others = ", ".join(sorted(allowed)) or "none"
            raise Forbidden(f"it is {current} and cannot become {to} (allowed: {others})")
        # only from the status read: a move committed meanwhile by another replica
        # (PostgreSQL re-reads the row once its lock is released) leaves nothing to update
        moved = await tx.execute(
            f"UPDATE {self.table} SET status = %s WHERE order_id = %s AND status = %s"
            " RETURNING order_id",
            (to, order_id, current),
        )
        if not moved:
            raise Forbidden(f"its status changed while it was becoming {to}: read it again")
        change = Change(current, to, time.time_ns(), reason, trace_id)
        # the next entry's number read in the same statement (one call less per move)
        await tx.execute(
            f"INSERT INTO {self.history_table} (order_id, seq, from_status, to_status, at_ns,"
            " reason, trace_id) SELECT %s, COALESCE(MAX(seq), 0) + 1, %s, %s, %s, %s, %s"
            f" FROM {self.history_table} WHERE order_id = %s",
            (order_id, current, to, change.at_ns, reason, trace_id, order_id),
        )
        if outbox is not None:
            event = ev.OrderStatusChanged(
                order_id=order_id,
                from_status=wire_status(current),
                to_status=wire_status(to),
                reason=reason,
            )
            await outbox.add(tx, ORDER_STATUS_CHANGED, event)
        return current

    async def get(self, order_id: str) -> PlacedOrder | None:
        """The order with this id and its history, or None."""
        orders = await self._select("WHERE order_id = %s", [order_id])
        return orders[0] if orders else None

    async def for_user(self, user_id: str) -> list[PlacedOrder]:
        """A user's orders, oldest first."""
        return await self._select("WHERE user_id = %s ORDER BY placed_at_ns, order_id", [user_id])

    async def page(
        self, user_id: str, limit: int, after: Cursor | None = None
    ) -> tuple[list[PlacedOrder], Cursor | None]:
        """Up to ``limit`` of the user's orders, newest first, after ``after``; and the
        cursor of the next page (None: no more)."""
        where, params = "WHERE user_id = %s", list[object]([user_id])
        if after is not None:
            where += " AND (placed_at_ns < %s OR (placed_at_ns = %s AND order_id < %s))"
            params += [after.at_ns, after.at_ns, after.id]
        found = await self._select(
            f"{where} ORDER BY placed_at_ns DESC, order_id DESC LIMIT %s", [*params, limit + 1]
        )
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], Cursor(last.placed_at_ns, last.order_id)

    async def _select(self, where: str, params: list[object]) -> list[PlacedOrder]:
        await self._ready()
        rows = await self.db.execute(f"SELECT {_COLUMNS} FROM {self.table} {where}", params)
        orders = [
            PlacedOrder(
                order_id=str(r[0]),
                user_id=str(r[1]),
                email=str(r[2]),
                total=pb.Money(currency_code=str(r[3]), units=int(r[4]), nanos=int(r[5])),
                transaction_id=str(r[6]),
                result=json_format.Parse(str(r[7]), pb.OrderResult()),
                placed_at_ns=int(r[8]),
                status=str(r[9]),
            )
            for r in rows
        ]
        if not orders:
            return orders
        marks = ", ".join(["%s"] * len(orders))
        changes = await self.db.execute(
            "SELECT order_id, from_status, to_status, at_ns, reason, trace_id"
            f" FROM {self.history_table} WHERE order_id IN ({marks}) ORDER BY order_id, seq",
            [o.order_id for o in orders],
        )
        history: dict[str, list[Change]] = {}
        for c in changes:
            history.setdefault(str(c[0]), []).append(
                Change(str(c[1]), str(c[2]), int(c[3]), str(c[4]), str(c[5]))
            )
        return [replace(o, history=tuple(history.get(o.order_id, ()))) for o in orders]

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()
