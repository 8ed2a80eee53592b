"""The relay: publishes the outbox's pending events, in order, while the broker answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from clue import log
from reference_services.common.events.outbox import Outbox
from reference_services.common.events.stream import Broker
from reference_services.common.faults import Flag

PAUSE_SWITCH = "relay_paused"
MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0


def pause_switch() -> Flag:
    """The fault switch that holds the relay (events wait in the outbox) while on."""
    return Flag(PAUSE_SWITCH, "hold the event relay: events wait in the outbox")


class Relay:
    """Publishes an outbox's events with their event id as ``Nats-Msg-Id``.

    ``start()`` runs it as a task: it publishes whenever :meth:`wake` is called
    (after a commit that added events) or every ``poll`` seconds, oldest first,
    stopping at the first failure and trying again with back-off while the
    broker is down. A retried event is dropped by JetStream's de-duplication.
    ``paused`` (e.g. the :func:`pause_switch`) holds it.
    """

    def __init__(
        self,
        outbox: Outbox,
        broker: Broker,
        *,
        batch: int = 100,
        poll: float = 1.0,
        publish_timeout: float = 2.0,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self.outbox = outbox
        self.broker = broker
        self.batch = batch
        self.poll = poll
        self.publish_timeout = publish_timeout
        self.paused = paused
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Publish now rather than at the next poll."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish the pending events, oldest first, until none is left; how many went.

        Raises the broker's error at the first event that could not be published
        (the ones before it are marked sent).
        """
        js = await self.broker.jetstream()
        stream = self.broker.stream
        total = 0
        while not self.paused():
            events = await self.outbox.pending(self.batch)
            sent: list[str] = []
            try:
                for event in events:
                    await js.publish(
                        stream.subject(event.subject),
                        event.payload,
                        timeout=self.publish_timeout,
                        stream=stream.name,
                        headers=dict(event.headers),
                    )
                    sent.append(event.event_id)
            finally:
                await self.outbox.mark_sent(sent)
                total += len(sent)
            if len(events) < self.batch:
                break
        return total

    async def run(self) -> None:
        """Publish until stopped."""
        backoff = MIN_BACKOFF
        failing = False
        while not self._stopping:
            self._wake.clear()
            try:
                if not self.paused():
                    await self.publish_pending()
            except Exception as exc:  # the broker or the database is down: try again later
                if not failing:
                    log.warn("event relay cannot publish, retrying", error=str(exc) or repr(exc))
                failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if failing:
                log.info("event relay publishing again")
            failing, backoff = False, MIN_BACKOFF
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    def start(self) -> None:
        """Run in a task of the current event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="event-relay")

    async def stop(self) -> None:
        """Stop the task (an event being published is published again by the next relay)."""
        if self._task is not None:
            # and a flag: nats-py turns a cancellation during a publish into a timeout
            self._stopping = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task, self._stopping = None, False
