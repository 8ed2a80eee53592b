"""The payment ledger's own database: one payment per order, and its refund (SQLite or
PostgreSQL).

An order is charged at most once: ``order_id`` is unique, so of two charges of
one order racing (two replicas, a retried saga step) one is recorded and the
other finds it. A payment and its ``boutique.payment.completed`` event are
written in one transaction, as are a refund and its
``boutique.payment.refunded``, through the outbox of the same database
(reference_services/common/events). A refund of an order not charged yet
leaves a `VOIDED` row in its place, so that a charge of it arriving later is
refused rather than kept. Card numbers are never stored: only the card's type
and last four digits.

The schema is versioned: `LedgerStore.migrate` (run at start) applies the steps
of `MIGRATIONS` past the version recorded in ``payment_schema``. Every step may
be run again safely, so a start interrupted mid-step just redoes it. The store
is also the payment service's health pinger for its database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from reference_services.common.database import Database, Transaction, table_prefix
from reference_services.common.events import PAYMENT_COMPLETED, PAYMENT_REFUNDED, Outbox
from reference_services.common.migrations import apply_migrations
from reference_services.common.pages import Cursor
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev

#: version -> the statements that bring the schema from the previous version to it.
#: ``{p}`` is the payments table's name.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS {p} ("
        " id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,"
        " currency_code TEXT NOT NULL, amount_units BIGINT NOT NULL,"
        " amount_nanos INTEGER NOT NULL, status TEXT NOT NULL, transaction_id TEXT NOT NULL,"
        " card_type TEXT NOT NULL, card_last_four TEXT NOT NULL,"
        " charged_at_ns BIGINT NOT NULL, refunded_at_ns BIGINT,"
        " refund_reason TEXT NOT NULL DEFAULT '')",
        "CREATE INDEX IF NOT EXISTS {p}_by_user ON {p} (user_id, charged_at_ns, id)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
CHARGED = "CHARGED"
REFUNDED = "REFUNDED"
VOIDED = "VOIDED"
"""The row of an order refunded before it was charged: it keeps a charge arriving late
(the saga gave the order up while its ChargeOrder was on its way) from going through."""


@dataclass(frozen=True)
class Payment:
    """One order's payment as recorded."""

    id: str
    order_id: str
    user_id: str
    amount: pb.Money
    status: str
    """`CHARGED`, `REFUNDED`, or `VOIDED` (no payment: the order may not be charged)."""
    transaction_id: str
    card_type: str
    card_last_four: str
    charged_at_ns: int
    refunded_at_ns: int | None = None
    refund_reason: str = ""


_COLUMNS = (
    "id, order_id, user_id, currency_code, amount_units, amount_nanos, status, transaction_id,"
    " card_type, card_last_four, charged_at_ns, refunded_at_ns, refund_reason"
)


def _payment(row: tuple[object, ...]) -> Payment:
    refunded = row[11]
    return Payment(
        id=str(row[0]),
        order_id=str(row[1]),
        user_id=str(row[2]),
        amount=pb.Money(currency_code=str(row[3]), units=int(str(row[4])), nanos=int(str(row[5]))),
        status=str(row[6]),
        transaction_id=str(row[7]),
        card_type=str(row[8]),
        card_last_four=str(row[9]),
        charged_at_ns=int(str(row[10])),
        refunded_at_ns=None if refunded is None else int(str(refunded)),
        refund_reason=str(row[12]),
    )


class LedgerStore:
    """Payments in the table ``<prefix>payments`` of ``db``, its schema version in
    ``<prefix>payment_schema``; events written to ``outbox``, an outbox of the same
    database (tests sharing a database give each store a prefix and an outbox table)."""

    name = "payment-store"

    def __init__(self, db: Database, outbox: Outbox, prefix: str = "") -> None:
        prefix = table_prefix(prefix)
        self.db = db
        self.outbox = outbox
        self.table = f"{prefix}payments"
        self.schema_table = f"{prefix}payment_schema"

    async def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION` and make the outbox; the version it was at."""
        tables = {"p": self.table}
        before = await apply_migrations(
            self.db, self.schema_table, MIGRATIONS, tables, "payment", newest=SCHEMA_VERSION
        )
        await self.outbox.setup()
        return before

    async def _find(self, tx: Transaction | Database, order_id: str) -> Payment | None:
        rows = await tx.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE order_id = %s", (order_id,)
        )
        return _payment(rows[0]) if rows else None

    async def charge(self, payment: Payment) -> tuple[Payment, bool]:
        """Record ``payment`` and its PaymentCompleted event, unless its order already has a
        payment (or is `VOIDED`); the order's payment, and whether it is this one (False:
        the one found)."""
        p, amount = payment, payment.amount
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"INSERT INTO {self.table} ({_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (order_id) DO NOTHING RETURNING id",
                (
                    p.id,
                    p.order_id,
                    p.user_id,
                    amount.currency_code,
                    amount.units,
                    amount.nanos,
                    p.status,
                    p.transaction_id,
                    p.card_type,
                    p.card_last_four,
                    p.charged_at_ns,
                    p.refunded_at_ns,
                    p.refund_reason,
                ),
            )
            if not rows:
                found = await self._find(tx, p.order_id)
                if found is None:  # pragma: no cover - the conflicting row cannot vanish
                    raise RuntimeError(f"payment of order {p.order_id} conflicts but is absent")
                return found, False
            completed = ev.PaymentCompleted(payment_id=p.id, order_id=p.order_id, amount=amount)
            await self.outbox.add(tx, PAYMENT_COMPLETED, completed)
        return payment, True

    async def refund(self, order_id: str, reason: str, at_ns: int) -> tuple[Payment | None, bool]:
        """Mark the order's payment refunded at ``at_ns`` with its PaymentRefunded event,
        unless it already is; the payment (None: the order has none, and is voided now)
        and whether this call refunded it."""
        async with self.db.transaction() as tx:
            refunded = await self._refund(tx, order_id, reason, at_ns)
            if refunded is not None:
                return refunded, True
            rows = await tx.execute(
                f"INSERT INTO {self.table} ({_COLUMNS})"
                " VALUES (%s, %s, '', '', 0, 0, %s, '', '', '', %s, %s, %s)"
                " ON CONFLICT (order_id) DO NOTHING RETURNING id",
                (str(uuid.uuid4()), order_id, VOIDED, at_ns, at_ns, reason),
            )
            if rows:
                return None, False
            # a charge of the order was committed since the update: refund it
            refunded = await self._refund(tx, order_id, reason, at_ns)
            if refunded is not None:
                return refunded, True
            found = await self._find(tx, order_id)
        return (None if found is None or found.status == VOIDED else found), False

    async def _refund(
        self, tx: Transaction, order_id: str, reason: str, at_ns: int
    ) -> Payment | None:
        """Refund the order's charged payment with its event in ``tx``; None if there is
        no charged payment."""
        rows = await tx.execute(
            f"UPDATE {self.table} SET status = %s, refunded_at_ns = %s, refund_reason = %s"
            f" WHERE order_id = %s AND status = %s RETURNING {_COLUMNS}",
            (REFUNDED, at_ns, reason, order_id, CHARGED),
        )
        if not rows:
            return None
        payment = _payment(rows[0])
        refunded = ev.PaymentRefunded(
            payment_id=payment.id, order_id=order_id, amount=payment.amount, reason=reason
        )
        await self.outbox.add(tx, PAYMENT_REFUNDED, refunded)
        return payment

    async def get(self, order_id: str) -> Payment | None:
        """The payment of order ``order_id`` (perhaps `VOIDED`), or None."""
        return await self._find(self.db, order_id)

    async def page(
        self, user_id: str, limit: int, after: Cursor | None = None
    ) -> tuple[list[Payment], Cursor | None]:
        """Up to ``limit`` of the user's payments, newest first, after ``after``; and the
        cursor of the next page (None: no more)."""
        where, params = "user_id = %s AND status <> %s", list[object]([user_id, VOIDED])
        if after is not None:
            where += " AND (charged_at_ns < %s OR (charged_at_ns = %s AND id < %s))"
            params += [after.at_ns, after.at_ns, after.id]
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE {where}"
            " ORDER BY charged_at_ns DESC, id DESC LIMIT %s",
            (*params, limit + 1),
        )
        found = [_payment(row) for row in rows[:limit]]
        more = len(rows) > limit
        return found, (Cursor(found[-1].charged_at_ns, found[-1].id) if more else None)

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()

    async def drop(self) -> None:
        """Drop the tables and the outbox (for tests that made their own)."""
        await self.db.execute(f"DROP TABLE IF EXISTS {self.table}")
        await self.db.execute(f"DROP TABLE IF EXISTS {self.schema_table}")
        await self.outbox.drop()
