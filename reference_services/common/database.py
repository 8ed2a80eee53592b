"""The SQL databases behind the durable stores: SQLite (default) and PostgreSQL.

Both take SQL written with ``%s`` placeholders and standard upserts, so one
store class serves both. ``execute`` runs one statement in its own transaction;
``async with db.transaction() as tx:`` runs several in one (committed when the
block ends, rolled back when it raises), e.g. a change and the event it causes
(reference_services/common/events). Any failure to reach the database becomes
:class:`StoreUnavailable` with a message naming the database (never its
password).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg

Row = tuple[Any, ...]
Params = Sequence[Any]


class StoreUnavailable(Exception):
    """The store cannot be reached or cannot answer now."""


class Transaction(Protocol):
    """Statements run in one database transaction (see :meth:`Database.transaction`)."""

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one statement in the transaction; the rows it returns, if any."""
        ...


class Database(Protocol):
    """What a store needs from a SQL database."""

    @property
    def where(self) -> str:
        """A human description of the database, without secrets."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one statement in its own transaction; the rows it returns, if any."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with db.transaction() as tx:``: ``tx.execute`` statements commit together
        when the block ends, and none of them when it raises."""
        ...

    async def ping(self) -> None:
        """Return when the database answers, raise otherwise."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class SQLite:
    """A SQLite file used from a worker thread (WAL journal, full sync on commit)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # one connection: a transaction holds it from BEGIN to COMMIT, other statements wait
        self._turn = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    @property
    def where(self) -> str:
        return f"sqlite file {self.path}"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: Params) -> list[Row]:
        with self._lock:
            try:
                conn = self._connection()
                cursor = conn.execute(sql.replace("%s", "?"), tuple(params))
                return [tuple(row) for row in cursor.fetchall()]
            except (sqlite3.OperationalError, OSError) as exc:
                raise StoreUnavailable(f"{self.where}: {exc}") from exc

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._turn:
            return await asyncio.to_thread(self._run, sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._turn:
            # IMMEDIATE: take the write lock now, so that no other writer fails the commit
            await asyncio.to_thread(self._run, "BEGIN IMMEDIATE", ())
            try:
                yield _SQLiteTransaction(self)
                await asyncio.to_thread(self._run, "COMMIT", ())
            except BaseException:
                await asyncio.to_thread(self._rollback)
                raise

    def _rollback(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.rollback()

    async def ping(self) -> None:
        await self.execute("SELECT 1")

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class _SQLiteTransaction:
    def __init__(self, db: SQLite) -> None:
        self.db = db

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        return await asyncio.to_thread(self.db._run, sql, params)


class Postgres:
    """A PostgreSQL database over one psycopg async connection, reconnected when lost."""

    def __init__(self, url: str, *, connect_timeout: float = 3.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return f"postgresql database {redact(self.url)}"

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            try:
                return await _run(await self._connection(), sql, params)
            except psycopg.OperationalError as exc:
                raise await self._unavailable(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.transaction():
                    yield _PostgresTransaction(conn)
            except psycopg.OperationalError as exc:
                raise await self._unavailable(exc) from exc

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        return self._conn

    async def _unavailable(self, exc: psycopg.OperationalError) -> StoreUnavailable:
        await self._drop()
        reason = " ".join(str(exc).split())
        return StoreUnavailable(f"{self.where} is unreachable: {reason}")

    async def _drop(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None

    async def ping(self) -> None:
        await self.execute("SELECT 1")

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


async def _run(conn: psycopg.AsyncConnection[Any], sql: str, params: Params) -> list[Row]:
    cursor = await conn.execute(sql, tuple(params))
    return list(await cursor.fetchall()) if cursor.description else []


class _PostgresTransaction:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        return await _run(self.conn, sql, params)


def table_prefix(prefix: str) -> str:
    """``prefix`` if a store's table names may begin with it: empty, or ASCII letters, digits
    and underscores (it goes into SQL unquoted); ValueError otherwise."""
    # ASCII only: str.isalnum also takes other scripts' letters and digits such as "²"
    if prefix and not (prefix.isascii() and prefix.replace("_", "").isalnum()):
        raise ValueError(f"table prefix {prefix!r} must be ASCII letters, digits and underscores")
    return prefix


class SQLTable:
    """A store kept in one SQL table, created on first use from ``schema``.

    Subclasses set ``name`` (the health pinger's name) and ``schema`` (the
    column definitions) and call ``_setup()`` before each statement.
    """

    name: str
    schema: str

    def __init__(self, db: Database, table: str) -> None:
        if not (table.isascii() and table.replace("_", "").isalnum()):
            raise ValueError(f"table name {table!r} must be ASCII letters, digits and underscores")
        self.db = db
        self.table = table
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({self.schema})")
            self._ready = True

    async def drop(self) -> None:
        """Drop the table (for tests that made their own)."""
        await self.db.execute(f"DROP TABLE IF EXISTS {self.table}")
        self._ready = False

    async def ping(self) -> None:
        """Return when the database answers."""
        await self.db.ping()

    async def close(self) -> None:
        """Release the connection."""
        await self.db.close()


def open_database(url: str) -> SQLite | Postgres:
    """The database named by ``url``: ``sqlite:///relative.db``, ``sqlite:////abs.db``
    or ``postgresql://...``; ValueError for anything else."""
    if url.startswith("sqlite:///"):
        return SQLite(_sqlite_path(url))
    if url.startswith(("postgresql://", "postgres://")):
        return Postgres(url)
    raise ValueError(f"unsupported database URL {redact(url)!r} (sqlite:/// or postgresql://)")


def _sqlite_path(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    if not path:
        raise ValueError("sqlite URL needs a file path, e.g. sqlite:///var/cart.db")
    return path
