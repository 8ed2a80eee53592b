"""The durable record of placed orders (SQLite by default, or PostgreSQL).

An order is written, committed, before PlaceOrder answers, together with the
``boutique.order.placed`` event announcing it (in the outbox of the same
database, one transaction: reference_services/common/events). The store is
also the checkout's health pinger for its database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf import json_format

from reference_services.common.database import Database, SQLTable, Transaction
from reference_services.common.events import ORDER_PLACED, Outbox
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev


@dataclass(frozen=True)
class PlacedOrder:
    """One placed order as recorded."""

    order_id: str
    user_id: str
    email: str
    total: pb.Money
    transaction_id: str
    result: pb.OrderResult
    placed_at_ns: int


def order_placed(order: PlacedOrder) -> ev.OrderPlaced:
    """The ``boutique.order.placed`` event of a recorded order."""
    result = order.result
    return ev.OrderPlaced(
        order_id=order.order_id,
        user_id=order.user_id,
        email=order.email,
        items=[
            ev.OrderLine(
                product_id=line.item.product_id, quantity=line.item.quantity, unit_cost=line.cost
            )
            for line in result.items
        ],
        shipping_cost=result.shipping_cost,
        total=order.total,
        shipping_address=result.shipping_address,
        tracking_id=result.shipping_tracking_id,
    )


class OrderStore(SQLTable):
    """Placed orders in the SQL table ``<table>``."""

    name = "order-store"
    schema = (
        "order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, email TEXT NOT NULL,"
        " currency_code TEXT NOT NULL, total_units BIGINT NOT NULL,"
        " total_nanos INTEGER NOT NULL, transaction_id TEXT NOT NULL,"
        " result_json TEXT NOT NULL, placed_at_ns BIGINT NOT NULL"
    )

    def __init__(self, db: Database, table: str = "orders") -> None:
        super().__init__(db, table)

    async def record(
        self,
        result: pb.OrderResult,
        *,
        user_id: str,
        email: str,
        total: pb.Money,
        transaction_id: str,
        outbox: Outbox | None = None,
    ) -> PlacedOrder:
        """Write the order and commit it, with its OrderPlaced event in ``outbox`` (an
        outbox of this store's database); the recorded order."""
        await self._setup()
        placed = PlacedOrder(
            result.order_id, user_id, email, total, transaction_id, result, time.time_ns()
        )
        async with self.db.transaction() as tx:
            await self._insert(tx, placed)
            if outbox is not None:
                await outbox.add(tx, ORDER_PLACED, order_placed(placed))
        return placed

    async def _insert(self, tx: Transaction, placed: PlacedOrder) -> None:
        await tx.execute(
            f"INSERT INTO {self.table} (order_id, user_id, email, currency_code, total_units,"
            " total_nanos, transaction_id, result_json, placed_at_ns)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                placed.order_id,
                placed.user_id,
                placed.email,
                placed.total.currency_code,
                placed.total.units,
                placed.total.nanos,
                placed.transaction_id,
                json_format.MessageToJson(placed.result, indent=None),
                placed.placed_at_ns,
            ),
        )

    async def get(self, order_id: str) -> PlacedOrder | None:
        """The order with this id, or None."""
        orders = await self._select("WHERE order_id = %s", (order_id,))
        return orders[0] if orders else None

    async def for_user(self, user_id: str) -> list[PlacedOrder]:
        """A user's orders, oldest first."""
        return await self._select("WHERE user_id = %s ORDER BY placed_at_ns", (user_id,))

    async def _select(self, where: str, params: tuple[str, ...]) -> list[PlacedOrder]:
        await self._setup()
        rows = await self.db.execute(
            "SELECT order_id, user_id, email, currency_code, total_units, total_nanos,"
            f" transaction_id, result_json, placed_at_ns FROM {self.table} {where}",
            params,
        )
        return [
            PlacedOrder(
                order_id=str(r[0]),
                user_id=str(r[1]),
                email=str(r[2]),
                total=pb.Money(currency_code=str(r[3]), units=int(r[4]), nanos=int(r[5])),
                transaction_id=str(r[6]),
                result=json_format.Parse(str(r[7]), pb.OrderResult()),
                placed_at_ns=int(r[8]),
            )
            for r in rows
        ]
