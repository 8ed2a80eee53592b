"""The user service's own database (SQLite or PostgreSQL): accounts and their password
hashes, and the counters every replica shares: failed logins (lockout.py) and
registrations per client (ratelimit.py).

The schema is versioned: `UserStore.migrate` (run at start) applies the steps of
`MIGRATIONS` past the version recorded in ``user_schema``. Every step may be run
again safely, so a start interrupted mid-step just redoes it. The store is also
the service's health pinger for its database.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_services.common.database import Database, table_prefix
from reference_services.common.events import USER_REGISTERED, Outbox
from reference_services.common.migrations import apply_migrations
from reference_services.common.timestamps import rfc3339_ms
from reference_services.protos.boutique.v1 import events_pb2 as ev

#: version -> the statements that bring the schema from the previous version to it.
#: ``{t}`` is the users table's name. ``email_key`` is the address lower-cased whole:
#: what makes it unique and what a login looks up. Version 2 adds ``{g}``, the failed
#: logins and lockout of each key (lockout.py), and ``{b}``, the registration bucket of
#: each client (ratelimit.py); times in Unix milliseconds, ``expires_ms``/``tat_ms`` indexed
#: for sweeping the rows that no longer mean anything.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS {t} ("
        " id TEXT PRIMARY KEY, email TEXT NOT NULL, email_key TEXT NOT NULL UNIQUE,"
        " name TEXT NOT NULL, password_hash TEXT NOT NULL, role TEXT NOT NULL,"
        " created_at_ns BIGINT NOT NULL)",
    ),
    2: (
        "CREATE TABLE IF NOT EXISTS {g} ("
        " key TEXT PRIMARY KEY, failures TEXT NOT NULL, locked_until_ms BIGINT NOT NULL,"
        " expires_ms BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {g}_expires ON {g} (expires_ms)",
        "CREATE TABLE IF NOT EXISTS {b} ("
        " key TEXT PRIMARY KEY, tat_ms BIGINT NOT NULL, granted INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {b}_tat ON {b} (tat_ms)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


class EmailTaken(Exception):
    """Another account has this e-mail address."""


@dataclass(frozen=True)
class User:
    """An account as stored, without its password hash."""

    id: str
    email: str
    name: str
    role: str
    created_at_ns: int

    @property
    def created_at(self) -> str:
        """``created_at_ns`` in RFC 3339, UTC, to the millisecond."""
        return rfc3339_ms(self.created_at_ns)


_COLUMNS = "id, email, name, role, created_at_ns"


def _user(row: tuple[object, ...]) -> User:
    return User(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(str(row[4])))


class UserStore:
    """Accounts in the table ``<prefix>users`` of ``db``, login guards in
    ``<prefix>login_guards``, registration buckets in ``<prefix>registration_buckets``,
    the schema version in ``<prefix>user_schema`` (tests sharing a database give each
    store a prefix)."""

    name = "user-store"

    def __init__(self, db: Database, prefix: str = "") -> None:
        prefix = table_prefix(prefix)
        self.db = db
        self.table = f"{prefix}users"
        self.guards = f"{prefix}login_guards"
        self.buckets = f"{prefix}registration_buckets"
        self.schema_table = f"{prefix}user_schema"

    async def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; the version it was at before."""
        tables = {"t": self.table, "g": self.guards, "b": self.buckets}
        return await apply_migrations(
            self.db, self.schema_table, MIGRATIONS, tables, "user", newest=SCHEMA_VERSION
        )

    async def create(
        self, user: User, email_key: str, password_hash: str, outbox: Outbox | None = None
    ) -> User:
        """Store a new account, and its UserRegistered event in ``outbox`` (an outbox of this
        store's database) in the same transaction; EmailTaken, writing neither, if
        ``email_key`` is another's."""
        columns = (user.id, user.email, email_key, user.name, password_hash, user.role)
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"INSERT INTO {self.table} (id, email, email_key, name, password_hash, role,"
                " created_at_ns) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (email_key) DO NOTHING RETURNING id",
                (*columns, user.created_at_ns),
            )
            if not rows:
                raise EmailTaken(user.email)
            if outbox is not None:
                registered = ev.UserRegistered(user_id=user.id, email=user.email, name=user.name)
                await outbox.add(tx, USER_REGISTERED, registered)
        return user

    async def get(self, user_id: str) -> User | None:
        """The account ``user_id``, or None."""
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE id = %s", (user_id,)
        )
        return _user(rows[0]) if rows else None

    async def credentials(self, email_key: str) -> tuple[User, str] | None:
        """The account with ``email_key`` and its password hash, or None."""
        rows = await self.db.execute(
            f"SELECT {_COLUMNS}, password_hash FROM {self.table} WHERE email_key = %s",
            (email_key,),
        )
        return (_user(rows[0][:5]), str(rows[0][5])) if rows else None

    async def rename(self, user_id: str, name: str) -> User | None:
        """Change the account's name; the account, None if there is none."""
        rows = await self.db.execute(
            f"UPDATE {self.table} SET name = %s WHERE id = %s RETURNING {_COLUMNS}",
            (name, user_id),
        )
        return _user(rows[0]) if rows else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the hash (when the hashing cost was raised)."""
        await self.db.execute(
            f"UPDATE {self.table} SET password_hash = %s WHERE id = %s", (password_hash, user_id)
        )

    async def delete(self, user_id: str) -> bool:
        """Remove the account; whether there was one."""
        rows = await self.db.execute(
            f"DELETE FROM {self.table} WHERE id = %s RETURNING id", (user_id,)
        )
        return bool(rows)

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()

    async def drop(self) -> None:
        """Drop its tables (for tests that made their own)."""
        for table in (self.table, self.guards, self.buckets):
            await self.db.execute(f"DROP TABLE IF EXISTS {table}")
        await self.db.execute(f"DROP TABLE IF EXISTS {self.schema_table}")
