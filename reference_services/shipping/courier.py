"""The simulated courier: picks each parcel up, then delivers it, after set delays.

It is driven from the store: each shipment holds when its next move is due, so
a restarted shipping process carries on where the last one stopped (a move
that came due while it was down happens at once). Each move is written with
its event through the outbox in one transaction, in a span that continues the
trace of the call that created the shipment: the viewer shows the order's
trace going on, the delay later, in the courier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from opentelemetry.context import Context

from clue import log, messaging
from clue.telemetry import tracer
from reference_services.common.events import Outbox, Relay
from reference_services.shipping.shipment_store import LABEL_CREATED, Shipment, ShipmentStore

PICKUP_DELAY = 30.0
"""Seconds from the label to the pickup (SHIPPING_PICKUP_DELAY_S)."""
DELIVERY_DELAY = 60.0
"""Seconds from the pickup to the delivery (SHIPPING_DELIVERY_DELAY_S)."""
MAX_SLEEP = 5.0
"""The longest wait between two looks at the store (another replica may add shipments)."""
MAX_BACKOFF = 5.0
TRACER = tracer("reference_services.shipping.courier")


def trace_context() -> str:
    """The current trace context (and request id) as stored with a shipment: JSON headers."""
    return json.dumps(messaging.inject({}))


class Courier:
    """Moves due shipments: LABEL_CREATED to PICKED_UP ``pickup_delay`` seconds after the
    label, PICKED_UP to DELIVERED ``delivery_delay`` seconds after the pickup.

    ``start()`` runs it as a task; ``wake()`` makes it look at the store now (a new
    shipment may be due before what it waits for). ``relay`` is woken after moves.
    """

    def __init__(
        self,
        store: ShipmentStore,
        outbox: Outbox,
        *,
        pickup_delay: float = PICKUP_DELAY,
        delivery_delay: float = DELIVERY_DELAY,
        relay: Relay | None = None,
        batch: int = 100,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.pickup_delay = pickup_delay
        self.delivery_delay = delivery_delay
        self.relay = relay
        self.batch = batch
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def pickup_due(self, created_ns: int) -> int:
        """When a shipment labelled at ``created_ns`` is picked up."""
        return created_ns + int(self.pickup_delay * 1e9)

    def wake(self) -> None:
        """Look at the store now rather than when the next known move is due."""
        self._wake.set()

    async def move_due(self) -> int:
        """Make every move due now; how many were made."""
        moved = 0
        while True:
            due = await self.store.due(self.clock(), self.batch)
            for shipment in due:
                moved += await self._move(shipment)
            if len(due) < self.batch:
                break
        if moved and self.relay is not None:
            self.relay.wake()
        return moved

    async def _move(self, shipment: Shipment) -> int:
        """Pick up or deliver one shipment, in a span of the trace that created it."""
        headers = json.loads(shipment.trace_context)
        parent = messaging.extract(headers, Context())
        pickup = shipment.status == LABEL_CREATED
        name = "courier pick up" if pickup else "courier deliver"
        attributes = {
            "app.shipping.tracking_id": shipment.tracking_id,
            "app.order.id": shipment.order_id,
        }
        with (
            log.request_scope(request_id=messaging.request_id(headers)),
            TRACER.start_as_current_span(name, context=parent, attributes=attributes) as span,
        ):
            now = self.clock()
            if pickup:
                delivery = now + int(self.delivery_delay * 1e9)
                moved = await self.store.pick_up(shipment, now, delivery, self.outbox)
            else:
                moved = await self.store.deliver(shipment, now, self.outbox)
            if moved is None:  # voided meanwhile, or moved by another replica
                span.set_attribute("app.shipping.moved", False)
                return 0
            span.set_attribute("app.shipping.status", moved.status)
            log.info(
                "parcel picked up" if pickup else "parcel delivered",
                tracking_id=moved.tracking_id,
                order_id=moved.order_id,
            )
            return 1

    async def _sleep(self) -> None:
        """Until the next move is due (at most `MAX_SLEEP`) or `wake`."""
        next_due = await self.store.next_due()
        wait = MAX_SLEEP
        if next_due is not None:
            wait = min(wait, max(0.0, (next_due - self.clock()) / 1e9))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def run(self) -> None:
        """Move shipments as they come due, until cancelled."""
        backoff = 0.1
        failing = False
        while True:
            self._wake.clear()
            try:
                await self.move_due()
                await self._sleep()
            except Exception as exc:  # the store is down (or a move failed): try again later
                if not failing:
                    log.warn("courier cannot move parcels, retrying", error=str(exc) or repr(exc))
                failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if failing:
                log.info("courier moving parcels again")
            failing, backoff = False, 0.1

    def start(self) -> None:
        """Run in a task of the current event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="courier")

    async def stop(self) -> None:
        """Stop the task (a move being written is rolled back and made by the next start)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
