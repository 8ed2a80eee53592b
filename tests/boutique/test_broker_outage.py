"""End to end: the event broker stopped while orders go through the shop (issue 14).

The boutique's processes, with a NATS server of their own; the broker is stopped
for `OUTAGE` seconds (the issue asks for 30; 10 keep the test short and cover the
same path: the relay backs off, the events wait in the outbox; the 30 s outage
under ten visitors is a case of bench/bench_boutique_notify.py) while checkouts
run. No checkout fails; once the broker is back, every order gets exactly one
confirmation in the notification store, sent under the shop's request id (carried
from the shop to checkout in gRPC metadata, by the event to the notification
service, and on to the e-mail service in gRPC metadata again).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from reference_services.launcher import NATS, Boutique
from tests.boutique.shop import MUG, ORDER_FORM

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OUTAGE = 10.0
"""Seconds the broker stays down (the issue's 30 s scaled down to keep the test short)."""
BEFORE, DURING, AFTER = 4, 12, 4
"""Orders placed before the outage, while the broker is down, and after it is back."""
WORKERS = 4
DEADLINE = 30.0
"""Seconds for every confirmation to be recorded once the broker is back."""


@pytest.fixture
def boutique(monkeypatch: pytest.MonkeyPatch) -> Iterator[Boutique]:
    monkeypatch.delenv("NATS_URL", raising=False)  # the boutique starts its own broker
    data = Path(tempfile.mkdtemp(prefix="boutique-outage-"))
    try:
        with Boutique(data, base_port=0, collector=False, env={"CLUE_LOG_FORMAT": "json"}) as b:
            assert b.with_nats
            yield b
    finally:
        shutil.rmtree(data, ignore_errors=True)


def place_order(shop_url: str) -> tuple[str, str]:
    """One visitor's checkout of a mug through the shop; the order id and the shop's
    request id (the test fails unless the checkout succeeds)."""
    with httpx.Client(base_url=shop_url, timeout=20.0) as visitor:
        added = visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
        assert added.status_code == 302, added.text
        placed = visitor.post("/cart/checkout", data=ORDER_FORM)
        assert placed.status_code == 200, placed.text[:500]
        found = re.search(r'id="order-id">([^<]+)<', placed.text)
        assert found is not None, "no order id on the confirmation page"
        return found.group(1), placed.headers["x-request-id"]


def place_orders(shop_url: str, count: int) -> list[str]:
    """``count`` checkouts, `WORKERS` at a time: their order ids (their request ids are
    kept in `REQUESTS`)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        placed = list(pool.map(place_order, [shop_url] * count))
    REQUESTS.update(placed)
    return [order_id for order_id, _ in placed]


REQUESTS: dict[str, str] = {}
"""Order id -> the request id of the shop's checkout that placed it."""


def confirmation_requests(boutique: Boutique) -> set[str]:
    """The request ids under which the e-mail service served SendOrderConfirmation."""
    found = set()
    for line in Path(boutique.processes["email"].log).read_text().splitlines():
        if line.startswith("{") and "SendOrderConfirmation" in line:
            entry = json.loads(line)
            if entry.get("msg") == "request":
                found.add(str(entry["request_id"]))
    return found


def confirmations(data_dir: Path) -> Counter[str]:
    """Order id -> how many confirmations the notification store holds for it."""
    with sqlite3.connect(f"file:{data_dir / 'notification.db'}?mode=ro", uri=True) as db:
        try:
            rows = db.execute(
                "SELECT order_id FROM notifications WHERE template = 'order_confirmation'"
            ).fetchall()
        except sqlite3.OperationalError:  # no table yet
            return Counter()
    return Counter(str(order_id) for (order_id,) in rows)


def test_no_checkout_fails_while_the_broker_is_down_and_each_order_is_notified_once(
    boutique: Boutique,
) -> None:
    orders = place_orders(boutique.shop_url, BEFORE)
    assert boutique.stop_service(NATS) is not None
    stopped = time.monotonic()
    try:
        orders += place_orders(boutique.shop_url, DURING)
        assert time.monotonic() - stopped < OUTAGE, "the orders took the whole outage"
        during = confirmations(boutique.data_dir)
        assert not set(orders[BEFORE:]) & set(during), "confirmed with the broker down"
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    finally:
        boutique.start_service(NATS)
    orders += place_orders(boutique.shop_url, AFTER)
    assert len(set(orders)) == BEFORE + DURING + AFTER

    deadline = time.monotonic() + DEADLINE
    while not set(orders) <= set(found := confirmations(boutique.data_dir)):
        missing = len(set(orders) - set(found))
        assert time.monotonic() < deadline, f"{missing} orders still unconfirmed"
        time.sleep(0.2)
    assert {order_id: found[order_id] for order_id in orders} == dict.fromkeys(orders, 1)
    shop_requests = {REQUESTS[order_id] for order_id in orders}
    deadline = time.monotonic() + 5.0  # the e-mail service's lines may wait to be written
    while not shop_requests <= (sent_under := confirmation_requests(boutique)):
        missing = len(shop_requests - sent_under)
        assert time.monotonic() < deadline, f"{missing} confirmations not under the shop's id"
        time.sleep(0.2)
