"""The notification service's own database: what was sent to whom (SQLite or PostgreSQL).

The schema is versioned: `migrate` (run at start) applies the steps of
`MIGRATIONS` past the version recorded in ``notification_schema``. Every step
may be run again safely, so a start interrupted mid-step just redoes it.
The store is also the service's health pinger for its database.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_services.common.database import Database, Transaction, table_prefix
from reference_services.common.migrations import apply_migrations
from reference_services.common.pages import Cursor
from reference_services.common.timestamps import rfc3339_ms

#: version -> the statements that bring the schema from the previous version to it.
#: ``{n}`` is the notifications table's name, ``{r}`` the order recipients', ``{p}`` the
#: parked notifications'.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS {n} ("
        " id TEXT PRIMARY KEY, channel TEXT NOT NULL, template TEXT NOT NULL,"
        " subject TEXT NOT NULL, status TEXT NOT NULL, sent_at_ns BIGINT NOT NULL,"
        " order_id TEXT NOT NULL, user_id TEXT NOT NULL, email TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {n}_by_user ON {n} (user_id, sent_at_ns)",
        "CREATE INDEX IF NOT EXISTS {n}_by_email ON {n} (email, sent_at_ns)",
    ),
    # who each order belongs to (learnt from its OrderPlaced; email '' while unknown), and
    # the notifications of an order's later events that came before it (see `park`)
    2: (
        "CREATE TABLE IF NOT EXISTS {r} ("
        " order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, email TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {p} ("
        " id TEXT PRIMARY KEY, order_id TEXT NOT NULL, template TEXT NOT NULL,"
        " subject TEXT NOT NULL, parked_at_ns BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {p}_by_order ON {p} (order_id)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
RECIPIENTS = ("user_id", "email")
"""The columns a history is read by."""


@dataclass(frozen=True)
class Notification:
    """One notification as recorded: ``id`` is the event that caused it."""

    id: str
    channel: str
    template: str
    subject: str
    status: str
    sent_at_ns: int
    order_id: str
    user_id: str
    email: str

    @property
    def sent_at(self) -> str:
        """``sent_at_ns`` in RFC 3339, UTC, to the millisecond."""
        return rfc3339_ms(self.sent_at_ns)


_COLUMNS = "id, channel, template, subject, status, sent_at_ns, order_id, user_id, email"


class NotificationStore:
    """Notifications in the table ``<prefix>notifications`` of ``db``, its schema version
    in ``<prefix>notification_schema`` (tests sharing a database give each store a prefix)."""

    name = "notification-store"

    def __init__(self, db: Database, prefix: str = "") -> None:
        prefix = table_prefix(prefix)
        self.db = db
        self.table = f"{prefix}notifications"
        self.schema_table = f"{prefix}notification_schema"
        self.recipients_table = f"{prefix}order_recipients"
        self.parked_table = f"{prefix}parked_notifications"

    async def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; the version it was at before."""
        tables = {"n": self.table, "r": self.recipients_table, "p": self.parked_table}
        return await apply_migrations(
            self.db, self.schema_table, MIGRATIONS, tables, "notification", newest=SCHEMA_VERSION
        )

    async def record(self, notification: Notification, tx: Transaction | None = None) -> bool:
        """Write ``notification`` (in transaction ``tx`` if given) unless one with its id is
        there, but a ``sent`` one over a ``failed`` one (its dead letter replayed); whether
        it was written."""
        n = notification
        rows = await (tx or self.db).execute(
            f"INSERT INTO {self.table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " sent_at_ns = excluded.sent_at_ns"
            f" WHERE {self.table}.status = 'failed' AND excluded.status = 'sent' RETURNING id",
            (
                n.id,
                n.channel,
                n.template,
                n.subject,
                n.status,
                n.sent_at_ns,
                n.order_id,
                n.user_id,
                n.email,
            ),
        )
        return bool(rows)

    async def recipient(self, tx: Transaction, order_id: str) -> tuple[str, str] | None:
        """(user id, e-mail) of the order's customer, None while its OrderPlaced has not
        come; the order's row is locked until ``tx`` ends, so that `learn` waits for it."""
        rows = await tx.execute(
            f"INSERT INTO {self.recipients_table} (order_id, user_id, email) VALUES (%s, '', '')"
            " ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id"
            " RETURNING user_id, email",
            (order_id,),
        )
        user_id, email = str(rows[0][0]), str(rows[0][1])
        return (user_id, email) if email else None

    async def park(
        self, tx: Transaction, id_: str, order_id: str, template: str, subject: str, at_ns: int
    ) -> None:
        """Keep the notification of event ``id_`` until the order's customer is learnt
        (in ``tx``, after `recipient` said None)."""
        await tx.execute(
            f"INSERT INTO {self.parked_table} (id, order_id, template, subject, parked_at_ns)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (id_, order_id, template, subject, at_ns),
        )

    async def learn(
        self, tx: Transaction, order_id: str, user_id: str, email: str, at_ns: int
    ) -> list[Notification]:
        """Remember the order's customer (in ``tx``); the notifications parked for the order
        until now, recorded as sent to them at ``at_ns`` (the caller sends them)."""
        await tx.execute(
            f"INSERT INTO {self.recipients_table} (order_id, user_id, email) VALUES (%s, %s, %s)"
            " ON CONFLICT (order_id) DO UPDATE SET user_id = excluded.user_id,"
            " email = excluded.email",
            (order_id, user_id, email),
        )
        parked = await tx.execute(
            f"SELECT id, template, subject FROM {self.parked_table} WHERE order_id = %s"
            " ORDER BY parked_at_ns, id",
            (order_id,),
        )
        released = []
        for id_, template, subject in parked:
            notification = Notification(
                id=str(id_),
                channel="email",
                template=str(template),
                subject=str(subject),
                status="sent",
                sent_at_ns=at_ns,
                order_id=order_id,
                user_id=user_id,
                email=email,
            )
            if await self.record(notification, tx):
                released.append(notification)
        if parked:
            await tx.execute(f"DELETE FROM {self.parked_table} WHERE order_id = %s", (order_id,))
        return released

    async def get(self, id_: str) -> Notification | None:
        """The notification caused by event ``id_``, or None."""
        rows = await self.db.execute(f"SELECT {_COLUMNS} FROM {self.table} WHERE id = %s", (id_,))
        return _notification(rows[0]) if rows else None

    async def history(
        self, by: str, value: str, limit: int, after: Cursor | None = None
    ) -> tuple[list[Notification], Cursor | None]:
        """Up to ``limit`` notifications whose ``by`` column (`RECIPIENTS`) is ``value``,
        newest first, after ``after``; and the cursor of the next page (None: no more)."""
        if by not in RECIPIENTS:
            raise ValueError(f"history by {by!r}: one of {RECIPIENTS}")
        where, params = f"{by} = %s", list[object]([value])
        if after is not None:
            where += " AND (sent_at_ns < %s OR (sent_at_ns = %s AND id < %s))"
            params += [after.at_ns, after.at_ns, after.id]
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE {where}"
            " ORDER BY sent_at_ns DESC, id DESC LIMIT %s",
            (*params, limit + 1),
        )
        found = [_notification(row) for row in rows[:limit]]
        more = len(rows) > limit
        return found, (Cursor(found[-1].sent_at_ns, found[-1].id) if more else None)

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()

    async def drop(self) -> None:
        """Drop its tables (for tests that made their own)."""
        for table in (self.table, self.recipients_table, self.parked_table, self.schema_table):
            await self.db.execute(f"DROP TABLE IF EXISTS {table}")


def _notification(row: tuple[object, ...]) -> Notification:
    return Notification(
        id=str(row[0]),
        channel=str(row[1]),
        template=str(row[2]),
        subject=str(row[3]),
        status=str(row[4]),
        sent_at_ns=int(str(row[5])),
        order_id=str(row[6]),
        user_id=str(row[7]),
        email=str(row[8]),
    )
