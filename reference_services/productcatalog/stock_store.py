"""The productcatalog's stock store: stock on hand and reservations by order (SQLite or
PostgreSQL).

A product's *reserved* stock is the sum of the lines of its reservations that are
held and not yet past their expiry time, so a reservation stops holding stock the
moment it expires, whether or not the sweeper has marked it expired yet; its
*available* stock is on hand minus reserved. Every change runs in one database
transaction that first bumps the ``turn`` of the stock rows it touches (sorted by
product id): on PostgreSQL that row lock makes two orders racing for the last units
take turns, on SQLite the transaction holds the database. A product whose available
stock falls below the low-stock level gets a LowStock event in the same transaction,
once per crossing: the flag ``low`` is cleared when it is back at the level or above.

The schema is versioned like the other stores: `StockStore.migrate` (run at start)
applies the steps of `MIGRATIONS` past the version recorded in ``inventory_schema``;
each step may be run again safely. The store is the service's health pinger for its
database.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reference_services.common.database import Database, Transaction, table_prefix
from reference_services.common.events import INVENTORY_LOW_STOCK, Outbox
from reference_services.common.migrations import apply_migrations
from reference_services.protos.boutique.v1 import events_pb2 as ev

#: version -> the statements that bring the schema from the previous version to it:
#: ``{s}`` the stock table, ``{r}`` the reservations, ``{l}`` their lines.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS {s} ("
        " product_id TEXT PRIMARY KEY, on_hand INTEGER NOT NULL,"
        " low INTEGER NOT NULL DEFAULT 0, low_since_ns BIGINT, turn BIGINT NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS {r} ("
        " order_id TEXT PRIMARY KEY, state TEXT NOT NULL, expires_ns BIGINT NOT NULL,"
        " updated_ns BIGINT NOT NULL)",
        # the held reservations are few (orders in flight): what every availability reads
        "CREATE INDEX IF NOT EXISTS {r}_held ON {r} (expires_ns) WHERE state = 'held'",
        "CREATE INDEX IF NOT EXISTS {r}_updated ON {r} (updated_ns)",
        "CREATE TABLE IF NOT EXISTS {l} ("
        " order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL,"
        " PRIMARY KEY (order_id, product_id))",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

HELD = "held"
COMMITTED = "committed"
RELEASED = "released"
EXPIRED = "expired"
ENDED = (RELEASED, EXPIRED)


@dataclass(frozen=True)
class Level:
    """A product's stock: on hand (reserved included), reserved, available."""

    product_id: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        """What a new order can take (never below 0: an admin may set less than is held)."""
        return max(0, self.on_hand - self.reserved)


@dataclass(frozen=True)
class Reservation:
    """The stock held for one order: its lines (product id, quantity) and its state."""

    order_id: str
    lines: tuple[tuple[str, int], ...]
    state: str
    expires_ns: int


class TooLittle(Exception):
    """A product has less available than an order asks for."""

    def __init__(self, product_id: str, available: int, wanted: int) -> None:
        super().__init__(f"{product_id}: {available} available, {wanted} wanted")
        self.product_id = product_id
        self.available = available
        self.wanted = wanted


class Ended(Exception):
    """The order's reservation was released or expired: it holds nothing any more."""

    def __init__(self, reservation: Reservation) -> None:
        super().__init__(f"the reservation of {reservation.order_id} is {reservation.state}")
        self.reservation = reservation


class NoReservation(Exception):
    """The order has no reservation."""


@dataclass(frozen=True)
class Thresholds:
    """When a product is low (available below ``low``), and the level a restock brings
    its stock on hand back to."""

    low: int
    initial: int


class StockStore:
    """Stock in the tables ``<prefix>stock``, ``<prefix>reservations`` and
    ``<prefix>reservation_lines`` of ``db`` (tests sharing a database give each store a
    prefix); LowStock events go to ``outbox`` (an outbox of ``db``; None: no events)."""

    name = "inventory-store"

    def __init__(
        self,
        db: Database,
        thresholds: Thresholds,
        outbox: Outbox | None = None,
        prefix: str = "",
    ) -> None:
        prefix = table_prefix(prefix)
        self.db = db
        self.thresholds = thresholds
        self.outbox = outbox
        self.stock = f"{prefix}stock"
        self.reservations = f"{prefix}reservations"
        self.lines = f"{prefix}reservation_lines"
        self.schema_table = f"{prefix}inventory_schema"

    async def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; the version it was at before."""
        tables = {"s": self.stock, "r": self.reservations, "l": self.lines}
        before = await apply_migrations(
            self.db, self.schema_table, MIGRATIONS, tables, "inventory", newest=SCHEMA_VERSION
        )
        if self.outbox is not None:
            await self.outbox.setup()
        return before

    async def stock_new_products(self, product_ids: Iterable[str]) -> list[str]:
        """Give each product not stocked yet the initial stock; the ones that got it
        (on the first start: every product; later, those added to the catalog since)."""
        added = []
        async with self.db.transaction() as tx:
            for product_id in product_ids:
                rows = await tx.execute(
                    f"INSERT INTO {self.stock} (product_id, on_hand) VALUES (%s, %s)"
                    " ON CONFLICT (product_id) DO NOTHING RETURNING product_id",
                    (product_id, self.thresholds.initial),
                )
                added += [str(row[0]) for row in rows]
        return added

    # --- reading -----------------------------------------------------------------------

    async def levels(self, product_ids: list[str]) -> dict[str, Level]:
        """The stock of each product that is stocked, by id."""
        async with self.db.transaction() as tx:
            return await self._levels(tx, product_ids, time.time_ns())

    async def _levels(self, tx: Transaction, product_ids: list[str], now: int) -> dict[str, Level]:
        if not product_ids:
            return {}
        marks = ", ".join(["%s"] * len(product_ids))
        on_hand = await tx.execute(
            f"SELECT product_id, on_hand FROM {self.stock} WHERE product_id IN ({marks})",
            product_ids,
        )
        reserved = await tx.execute(
            f"SELECT l.product_id, SUM(l.quantity) FROM {self.reservations} r"
            f" JOIN {self.lines} l ON l.order_id = r.order_id"
            f" WHERE r.state = '{HELD}' AND r.expires_ns > %s AND l.product_id IN ({marks})"
            " GROUP BY l.product_id",
            (now, *product_ids),
        )
        held = {str(row[0]): int(row[1]) for row in reserved}
        return {
            str(pid): Level(str(pid), int(count), held.get(str(pid), 0)) for pid, count in on_hand
        }

    async def reservation(self, order_id: str) -> Reservation | None:
        """The order's reservation (a held one past its time reads as expired), or None."""
        async with self.db.transaction() as tx:
            return await self._reservation(tx, order_id, time.time_ns())

    async def _reservation(self, tx: Transaction, order_id: str, now: int) -> Reservation | None:
        rows = await tx.execute(
            f"SELECT state, expires_ns FROM {self.reservations} WHERE order_id = %s", (order_id,)
        )
        if not rows:
            return None
        state, expires_ns = str(rows[0][0]), int(rows[0][1])
        if state == HELD and expires_ns <= now:
            state = EXPIRED
        lines = await tx.execute(
            f"SELECT product_id, quantity FROM {self.lines} WHERE order_id = %s"
            " ORDER BY product_id",
            (order_id,),
        )
        return Reservation(order_id, tuple((str(p), int(q)) for p, q in lines), state, expires_ns)

    # --- changes -----------------------------------------------------------------------

    async def reserve(
        self, order_id: str, wanted: Mapping[str, int], ttl_ns: int, exhausted: str = ""
    ) -> Reservation:
        """Hold ``wanted`` (product id -> quantity) for the order until ``ttl_ns`` from now,
        all or nothing. The order's existing reservation if it has one (Ended if that was
        released or expired); TooLittle, holding nothing, when a product has less
        available than wanted (``exhausted`` names a product taken to have none)."""
        now = time.time_ns()
        products = sorted(wanted)
        async with self.db.transaction() as tx:
            await self._take_turns(tx, products)
            found = await self._reservation(tx, order_id, now)
            if found is None:
                found = await self._hold(tx, order_id, wanted, now + ttl_ns, exhausted, now)
            if found.state in ENDED:
                raise Ended(found)
            return found

    async def _hold(
        self,
        tx: Transaction,
        order_id: str,
        wanted: Mapping[str, int],
        expires_ns: int,
        exhausted: str,
        now: int,
    ) -> Reservation:
        products = sorted(wanted)
        short = await self._too_little(tx, wanted, exhausted, now)
        if short is not None:
            raise short
        inserted = await tx.execute(
            f"INSERT INTO {self.reservations} (order_id, state, expires_ns, updated_ns)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
            (order_id, HELD, expires_ns, now),
        )
        if not inserted:  # a racing Reserve or Release of this order committed first
            found = await self._reservation(tx, order_id, now)
            assert found is not None
            return found
        for product_id in products:
            await tx.execute(
                f"INSERT INTO {self.lines} (order_id, product_id, quantity) VALUES (%s, %s, %s)",
                (order_id, product_id, wanted[product_id]),
            )
        await self._settle(tx, products, now)
        return Reservation(order_id, tuple((p, wanted[p]) for p in products), HELD, expires_ns)

    async def _too_little(
        self, tx: Transaction, wanted: Mapping[str, int], exhausted: str, now: int
    ) -> TooLittle | None:
        """The first product (by id) with less available than ``wanted`` of it, if any."""
        products = sorted(wanted)
        levels = await self._levels(tx, products, now)
        for product_id in products:
            level = levels.get(product_id)
            available = 0 if level is None or product_id == exhausted else level.available
            if wanted[product_id] > available:
                return TooLittle(product_id, available, wanted[product_id])
        return None

    async def commit(self, order_id: str, exhausted: str = "") -> Reservation:
        """Take the reserved stock for good (on hand goes down by the lines); committing
        twice answers the committed reservation. An expired reservation takes its stock
        again when every line is still available, all or nothing (an order paid and
        shipped after its hold ran out); when one is not, TooLittle, and nothing is
        taken (``exhausted`` names a product taken to have none). NoReservation, or
        Ended once released, when there is nothing to commit."""
        now = time.time_ns()
        short: TooLittle | None = None
        async with self.db.transaction() as tx:
            found = await self._reservation(tx, order_id, now)
            if found is not None and found.state in (HELD, EXPIRED):
                # lock the stock rows first, as Reserve does, then read it again: a racing
                # Commit or Release of the order may have gone first
                await self._take_turns(tx, [p for p, _ in found.lines])
                found = await self._reservation(tx, order_id, now)
            if found is None:
                raise NoReservation(order_id)
            if found.state == EXPIRED:
                short = await self._too_little(tx, dict(found.lines), exhausted, now)
                if short is not None:
                    await self._move(tx, order_id, HELD, EXPIRED, now)
            if found.state in (HELD, EXPIRED) and short is None:
                # an expired one is stored held or, once swept, expired
                if await self._move(tx, order_id, HELD, COMMITTED, now) or await self._move(
                    tx, order_id, EXPIRED, COMMITTED, now
                ):
                    for product_id, quantity in found.lines:
                        await tx.execute(
                            f"UPDATE {self.stock} SET on_hand = CASE WHEN on_hand > %s"
                            " THEN on_hand - %s ELSE 0 END WHERE product_id = %s",
                            (quantity, quantity, product_id),
                        )
                    await self._settle(tx, [p for p, _ in found.lines], now)
                    return Reservation(order_id, found.lines, COMMITTED, found.expires_ns)
                found = await self._reservation(tx, order_id, now)  # forgotten meanwhile
                if found is None:
                    raise NoReservation(order_id)
        if short is not None:
            raise short
        if found.state in ENDED:
            raise Ended(found)
        return found

    async def release(self, order_id: str) -> Reservation:
        """Give the order's stock back: a held one stops holding, a committed one is put
        back on hand (a cancelled order). Releasing twice, an expired reservation or an
        order never reserved changes nothing more; the last is recorded released with no
        lines, so that a Reserve of it arriving late holds nothing."""
        async with self.db.transaction() as tx:
            return await self.release_in(tx, order_id)

    async def release_in(self, tx: Transaction, order_id: str) -> Reservation:
        """`release` in the caller's transaction ``tx`` of this store's database (an event
        consumer's, whose processed mark commits with it)."""
        now = time.time_ns()
        found = await self._reservation(tx, order_id, now)
        if found is None:
            inserted = await tx.execute(
                f"INSERT INTO {self.reservations} (order_id, state, expires_ns, updated_ns)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
                (order_id, RELEASED, now, now),
            )
            if inserted:
                return Reservation(order_id, (), RELEASED, now)
            found = await self._reservation(tx, order_id, now)  # a racing Reserve's
            assert found is not None
        products = [p for p, _ in found.lines]
        await self._take_turns(tx, products)
        if found.state == COMMITTED:
            if await self._move(tx, order_id, COMMITTED, RELEASED, now):
                for product_id, quantity in found.lines:
                    await tx.execute(
                        f"UPDATE {self.stock} SET on_hand = on_hand + %s WHERE product_id = %s",
                        (quantity, product_id),
                    )
        elif found.state in (HELD, EXPIRED):
            # an expired one is stored held or, once swept, expired: released either way,
            # so that a late Commit cannot take its stock again
            await self._move(tx, order_id, HELD, RELEASED, now) or await self._move(
                tx, order_id, EXPIRED, RELEASED, now
            )
        await self._settle(tx, products, now)
        return Reservation(order_id, found.lines, RELEASED, found.expires_ns)

    async def set_stock(self, product_id: str, on_hand: int) -> Level:
        """Set a stocked product's stock on hand; its new level."""
        now = time.time_ns()
        async with self.db.transaction() as tx:
            await tx.execute(
                f"UPDATE {self.stock} SET on_hand = %s, turn = turn + 1 WHERE product_id = %s",
                (on_hand, product_id),
            )
            await self._settle(tx, [product_id], now)
            return (await self._levels(tx, [product_id], now))[product_id]

    async def expire(self) -> list[str]:
        """Mark the held reservations past their time expired (their stock stopped being
        held already); the order ids."""
        now = time.time_ns()
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"UPDATE {self.reservations} SET state = %s, updated_ns = %s"
                " WHERE state = %s AND expires_ns <= %s RETURNING order_id",
                (EXPIRED, now, HELD, now),
            )
            orders = [str(row[0]) for row in rows]
            if not orders:
                return orders
            marks = ", ".join(["%s"] * len(orders))
            found = await tx.execute(
                f"SELECT DISTINCT product_id FROM {self.lines} WHERE order_id IN ({marks})",
                orders,
            )
        # the low flags in a transaction of their own that locks the stock rows first, as
        # every other change does: never a reservation row, then stock rows (a deadlock
        # with a Commit racing the expiry, on PostgreSQL)
        products = sorted(str(row[0]) for row in found)
        async with self.db.transaction() as tx:
            await self._take_turns(tx, products)
            await self._settle(tx, products, time.time_ns())
        return orders

    async def restock(self, low_for_ns: int) -> list[str]:
        """The simulated supplier: bring every product low for ``low_for_ns`` or more back
        to the initial stock on hand; the product ids."""
        now = time.time_ns()
        async with self.db.transaction() as tx:
            due = await tx.execute(
                f"SELECT product_id FROM {self.stock}"
                " WHERE low = 1 AND low_since_ns <= %s AND on_hand < %s",
                (now - low_for_ns, self.thresholds.initial),
            )
            products = sorted(str(row[0]) for row in due)
            await self._take_turns(tx, products)  # in id order, like every change
            restocked = []
            for product_id in products:  # asked again with the row locked: it may have moved
                rows = await tx.execute(
                    f"UPDATE {self.stock} SET on_hand = %s"
                    " WHERE product_id = %s AND low = 1 AND on_hand < %s RETURNING product_id",
                    (self.thresholds.initial, product_id, self.thresholds.initial),
                )
                restocked += [str(row[0]) for row in rows]
            await self._settle(tx, restocked, now)
        return restocked

    async def forget(self, ended_before_ns: int) -> int:
        """Delete the reservations that stopped holding stock before ``ended_before_ns``
        (committed, released or expired), with their lines; how many."""
        ended = f"SELECT order_id FROM {self.reservations} WHERE state <> %s AND updated_ns < %s"
        async with self.db.transaction() as tx:
            await tx.execute(
                f"DELETE FROM {self.lines} WHERE order_id IN ({ended})", (HELD, ended_before_ns)
            )
            rows = await tx.execute(
                f"DELETE FROM {self.reservations} WHERE order_id IN ({ended}) RETURNING order_id",
                (HELD, ended_before_ns),
            )
        return len(rows)

    async def _take_turns(self, tx: Transaction, product_ids: list[str]) -> None:
        """Lock the products' stock rows, in id order (no deadlock between two orders)."""
        for product_id in sorted(product_ids):
            await tx.execute(
                f"UPDATE {self.stock} SET turn = turn + 1 WHERE product_id = %s", (product_id,)
            )

    async def _move(
        self,
        tx: Transaction,
        order_id: str,
        source: str,
        target: str,
        now: int,
        live_at: int | None = None,
    ) -> bool:
        """Move the reservation from state ``source`` to ``target`` (if still unexpired at
        ``live_at``, when given); whether it moved."""
        live = "" if live_at is None else " AND expires_ns > %s"
        rows = await tx.execute(
            f"UPDATE {self.reservations} SET state = %s, updated_ns = %s"
            f" WHERE order_id = %s AND state = %s{live} RETURNING order_id",
            (target, now, order_id, source, *(() if live_at is None else (live_at,))),
        )
        return bool(rows)

    async def _settle(self, tx: Transaction, product_ids: list[str], now: int) -> None:
        """Flag the products that fell below the low level (with a LowStock event each) and
        unflag those back at it or above."""
        levels = await self._levels(tx, product_ids, now)
        flags = await self._flags(tx, product_ids)
        for product_id, level in levels.items():
            low = level.available < self.thresholds.low
            if low and not flags[product_id]:
                await tx.execute(
                    f"UPDATE {self.stock} SET low = 1, low_since_ns = %s WHERE product_id = %s",
                    (now, product_id),
                )
                if self.outbox is not None:
                    event = ev.LowStock(product_id=product_id, available=level.available)
                    await self.outbox.add(tx, INVENTORY_LOW_STOCK, event)
            elif not low and flags[product_id]:
                await tx.execute(
                    f"UPDATE {self.stock} SET low = 0, low_since_ns = NULL WHERE product_id = %s",
                    (product_id,),
                )

    async def _flags(self, tx: Transaction, product_ids: list[str]) -> dict[str, bool]:
        if not product_ids:
            return {}
        marks = ", ".join(["%s"] * len(product_ids))
        rows = await tx.execute(
            f"SELECT product_id, low FROM {self.stock} WHERE product_id IN ({marks})",
            product_ids,
        )
        return {str(pid): bool(low) for pid, low in rows}

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()

    async def drop(self) -> None:
        """Drop the tables (for tests that made their own)."""
        for table in (self.lines, self.reservations, self.stock, self.schema_table):
            await self.db.execute(f"DROP TABLE IF EXISTS {table}")
