"""Cart stores: SQL (SQLite or PostgreSQL) and Redis, chosen by URL.

A store is also a health pinger (``name`` and ``ping()``). Every failure to
reach the backend raises `StoreUnavailable`.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as aioredis
import redis.exceptions

from reference_services.common.database import (
    Database,
    SQLTable,
    StoreUnavailable,
    open_database,
    redact,
)
from reference_services.common.fields import MAX_LINES, MAX_QUANTITY
from reference_services.common.rpc import quote


class LineFull(Exception):
    """Adding would put more than `MAX_QUANTITY` units of a product in a cart."""

    def __init__(self, product_id: str) -> None:
        super().__init__(f"a cart holds at most {MAX_QUANTITY} of product {quote(product_id)}")


class CartFull(Exception):
    """Adding a new product would put more than `MAX_LINES` lines in a cart."""

    def __init__(self) -> None:
        super().__init__(f"a cart holds at most {MAX_LINES} different products")


class CartStore(Protocol):
    """Where carts live."""

    name: str

    async def add(self, user_id: str, product_id: str, quantity: int) -> int:
        """Add ``quantity`` units; the product's new quantity. LineFull or CartFull
        change nothing."""
        ...

    async def get(self, user_id: str) -> list[tuple[str, int]]:
        """The cart's ``(product_id, quantity)`` lines, oldest first; empty if unknown."""
        ...

    async def empty(self, user_id: str) -> None:
        """Remove every line of the cart."""
        ...

    async def ping(self) -> None:
        """Return when the backend answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class SQLCartStore(SQLTable):
    """Carts in a SQL table ``<table>`` (one row per cart line)."""

    name = "cart-store"
    schema = (
        "user_id TEXT NOT NULL, product_id TEXT NOT NULL,"
        " quantity INTEGER NOT NULL, added_at_ns BIGINT NOT NULL,"
        " PRIMARY KEY (user_id, product_id)"
    )

    def __init__(self, db: Database, table: str = "cart_items") -> None:
        super().__init__(db, table)

    async def add(self, user_id: str, product_id: str, quantity: int) -> int:
        await self._setup()
        # one statement: a new line only while the cart's other lines are fewer than
        # MAX_LINES, an existing line only while its quantity stays within MAX_QUANTITY
        rows = await self.db.execute(
            f"INSERT INTO {self.table} AS t (user_id, product_id, quantity, added_at_ns)"
            " SELECT %s, %s, %s, %s"
            f" WHERE (SELECT count(*) FROM {self.table}"
            " WHERE user_id = %s AND product_id <> %s) < %s"
            " ON CONFLICT (user_id, product_id) DO UPDATE"
            " SET quantity = t.quantity + excluded.quantity"
            " WHERE t.quantity + excluded.quantity <= %s"
            " RETURNING quantity",
            (
                *(user_id, product_id, quantity, time.time_ns()),
                *(user_id, product_id, MAX_LINES, MAX_QUANTITY),
            ),
        )
        if rows:
            return int(rows[0][0])
        line = await self.db.execute(
            f"SELECT 1 FROM {self.table} WHERE user_id = %s AND product_id = %s",
            (user_id, product_id),
        )
        raise LineFull(product_id) if line else CartFull()

    async def get(self, user_id: str) -> list[tuple[str, int]]:
        await self._setup()
        rows = await self.db.execute(
            f"SELECT product_id, quantity FROM {self.table}"
            " WHERE user_id = %s ORDER BY added_at_ns, product_id",
            (user_id,),
        )
        return [(str(p), int(q)) for p, q in rows]

    async def empty(self, user_id: str) -> None:
        await self._setup()
        await self.db.execute(f"DELETE FROM {self.table} WHERE user_id = %s", (user_id,))


_ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
  and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return -2
end
local q = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if q > tonumber(ARGV[3]) then
  q = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
  if q == 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
  return -1
end
return q
"""


class RedisCartStore:
    """Carts as Redis hashes ``<prefix><user_id>``: product id to quantity."""

    name = "cart-store"

    def __init__(self, url: str, prefix: str = "boutique:cart:", timeout: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.client = aioredis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True
        )
        self._add = self.client.register_script(_ADD)

    def _unreachable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"redis {redact(self.url)} is unreachable: {exc}")

    async def add(self, user_id: str, product_id: str, quantity: int) -> int:
        try:
            result = int(
                await self._add(
                    keys=[self.prefix + user_id],
                    args=[product_id, quantity, MAX_QUANTITY, MAX_LINES],
                )
            )
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        if result == -2:
            raise CartFull()
        if result < 0:
            raise LineFull(product_id)
        return result

    async def get(self, user_id: str) -> list[tuple[str, int]]:
        try:
            lines = await self.client.hgetall(self.prefix + user_id)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        return [(str(p), int(q)) for p, q in lines.items()]

    async def empty(self, user_id: str) -> None:
        try:
            await self.client.delete(self.prefix + user_id)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise self._unreachable(exc) from exc

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise self._unreachable(exc) from exc

    async def close(self) -> None:
        await self.client.aclose()


def open_cart_store(url: str) -> SQLCartStore | RedisCartStore:
    """The store named by ``url``: ``sqlite:///...``, ``postgresql://...`` or ``redis://...``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCartStore(url)
    return SQLCartStore(open_database(url))


__all__ = ["CartFull", "CartStore", "LineFull", "StoreUnavailable", "open_cart_store"]
