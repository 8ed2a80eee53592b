"""The shipping service's own database: shipments and when the courier next moves each.

The schema is versioned: `ShipmentStore.migrate` (run at start) applies the
steps of `MIGRATIONS` past the version recorded in ``shipment_schema``. Every
step may be run again safely, so a start interrupted mid-step just redoes it.
A shipment's next courier move is stored with it (``due_ns``), so a restarted
process carries on where the last one stopped. Each move is written with its
event, in one transaction, through the outbox. The store is also the service's
health pinger for its database.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_services.common.database import Database, table_prefix
from reference_services.common.events import SHIPMENT_DELIVERED, SHIPMENT_PICKED_UP, Outbox
from reference_services.common.migrations import apply_migrations
from reference_services.protos.boutique.v1 import events_pb2 as ev

LABEL_CREATED = "LABEL_CREATED"
PICKED_UP = "PICKED_UP"
DELIVERED = "DELIVERED"
VOIDED = "VOIDED"

#: version -> the statements that bring the schema from the previous version to it.
#: ``{s}`` is the shipments table's name. ``due_ns`` is when the courier moves the
#: shipment next (NULL once delivered or voided); ``trace_context`` the W3C trace
#: context (JSON headers) of the call that created it, which the courier's moves continue.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS {s} ("
        " tracking_id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,"
        " created_at_ns BIGINT NOT NULL, picked_up_at_ns BIGINT, delivered_at_ns BIGINT,"
        " voided_at_ns BIGINT, due_ns BIGINT, trace_context TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {s}_due ON {s} (due_ns) WHERE due_ns IS NOT NULL",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass(frozen=True)
class Shipment:
    """A shipment as stored."""

    tracking_id: str
    order_id: str
    status: str
    created_at_ns: int
    picked_up_at_ns: int | None
    delivered_at_ns: int | None
    voided_at_ns: int | None
    due_ns: int | None
    trace_context: str


class PickedUp(Exception):
    """The shipment is with the courier (or delivered): too late to void it."""

    def __init__(self, shipment: Shipment) -> None:
        super().__init__(shipment.tracking_id)
        self.shipment = shipment


_COLUMNS = (
    "tracking_id, order_id, status, created_at_ns, picked_up_at_ns, delivered_at_ns,"
    " voided_at_ns, due_ns, trace_context"
)


def _optional(value: object) -> int | None:
    return None if value is None else int(str(value))


def _shipment(row: tuple[object, ...]) -> Shipment:
    return Shipment(
        tracking_id=str(row[0]),
        order_id=str(row[1]),
        status=str(row[2]),
        created_at_ns=int(str(row[3])),
        picked_up_at_ns=_optional(row[4]),
        delivered_at_ns=_optional(row[5]),
        voided_at_ns=_optional(row[6]),
        due_ns=_optional(row[7]),
        trace_context=str(row[8]),
    )


class ShipmentStore:
    """Shipments in the table ``<prefix>shipments`` of ``db``, its schema version in
    ``<prefix>shipment_schema`` (tests sharing a database give each store a prefix)."""

    name = "shipment-store"

    def __init__(self, db: Database, prefix: str = "") -> None:
        prefix = table_prefix(prefix)
        self.db = db
        self.table = f"{prefix}shipments"
        self.schema_table = f"{prefix}shipment_schema"

    async def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; the version it was at before."""
        tables = {"s": self.table}
        return await apply_migrations(
            self.db, self.schema_table, MIGRATIONS, tables, "shipment", newest=SCHEMA_VERSION
        )

    async def create(
        self, order_id: str, tracking_id: str, now_ns: int, pickup_ns: int, trace_context: str
    ) -> tuple[Shipment, bool]:
        """The shipment of ``order_id``: a new one, LABEL_CREATED with ``tracking_id`` and
        its pickup due at ``pickup_ns``, unless the order has one already (then that one,
        unchanged); and whether it is new."""
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"INSERT INTO {self.table} ({_COLUMNS})"
                " VALUES (%s, %s, %s, %s, NULL, NULL, NULL, %s, %s)"
                f" ON CONFLICT (order_id) DO NOTHING RETURNING {_COLUMNS}",
                (tracking_id, order_id, LABEL_CREATED, now_ns, pickup_ns, trace_context),
            )
            if rows:
                return _shipment(rows[0]), True
            rows = await tx.execute(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE order_id = %s", (order_id,)
            )
        return _shipment(rows[0]), False

    async def get(self, tracking_id: str) -> Shipment | None:
        """The shipment ``tracking_id``, or None."""
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE tracking_id = %s", (tracking_id,)
        )
        return _shipment(rows[0]) if rows else None

    async def for_order(self, order_id: str) -> Shipment | None:
        """The shipment of order ``order_id``, or None."""
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE order_id = %s", (order_id,)
        )
        return _shipment(rows[0]) if rows else None

    async def void(self, tracking_id: str, now_ns: int) -> Shipment | None:
        """Void the shipment unless the courier has it: the shipment (as it was if voided
        already), None for an unknown tracking id, PickedUp once it was picked up."""
        async with self.db.transaction() as tx:
            # conditional on the status: the courier's move and a void cannot both win
            rows = await tx.execute(
                f"UPDATE {self.table} SET status = %s, voided_at_ns = %s, due_ns = NULL"
                f" WHERE tracking_id = %s AND status = %s RETURNING {_COLUMNS}",
                (VOIDED, now_ns, tracking_id, LABEL_CREATED),
            )
            if not rows:
                rows = await tx.execute(
                    f"SELECT {_COLUMNS} FROM {self.table} WHERE tracking_id = %s", (tracking_id,)
                )
        if not rows:
            return None
        shipment = _shipment(rows[0])
        if shipment.status in (PICKED_UP, DELIVERED):
            raise PickedUp(shipment)
        return shipment

    async def due(self, now_ns: int, limit: int = 100) -> list[Shipment]:
        """Up to ``limit`` shipments whose next move is due at ``now_ns``, earliest first."""
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE due_ns IS NOT NULL AND due_ns <= %s"
            " ORDER BY due_ns, tracking_id LIMIT %s",
            (now_ns, limit),
        )
        return [_shipment(row) for row in rows]

    async def next_due(self) -> int | None:
        """When the earliest move is due (ns since the epoch), None when none waits."""
        rows = await self.db.execute(
            f"SELECT MIN(due_ns) FROM {self.table} WHERE due_ns IS NOT NULL"
        )
        return _optional(rows[0][0]) if rows else None

    async def pick_up(
        self, shipment: Shipment, now_ns: int, delivery_ns: int, outbox: Outbox
    ) -> Shipment | None:
        """Mark a LABEL_CREATED shipment PICKED_UP at ``now_ns``, its delivery due at
        ``delivery_ns``, with its ShipmentPickedUp event in ``outbox`` in the same
        transaction; the shipment, None when it is no longer LABEL_CREATED (voided)."""
        event = ev.ShipmentPickedUp(order_id=shipment.order_id, tracking_id=shipment.tracking_id)
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"UPDATE {self.table} SET status = %s, picked_up_at_ns = %s, due_ns = %s"
                f" WHERE tracking_id = %s AND status = %s RETURNING {_COLUMNS}",
                (PICKED_UP, now_ns, delivery_ns, shipment.tracking_id, LABEL_CREATED),
            )
            if rows:
                await outbox.add(tx, SHIPMENT_PICKED_UP, event)
        return _shipment(rows[0]) if rows else None

    async def deliver(self, shipment: Shipment, now_ns: int, outbox: Outbox) -> Shipment | None:
        """Mark a PICKED_UP shipment DELIVERED at ``now_ns``, with its ShipmentDelivered
        event in ``outbox`` in the same transaction; the shipment, None when it is no
        longer PICKED_UP."""
        event = ev.ShipmentDelivered(order_id=shipment.order_id, tracking_id=shipment.tracking_id)
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"UPDATE {self.table} SET status = %s, delivered_at_ns = %s, due_ns = NULL"
                f" WHERE tracking_id = %s AND status = %s RETURNING {_COLUMNS}",
                (DELIVERED, now_ns, shipment.tracking_id, PICKED_UP),
            )
            if rows:
                await outbox.add(tx, SHIPMENT_DELIVERED, event)
        return _shipment(rows[0]) if rows else None

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()

    async def drop(self) -> None:
        """Drop both tables (for tests that made their own)."""
        await self.db.execute(f"DROP TABLE IF EXISTS {self.table}")
        await self.db.execute(f"DROP TABLE IF EXISTS {self.schema_table}")
