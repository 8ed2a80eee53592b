"""A token bucket per key (a peer's address): how many registrations it may still make.

The buckets live in the user store's ``registration_buckets`` table, so that every
replica of the service takes from the same one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reference_services.user.store import UserStore


class RateLimit:
    """Each key may act ``burst`` times at once, then once every ``period / burst`` seconds.

    The bucket of a key holds up to ``burst`` tokens and refills continuously,
    ``burst`` tokens per ``period``; each action takes one. A bucket is kept as the
    time it is full again (``tat_ms``: ``burst`` tokens short of it are spent),
    so that one upsert refills, takes and answers at once; a row whose time has
    passed is a full bucket, and is swept. ``clock`` is wall-clock seconds, the time
    every replica shares.
    """

    def __init__(
        self,
        store: UserStore,
        burst: int,
        period: float = 3600.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if burst < 1 or period <= 0:
            raise ValueError("a rate limit needs burst >= 1 and period > 0")
        self.db = store.db
        self.table = store.buckets
        self.burst = burst
        self.period_ms = period * 1000
        self.clock = clock
        self._next_sweep = 0

    async def take(self, key: str) -> float:
        """Take one token of ``key``: 0 when it had one, else the seconds until it has."""
        now = round(self.clock() * 1000)
        every = round(self.period_ms / self.burst)  # ms per token
        # a token is there when the bucket is full again no later than this
        last = now + round(self.period_ms) - every
        t = self.table
        rows = await self.db.execute(
            f"INSERT INTO {t} (key, tat_ms, granted) VALUES (%s, %s, 1)"
            f" ON CONFLICT (key) DO UPDATE SET"
            f" granted = CASE WHEN {t}.tat_ms <= %s THEN 1 ELSE 0 END,"
            f" tat_ms = CASE WHEN {t}.tat_ms > %s THEN {t}.tat_ms"  # refused: as it was
            f" WHEN {t}.tat_ms > %s THEN {t}.tat_ms + %s ELSE %s END"
            " RETURNING tat_ms, granted",
            (key, now + every, last, last, now, every, now + every),
        )
        await self._sweep(now)
        tat, granted = int(rows[0][0]), int(rows[0][1])
        return 0.0 if granted else (tat - last) / 1000

    async def _sweep(self, now: int) -> None:
        """Delete the full buckets, at most once a minute per process."""
        if now >= self._next_sweep:
            self._next_sweep = now + 60_000
            await self.db.execute(f"DELETE FROM {self.table} WHERE tat_ms <= %s", (now,))
