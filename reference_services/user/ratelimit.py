"""A token bucket per key (a peer's address): how many registrations it may still make."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimit:
    """Each key may act ``burst`` times at once, then once every ``period / burst`` seconds.

    The bucket of a key holds up to ``burst`` tokens and refills continuously,
    ``burst`` tokens per ``period``; each action takes one. Kept in memory,
    bounded: at most ``max_keys`` keys are remembered (the least recently seen
    forgotten first, which at worst hands a forgotten key a full bucket again).
    Each replica of the service counts on its own.
    """

    def __init__(
        self,
        burst: int,
        period: float = 3600.0,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or period <= 0:
            raise ValueError("a rate limit needs burst >= 1 and period > 0")
        self.burst = burst
        self.rate = burst / period  # tokens per second
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str) -> float:
        """Take one token of ``key``: 0 when it had one, else the seconds until it has."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # most recent last
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
