"""Settling the sagas a checkout process left unfinished (it was killed, or a step and
its compensation both failed).

A checkout process beats in the order database every third of the lease
while it runs. At start, then every ``interval`` seconds (sooner while some
unfinished saga waits for its owner's lease to run out), recovery takes the
orphans (`SagaLog.orphans`: unfinished, untouched for a moment, their owner
silent for a lease or this very process with no task running them), claims
each (so that two replicas never resume the same one) and resumes it
(`Saga.resume`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from clue import log
from reference_services.checkout.saga import Saga
from reference_services.common.config import env_float
from reference_services.common.database import StoreUnavailable

SETTLED_FOR = 1.0
"""Seconds a saga must have been untouched before recovery takes it (a moment)."""


@dataclass(frozen=True)
class Timing:
    """How often recovery runs and how long a silent process keeps its sagas."""

    interval: float = 10.0
    lease: float = 3.0

    @classmethod
    def from_env(cls) -> Timing:
        """``CHECKOUT_RECOVERY_INTERVAL_S`` (default 10) and ``CHECKOUT_SAGA_LEASE_S``
        (default 3: a process silent that long is taken for dead)."""
        return cls(
            interval=env_float("CHECKOUT_RECOVERY_INTERVAL_S", 10.0, minimum=0.1, maximum=3600),
            lease=env_float("CHECKOUT_SAGA_LEASE_S", 3.0, minimum=0.3, maximum=600),
        )


class Recovery:
    """The heartbeat and the recovery passes of one checkout process, as tasks."""

    def __init__(self, saga: Saga, timing: Timing) -> None:
        self.saga = saga
        self.timing = timing
        self._tasks: list[asyncio.Task[None]] = []

    async def run_once(self) -> int:
        """Resume every orphan now; how many unfinished sagas are left that this process
        does not run (waiting for their owner's lease, or failing again)."""
        log_ = self.saga.log
        for orphan in await log_.orphans(SETTLED_FOR, self.timing.lease):
            if orphan.order_id in self.saga.running or not await log_.claim(orphan):
                continue
            try:
                await self.saga.resume(orphan)
            except Exception as exc:  # a partner is down: the next pass tries again
                log.warn("saga not settled yet", order_id=orphan.order_id, error=str(exc))
        left = await log_.unfinished()
        return sum(1 for s in left if s.order_id not in self.saga.running)

    async def _recover(self) -> None:
        while True:
            wait = self.timing.interval
            try:
                if await self.run_once():
                    wait = min(wait, self.timing.lease / 3)
            except StoreUnavailable as exc:
                log.warn("saga recovery cannot read the order store", error=str(exc))
            await asyncio.sleep(wait)

    async def _beat(self) -> None:
        while True:
            try:
                await self.saga.log.beat()
            except StoreUnavailable as exc:
                log.warn("checkout heartbeat not written", error=str(exc))
            await asyncio.sleep(self.timing.lease / 3)

    def start(self) -> None:
        """Beat and recover in tasks of the running loop."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._beat(), name="saga-heartbeat"),
                asyncio.create_task(self._recover(), name="saga-recovery"),
            ]

    async def stop(self) -> None:
        """Stop both tasks and say this process is gone (its sagas become orphans now)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.saga.log.forget_beat()
        except StoreUnavailable as exc:  # its lease runs out instead, a little later
            log.warn("checkout heartbeat not forgotten at stop", error=str(exc))
