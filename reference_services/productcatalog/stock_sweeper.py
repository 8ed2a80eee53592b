"""The inventory's background task: expired reservations marked, low products restocked
by the simulated supplier, long-ended reservations forgotten.

Availability never waits for it (a reservation past its time stops holding stock
when it is read); what it adds is the expiry seen in the reservation's state and the
low-stock flag cleared, and, because the demo's load generator runs for ever, a
supplier that brings a product that has been low for ``restock_s`` back to its
initial stock, so that nothing stays sold out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from opentelemetry import metrics

from clue import log
from reference_services.common.events import Relay
from reference_services.productcatalog.stock_store import StockStore

KEEP_ENDED_S = 7 * 24 * 3600.0
"""How long a committed, released or expired reservation is kept (a cancelled order
restocks through its committed reservation: far longer than the cancel window)."""
FORGET_EVERY_S = 600.0
RESTOCKS = metrics.get_meter("reference_services.productcatalog").create_counter(
    "boutique.inventory.restocks",
    unit="{restock}",
    description="Products the simulated supplier restocked, by product_id",
)


def sweep_interval(ttl_s: float, restock_s: float) -> float:
    """Seconds between sweeps: a quarter of the shortest delay it serves, 0.05 to 1 s."""
    shortest = min(ttl_s, restock_s) if restock_s > 0 else ttl_s
    return min(1.0, max(0.05, shortest / 4))


class StockSweeper:
    """Runs `StockStore.expire`, `StockStore.restock` (when ``restock_s`` > 0) and
    `StockStore.forget` in a task of the running loop until stopped."""

    def __init__(
        self,
        store: StockStore,
        *,
        ttl_s: float,
        restock_s: float,
        relay: Relay | None = None,
    ) -> None:
        self.store = store
        self.restock_s = restock_s
        self.relay = relay
        self.interval = sweep_interval(ttl_s, restock_s)
        self._task: asyncio.Task[None] | None = None
        self._forgotten_at = 0.0

    async def sweep(self) -> None:
        """One round: expire, restock, and now and then forget."""
        expired = await self.store.expire()
        restocked = await self.store.restock(int(self.restock_s * 1e9)) if self.restock_s else []
        for product_id in restocked:
            RESTOCKS.add(1, {"product_id": product_id})
            log.info("supplier restocked a low product", product_id=product_id)
        if (expired or restocked) and self.relay is not None:
            self.relay.wake()  # a product may have crossed the low level
        now = time.monotonic()
        if now - self._forgotten_at >= FORGET_EVERY_S:
            self._forgotten_at = now
            await self.store.forget(time.time_ns() - int(KEEP_ENDED_S * 1e9))

    async def run(self) -> None:
        """Sweep every ``interval`` seconds; a failing round (store down) is logged once."""
        failing = False
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                if not failing:
                    log.warn("stock sweep failed, retrying", error=str(exc) or repr(exc))
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Run in a task of the current event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="stock-sweeper")

    async def stop(self) -> None:
        """Stop the task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
