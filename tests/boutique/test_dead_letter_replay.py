"""The boutique's dead-letter commands (``python -m reference_services events
list-dead-letters|replay-dead-letters``) on a real NATS JetStream, for checkout's
consumer of the courier's pickups: a pickup seen before its order was shipped is
dead-lettered, listed, and once the order is shipped, replayed and handled.

The command runs as a process once, its ``async_main`` in the test's process the
other times (a process starts slowly)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from reference_services import dead_letters as command_module
from reference_services.checkout.orders import OrderStore
from reference_services.checkout.shipments import CONSUMERS, ShipmentEvents
from reference_services.common.database import SQLite
from reference_services.common.events import (
    SHIPMENT_PICKED_UP,
    Broker,
    EventConsumer,
    Outbox,
    Relay,
    Stream,
)
from reference_services.common.events.replay import dead_letters
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import events_pb2 as ev
from tests.boutique.conftest import unique
from tests.boutique.test_notification_events import DEADLINE, eventually

PICKUPS = CONSUMERS[SHIPMENT_PICKED_UP]


async def command(nats_url: str, stream: str, *args: str) -> tuple[int, str, str]:
    """Run the command's code against ``stream``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stderr(err):
        env.setenv("NATS_URL", nats_url)
        env.setenv("EVENTS_STREAM", stream)
        try:
            code = await command_module.async_main(args, out)
        except SystemExit as exit:  # argparse's, for a bad argument
            code = int(exit.code or 0)
    return code, out.getvalue(), err.getvalue()


@dataclass
class Checkout:
    """Checkout's order store and its pickups consumer on a test stream."""

    store: OrderStore
    outbox: Outbox
    broker: Broker

    @property
    def stream(self) -> str:
        return self.broker.stream.name

    async def order(self) -> str:
        """A new order, PENDING (its saga still running)."""
        order_id = unique("o")
        async with self.store.db.transaction() as tx:
            await self.store.create(
                tx,
                pb.OrderResult(order_id=order_id),
                user_id="alice",
                email="alice@example.com",
                total=pb.Money(currency_code="EUR", units=10),
                trace_id="",
            )
        return order_id

    async def picked_up(self, order_id: str) -> str:
        """The courier's pickup of ``order_id`` published (as shipping does); its event id."""
        async with self.outbox.db.transaction() as tx:
            event_id = await self.outbox.add(
                tx, SHIPMENT_PICKED_UP, ev.ShipmentPickedUp(order_id=order_id)
            )
        assert await Relay(self.outbox, self.broker).publish_pending() == 1
        return event_id

    async def status(self, order_id: str) -> str:
        order = await self.store.get(order_id)
        assert order is not None
        return order.status

    async def letters(self) -> list[str]:
        """The event ids of the pickups consumer's dead letters."""
        js = await self.broker.jetstream()
        return [letter.event_id for letter in await dead_letters(js, self.broker.stream, PICKUPS)]


@pytest.fixture
async def checkout(nats_url: str, tmp_path: Path) -> AsyncIterator[Checkout]:
    """The pickups consumer as checkout runs it, with short retries."""
    stream = Stream(unique("DEAD").upper())
    async with AsyncExitStack() as stack:
        broker = Broker(nats_url, stream)
        stack.push_async_callback(broker.close)
        js = await broker.jetstream()  # makes the stream
        stack.push_async_callback(stream.delete, js)  # after the consumer stopped
        db = SQLite(tmp_path / "orders.db")
        stack.push_async_callback(db.close)
        store, outbox = OrderStore(db), Outbox(db)
        await store.migrate()
        events = ShipmentEvents(store, outbox, Relay(outbox, broker))
        consumer = EventConsumer(
            broker, db, PICKUPS, [SHIPMENT_PICKED_UP], events.handle, max_deliver=2, backoff=(0.05,)
        )
        consumer.start()
        stack.push_async_callback(consumer.stop)
        yield Checkout(store, outbox, broker)


async def test_pickups_before_shipping_are_listed_then_replayed_and_handled(
    checkout: Checkout, nats_url: str
) -> None:
    order_id = await checkout.order()
    first, second = [await checkout.picked_up(order_id) for _ in range(2)]
    await eventually(checkout.letters, lambda found: found == [first, second])
    assert await checkout.status(order_id) == "PENDING"

    # listed: each consumer's count, the letters' ids, types and errors
    code, out, err = await command(nats_url, checkout.stream, "list-dead-letters")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "notification: 0 dead letter(s)"
    at = lines.index(f"{PICKUPS}: 2 dead letter(s)")
    for line, event_id in zip(lines[at + 1 : at + 3], (first, second), strict=True):
        assert line.startswith(f"  {event_id} boutique.v1.ShipmentPickedUp dead since ")
        assert line.endswith(f"NotYetShipped: order {order_id} is PENDING, not shipped yet")
    assert "productcatalog-cancellations: 0 dead letter(s)" in lines
    assert lines[-1] == "2 dead letter(s)"
    code, out, _ = await command(
        nats_url, checkout.stream, "list-dead-letters", "--consumer", PICKUPS, "--limit", "1"
    )
    lines = out.splitlines()
    assert (code, len(lines)) == (0, 4)
    assert (lines[0], lines[2:]) == (
        f"{PICKUPS}: 2 dead letter(s)",
        ["  ... and 1 more (--limit)", "2 dead letter(s)"],
    )
    assert lines[1].startswith(f"  {first} ")

    # one replayed before the fix: handled afresh, dead again (under its replay's id)
    code, out, _ = await command(
        nats_url, checkout.stream, "replay-dead-letters", "--consumer", PICKUPS, "--event-id", first
    )
    assert (code, out.splitlines()[-1]) == (0, "replayed 1 of 1")
    await eventually(checkout.letters, lambda found: found == [second, first])

    # the order shipped, the operator's command in its own process replays both:
    # the first moves the order, the second finds it moved
    async with checkout.store.db.transaction() as tx:
        for to in ("PAID", "SHIPPED"):
            await checkout.store.move(tx, order_id, to, "test", "")
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "EVENTS_STREAM": checkout.stream,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    argv = [sys.executable, "-m", "reference_services", "events", "replay-dead-letters"]
    done = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert done.returncode == 0, done.stderr
    assert f"{PICKUPS}: 2 dead letter(s)" in done.stdout.splitlines()
    assert done.stdout.splitlines()[-1] == "replayed 2 of 2"
    await eventually(lambda: checkout.status(order_id), lambda status: status == "IN_TRANSIT")
    await eventually(checkout.letters, lambda found: found == [])
    order = await checkout.store.get(order_id)
    assert order is not None
    assert [c.to_status for c in order.history].count("IN_TRANSIT") == 1  # moved once

    # a dead-letter subject of a consumer the command does not know is counted, not read
    js = await checkout.broker.jetstream()
    await js.publish(checkout.broker.stream.dead_letters("elsewhere"), b"x")
    code, out, _ = await command(nats_url, checkout.stream, "list-dead-letters")
    assert (code, out.splitlines()[-2:]) == (
        0,
        ["'elsewhere': 1 dead letter(s) of a consumer not known here", "1 dead letter(s)"],
    )


async def test_unknown_consumers_and_streams_are_refused_and_nothing_is_made(
    nats_url: str,
) -> None:
    code, out, err = await command(
        nats_url, "NOSUCH", "replay-dead-letters", "--consumer", "x" * 5000
    )
    assert (code, out) == (2, "")
    known = ", ".join(command_module.CONSUMERS)
    assert f"argument --consumer: {'x' * 32!r}... (5000 characters) is none of {known}" in err
    assert len(err) < 1000
    assert {"checkout-pickups", "checkout-deliveries", "productcatalog-cancellations"} <= set(
        command_module.CONSUMERS
    )
    code, _, err = await command(nats_url, "NOSUCH", "list-dead-letters", "--limit", "0")
    assert code == 2 and "argument --limit: '0' is not a number from 1 to 1000" in err

    stream = unique("NOSUCH").upper()
    for verb in ("list-dead-letters", "replay-dead-letters"):
        code, out, err = await command(nats_url, stream, verb)
        assert (code, out, err.strip()) == (2, "", f"{verb}: no stream {stream} at {nats_url}")
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(NotFoundError):
            await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
