"""How long an order takes to be notified: order placed -> notification recorded.

Goal: boutique.events.notify_p99_ms, the 99th percentile over every order placed
by 10 visitors checking out in the shop, under 250 ms (the p50 is reported).

The whole boutique runs as ``make demo`` runs it (its own NATS, the viewer, the
adaptive sampler). Ten visitors, each with its own session, add a product to
their cart and check out, then think 1 to 3 s (as the load generator's visitors
do), for ``CLUE_BENCH_NOTIFY_SECONDS`` (default 60). Then, for every order: from
the moment checkout wrote its OrderPlaced event (the outbox's ``seq``, a
nanosecond clock, in the transaction of the order) to the moment the notification
service recorded the confirmation (``sent_at_ns``, in the transaction of the
event's processed mark), both read from the services' SQLite stores: the relay's
wake-up and publication, JetStream, the consumer's fetch, the e-mail service's
call and the record. Every process runs on this machine, so the clocks are one.

Then the issue's broker outage under load (tests/boutique/test_broker_outage.py
stops it for 10 s only, to keep CI short): the same ten visitors go on checking
out while the boutique's NATS is stopped for ``CLUE_BENCH_OUTAGE_SECONDS``
(default 30) and after it is back. Goals: boutique.events.outage_failed_checkouts,
no checkout failing, and boutique.events.outage_unnotified, every order of the
whole run notified within 60 s of the broker's return (none before it, for the
orders placed while it was down); the time the last one took is reported.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goal import goal, info

from reference_services.common.events import ORDER_PLACED
from reference_services.launcher import NATS, Boutique
from reference_services.loadgen.visitor import PRODUCTS, checkout_form

VISITORS = 10
SECONDS = float(os.environ.get("CLUE_BENCH_NOTIFY_SECONDS", "60"))
OUTAGE = float(os.environ.get("CLUE_BENCH_OUTAGE_SECONDS", "30"))
SETTLE = 60.0  # seconds for the last orders' notifications
AROUND = 5.0  # seconds of checkouts before the outage and after it


async def visitor(shop: str, until: float, tally: dict[str, int]) -> None:
    """Check out again and again until ``until`` (perf_counter), thinking 1-3 s between."""
    async with httpx.AsyncClient(base_url=shop, timeout=30.0) as client:
        await client.get("/")  # the session cookie
        while time.perf_counter() < until:
            added = await client.post(
                "/cart", data={"product_id": random.choice(PRODUCTS), "quantity": "1"}
            )
            placed = await client.post("/cart/checkout", data=checkout_form("bench@example.com"))
            ok = added.status_code < 400 and placed.status_code == 200
            tally["placed" if ok else "failed"] += 1
            await asyncio.sleep(random.uniform(1.0, 3.0))


def placed_at(data: Path) -> dict[str, int]:
    """Event id -> the ns its OrderPlaced was written (checkout's outbox)."""
    with sqlite3.connect(data / "orders.db") as db:
        rows = db.execute("SELECT event_id, seq FROM outbox WHERE subject = ?", (ORDER_PLACED,))
        return {str(event_id): int(seq) for event_id, seq in rows}


def recorded_at(data: Path) -> dict[str, int]:
    """Event id -> the ns its confirmation was recorded (the notification store)."""
    with sqlite3.connect(data / "notification.db") as db:
        rows = db.execute(
            "SELECT id, sent_at_ns FROM notifications"
            " WHERE template = 'order_confirmation' AND status = 'sent'"
        )
        return {str(id_): int(at) for id_, at in rows}


def latencies_ms(data: Path, since_ns: int = 0, until_ns: int = 2**63) -> tuple[list[float], int]:
    """The placed -> recorded latency of every order placed between ``since_ns`` and
    ``until_ns`` and recorded, and how many of them are not."""
    recorded = recorded_at(data)
    placed = {e: at for e, at in placed_at(data).items() if since_ns <= at < until_ns}
    found = [(recorded[e] - at) / 1e6 for e, at in placed.items() if e in recorded]
    return found, len(placed) - len(found)


async def checkouts(shop: str, seconds: float, tally: dict[str, int]) -> None:
    """`VISITORS` visitors checking out for ``seconds``."""
    until = time.perf_counter() + seconds
    await asyncio.gather(*(visitor(shop, until, tally) for _ in range(VISITORS)))


async def outage(boutique: Boutique) -> tuple[int, int]:
    """Stop the broker after `AROUND` s, start it `OUTAGE` s later: (stopped, back) in ns."""
    await asyncio.sleep(AROUND)
    await asyncio.to_thread(boutique.stop_service, NATS)
    stopped = time.time_ns()
    await asyncio.sleep(OUTAGE)
    await asyncio.to_thread(boutique.start_service, NATS)
    return stopped, time.time_ns()


def settle(data: Path) -> None:
    """Wait up to `SETTLE` s for every order to be notified."""
    deadline = time.perf_counter() + SETTLE
    while latencies_ms(data)[1] and time.perf_counter() < deadline:
        time.sleep(0.2)


def main() -> int:
    data = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    steady = {"placed": 0, "failed": 0}
    during = {"placed": 0, "failed": 0}
    try:
        with Boutique(data, base_port=0) as boutique:
            asyncio.run(checkouts(boutique.shop_url, SECONDS, steady))
            settle(data)
            measured_until = time.time_ns()
            found, missing = latencies_ms(data)

            async def under_load() -> tuple[int, int]:
                shop = boutique.shop_url
                load = checkouts(shop, AROUND + OUTAGE + AROUND, during)
                _, (stopped, back) = await asyncio.gather(load, outage(boutique))
                return stopped, back

            stopped, back = asyncio.run(under_load())
            settle(data)
            late, unnotified = latencies_ms(data, measured_until)
            waited, _ = latencies_ms(data, stopped, back)
            recorded = recorded_at(data)
            placed = placed_at(data)
            early = sum(
                recorded[e] < back
                for e, at in placed.items()
                if stopped <= at < back and e in recorded
            )
            last = max((recorded[e] for e in placed if e in recorded), default=back)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(
        f"{VISITORS} visitors for {SECONDS:g} s: {steady['placed']} checkouts,"
        f" {steady['failed']} failed; {len(found)} orders notified, {missing} not",
        flush=True,
    )
    if len(found) < 2:
        print("too few orders to measure", flush=True)
        return 1
    cuts = statistics.quantiles(found, n=100, method="inclusive")
    info(
        "boutique.events.notify_ms",
        p50=cuts[49],
        p95=cuts[94],
        max=max(found),
        orders=len(found),
        not_notified=missing,
    )
    goal("boutique.events.notify_p99_ms", cuts[98], "<", 250)
    print(
        f"broker stopped {OUTAGE:g} s under {VISITORS} visitors: {during['placed']} checkouts"
        f" ({len(waited)} while it was down), {during['failed']} failed;"
        f" {len(late)} notified, {unnotified} not, {early} before the broker was back",
        flush=True,
    )
    info(
        "boutique.events.outage",
        seconds=OUTAGE,
        orders_during=len(waited),
        last_notified_after_return_s=max(0, last - back) / 1e9,
    )
    goal("boutique.events.outage_failed_checkouts", during["failed"], "<=", 0)
    goal("boutique.events.outage_unnotified", unnotified + early, "<=", 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
