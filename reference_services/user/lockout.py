"""Locking out a key (an e-mail, a peer) after too many failed logins in a window.

The counts live in the user store's ``login_guards`` table, so that every replica of
the service sees the failures the others counted. One row per key: its recent failures
(Unix milliseconds, oldest first), the time it stays locked until, and the time the
row stops meaning anything (swept then).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reference_services.user.store import UserStore


class Lockout:
    """``limit`` failures of one key within ``window`` seconds lock it for ``duration``.

    Each failure is counted in one transaction that first locks the key's row (an
    upsert: PostgreSQL holds the row until the commit, SQLite the whole database), so
    two replicas counting at once cannot both miss the limit. ``clock`` is wall-clock
    seconds, the time every replica shares.
    """

    def __init__(
        self,
        store: UserStore,
        limit: int = 5,
        window: float = 60.0,
        duration: float = 60.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = store.db
        self.table = store.guards
        self.limit = limit
        self.window_ms = round(window * 1000)
        self.duration_ms = round(duration * 1000)
        self.clock = clock
        self._next_sweep = 0

    def _now(self) -> int:
        return round(self.clock() * 1000)

    async def locked_for(self, *keys: str) -> float:
        """Seconds the longest lockout of ``keys`` lasts; 0 when none is locked out."""
        marks = ", ".join(["%s"] * len(keys))
        rows = await self.db.execute(
            f"SELECT max(locked_until_ms) FROM {self.table} WHERE key IN ({marks})", keys
        )
        until = rows[0][0] if rows and rows[0][0] is not None else 0
        return max(0, int(until) - self._now()) / 1000

    async def fail(self, *keys: str) -> bool:
        """Count a failure of each of ``keys``; whether one of them is now locked out."""
        now = self._now()
        keys = tuple(sorted(set(keys)))  # rows locked in one order: no deadlock between two
        values = ", ".join(["(%s, '', 0, 0)"] * len(keys))
        locked = False
        async with self.db.transaction() as tx:
            rows = await tx.execute(
                f"INSERT INTO {self.table} (key, failures, locked_until_ms, expires_ms)"
                f" VALUES {values} ON CONFLICT (key) DO UPDATE"
                f" SET failures = {self.table}.failures"
                " RETURNING key, failures, locked_until_ms",
                keys,
            )
            for key, failures, locked_until in rows:
                recent = [int(at) for at in str(failures).split() if now - int(at) < self.window_ms]
                recent.append(now)
                until = int(locked_until)
                if len(recent) >= self.limit:
                    until, recent, locked = now + self.duration_ms, [], True
                else:
                    recent = recent[-(self.limit - 1) :]  # all the next failure may count with
                expires = max(until, recent[-1] + self.window_ms if recent else 0)
                await tx.execute(
                    f"UPDATE {self.table} SET failures = %s, locked_until_ms = %s,"
                    " expires_ms = %s WHERE key = %s",
                    (" ".join(map(str, recent)), until, expires, key),
                )
        await self._sweep(now)
        return locked

    async def forget(self, key: str) -> None:
        """Drop ``key``'s failures (a successful login); a lockout stays."""
        await self.db.execute(
            f"DELETE FROM {self.table} WHERE key = %s AND locked_until_ms <= %s",
            (key, self._now()),
        )

    async def _sweep(self, now: int) -> None:
        """Delete the rows past their time, at most once a window per process."""
        if now >= self._next_sweep:
            self._next_sweep = now + self.window_ms
            await self.db.execute(f"DELETE FROM {self.table} WHERE expires_ms <= %s", (now,))
