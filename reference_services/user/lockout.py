"""Locking out a key (an e-mail, a peer) after too many failed logins in a window."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class Lockout:
    """``limit`` failures of one key within ``window`` seconds lock it for ``duration``.

    Kept in memory, bounded: at most ``max_keys`` keys are remembered (the least
    recently failed are forgotten first), so a flood of distinct keys cannot
    exhaust the process. Each replica of the service counts on its own.
    """

    def __init__(
        self,
        limit: int = 5,
        window: float = 60.0,
        duration: float = 60.0,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.duration = duration
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def locked_for(self, key: str) -> float:
        """Seconds ``key`` stays locked out; 0 when it is not."""
        until = self._locked_until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._locked_until[key]
            return 0.0
        return left

    def fail(self, key: str) -> bool:
        """Count a failure of ``key``; whether it is now locked out."""
        now = self.clock()
        failures = self._failures.pop(key, None) or deque(maxlen=self.limit)
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        failures.append(now)
        self._failures[key] = failures  # most recent last
        while len(self._failures) > self.max_keys:
            forgotten, _ = self._failures.popitem(last=False)
            self._locked_until.pop(forgotten, None)
        if len(failures) >= self.limit:
            self._locked_until[key] = now + self.duration
            failures.clear()
            return True
        return False

    def forget(self, key: str) -> None:
        """Drop ``key``'s failures (a successful login)."""
        self._failures.pop(key, None)
