"""The "Find the fault" walkthroughs of docs/boutique.md, step by step.

Each test injects one fault through the service's admin port, uses the shop
the way a visitor would, checks what the operator then finds (the visitor's
page, the exported spans, the error logs, the metrics, the health report)
and switches the fault off again. The nine services and the shop run in this
process on loopback (see conftest.py); spans and metrics go to in-memory
exporters, logs to JSON lines in memory.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from reference_services.common.events import (
    DEAD_REASON_HEADER,
    EVENT_ID_HEADER,
    ORDER_PLACED,
    Broker,
    Outbox,
)
from reference_services.notification.service import CONSUMER
from tests.boutique.conftest import Boutique, Telemetry
from tests.boutique.shop import MUG, ORDER_FORM, WATCH
from tests.conftest import Lines

pytestmark = pytest.mark.timeout(60)
COUNT = "messaging.nats.message.delivery_count"


@pytest.fixture
async def visitor(otel: Telemetry, lines: Lines, shop: str) -> AsyncIterator[httpx.AsyncClient]:
    """A shop visitor with its own cookie jar (telemetry and logs captured first)."""
    async with httpx.AsyncClient(base_url=shop, timeout=20.0) as client:
        yield client


async def switch(boutique: Boutique, service: str, **values: str) -> dict[str, object]:
    """``POST /faults?name=value`` on ``service``'s admin port; the new state."""
    async with httpx.AsyncClient(base_url=boutique[service].admin.url) as admin:
        reply = await admin.post("/faults", params=values)
    assert reply.status_code == 200, reply.text
    state: dict[str, object] = reply.json()
    return state


def servers(otel: Telemetry, method: str) -> list[ReadableSpan]:
    """The finished gRPC server spans of ``method`` (e.g. ``GetProduct``)."""
    return [
        s
        for s in otel.finished()
        if s.kind is SpanKind.SERVER and s.name.rsplit("/", 1)[-1] == method
    ]


def millis(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e6


def same_trace(otel: Telemetry, span: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in otel.finished() if s.context.trace_id == span.context.trace_id]


async def until(holds: Callable[[], bool], timeout: float = 20.0) -> None:
    """Return once ``holds()``; the test fails if it does not within ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not holds():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def order_id(page: httpx.Response) -> str:
    """The order id the shop's order page shows."""
    assert page.status_code == 200, page.text
    found = re.search(r'<dd id="order-id">([^<]+)</dd>', page.text)
    assert found
    return found.group(1)


def emailed(lines: Lines, order: str) -> int:
    """How many confirmations of ``order`` the e-mail service sent."""
    return sum(e["order_id"] == order for e in lines.entries("order confirmation sent"))


def counter(otel: Telemetry, name: str, **attributes: str) -> float:
    return sum(
        float(point.value)
        for found, point in otel.points(name)
        if all(found.get(k) == v for k, v in attributes.items())
    )


async def test_payment_failure_rate(
    boutique: Boutique, otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient
) -> None:
    await switch(boutique, "payment", failure_rate="1")
    await visitor.post("/cart", data={"product_id": MUG, "quantity": "2"})
    failed = await visitor.post("/cart/checkout", data=ORDER_FORM)
    # the visitor: an error page naming the step (no internals), the cart kept
    assert failed.status_code == 503
    assert "placing the order" in failed.text and "UNAVAILABLE" not in failed.text
    # the trace: the ledger's ChargeOrder failed under PlaceOrder, under the checkout page
    (charge,) = servers(otel, "ChargeOrder")
    assert charge.status.status_code is StatusCode.ERROR
    trace = same_trace(otel, charge)
    (place_order,) = [
        s for s in trace if s.name.endswith("PlaceOrder") and s.kind is SpanKind.SERVER
    ]
    assert place_order.status.status_code is StatusCode.ERROR
    assert any(s.name == "POST /cart/checkout" for s in trace)
    # the logs: payment's error, and the frontend's error page, both in that trace
    trace_id = format(charge.context.trace_id, "032x")
    (charge_failed,) = lines.entries("charge failed")
    assert charge_failed["level"] == "error" and charge_failed["trace_id"] == trace_id
    (page_failed,) = lines.entries("page failed")
    assert page_failed["level"] == "error" and page_failed["trace_id"] == trace_id
    assert "payment processor unavailable (injected fault failure_rate)" in page_failed["chain"][1]
    # the metrics
    reason = {"reason": "processor_unavailable"}
    assert counter(otel, "boutique.payment.failures", **reason) == 1
    assert counter(otel, "boutique.orders.failed", step="charge card") == 1
    # switched off: the same cart checks out
    await switch(boutique, "payment", failure_rate="0")
    placed = await visitor.post("/cart/checkout", data=ORDER_FORM)
    assert placed.status_code == 200, placed.text


async def test_catalog_extra_latency(
    boutique: Boutique, otel: Telemetry, visitor: httpx.AsyncClient
) -> None:
    await visitor.get(f"/product/{WATCH}")
    quick = [millis(s) for s in servers(otel, "GetProduct")]
    assert quick and max(quick) < 250
    state = await switch(boutique, "productcatalog", extra_latency_ms="300")
    assert state["extra_latency_ms"]["value"] == 300  # type: ignore[index]
    page = await visitor.get(f"/product/{WATCH}")
    assert page.status_code == 200  # slow, not broken
    slow = servers(otel, "GetProduct")[len(quick) :]
    assert slow and all(millis(s) >= 300 for s in slow)
    (root,) = [s for s in same_trace(otel, slow[0]) if s.parent is None]
    assert root.kind is SpanKind.SERVER and millis(root) >= 300
    await switch(boutique, "productcatalog", extra_latency_ms="0")
    await visitor.get(f"/product/{WATCH}")
    after = servers(otel, "GetProduct")[len(quick) + len(slow) :]
    assert after and max(millis(s) for s in after) < 250


async def test_catalog_cpu_bug_in_the_flame_graph(
    boutique: Boutique, otel: Telemetry, visitor: httpx.AsyncClient
) -> None:
    async def profile_under_load() -> httpx.Response:
        url = boutique["productcatalog"].admin.url
        async with httpx.AsyncClient(base_url=url, timeout=30) as admin:
            profile = asyncio.create_task(
                admin.get("/debug/pprof/profile", params={"seconds": "1", "format": "flamegraph"})
            )
            await asyncio.sleep(0.1)
            while not profile.done():
                await asyncio.gather(*(visitor.get(f"/product/{MUG}") for _ in range(4)))
            return await profile

    await switch(boutique, "productcatalog", cpu_bug="on")
    graph = await profile_under_load()
    assert graph.status_code == 200 and graph.headers["content-type"].startswith("text/html")
    assert "Catalog.from_file" in graph.text
    await switch(boutique, "productcatalog", cpu_bug="off")
    assert "Catalog.from_file" not in (await profile_under_load()).text


async def test_cart_store_failure_rate(
    boutique: Boutique, otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient
) -> None:
    await visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
    await switch(boutique, "cart", store_failure_rate="1")
    page = await visitor.get("/cart")
    assert page.status_code == 503
    assert "reading the cart" in page.text and "injected fault" not in page.text
    (page_failed,) = lines.entries("page failed")
    assert "cart store unavailable (injected fault store_failure_rate)" in page_failed["chain"][1]
    (failed,) = lines.entries("cart store failed")[:1]
    assert failed["level"] == "error"
    assert failed["error_type"] == "reference_services.common.database.StoreUnavailable"
    assert failed["error"] == "cart store unavailable (injected fault store_failure_rate)"
    (get_cart,) = [s for s in servers(otel, "GetCart") if s.status.status_code is StatusCode.ERROR]
    assert get_cart.status.status_code is StatusCode.ERROR
    async with httpx.AsyncClient(base_url=boutique["cart"].admin.url) as admin:
        health = await admin.get("/healthz")  # the store itself is fine
    assert health.status_code == 200 and health.json()["status"] == {"cart-store": "OK"}
    await switch(boutique, "cart", store_failure_rate="0")
    page = await visitor.get("/cart")
    assert page.status_code == 200 and f'data-product-id="{MUG}"' in page.text


async def test_ad_failure_rate(
    boutique: Boutique, otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient
) -> None:
    await switch(boutique, "ad", failure_rate="1")
    page = await visitor.get(f"/product/{MUG}")
    assert page.status_code == 200  # the page goes on without its ad
    assert '<aside class="ad">' not in page.text
    (failed,) = lines.entries("ad request failed")
    assert failed["level"] == "error"
    (extra,) = lines.entries("page extra unavailable")
    assert extra["level"] == "warn" and extra["doing"] == "reading ads"
    (get_ads,) = servers(otel, "GetAds")
    assert get_ads.status.status_code is StatusCode.ERROR
    await switch(boutique, "ad", failure_rate="0")
    page = await visitor.get(f"/product/{MUG}")
    assert '<aside class="ad">' in page.text


async def test_recommendation_leak_grows_the_cache(
    boutique: Boutique, otel: Telemetry, visitor: httpx.AsyncClient
) -> None:
    def entries() -> list[int]:
        return [
            int(s.attributes["app.recommendations.cache_entries"])  # type: ignore[arg-type,index]
            for s in servers(otel, "ListRecommendations")
        ]

    await switch(boutique, "recommendation", leak="on")
    for _ in range(3):
        await visitor.get(f"/product/{MUG}")
    grown = entries()
    assert grown == [1, 2, 3]
    await switch(boutique, "recommendation", leak="off")
    await visitor.get(f"/product/{MUG}")
    assert entries()[-1] == 3  # no longer growing, but never given back


async def test_notification_failure_rate_dead_letters_the_confirmation(
    boutique: Boutique, otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient, nats_url: str
) -> None:
    stream = boutique.stream
    assert stream is not None
    broker = Broker(nats_url, stream)
    js = await broker.jetstream()
    dead = await js.subscribe(stream.dead_letters(CONSUMER), stream=stream.name)
    try:
        await switch(boutique, "notification", failure_rate="1")
        await visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
        order = order_id(await visitor.post("/cart/checkout", data=ORDER_FORM))  # placed
        letter = await dead.next_msg(timeout=20)
    finally:
        await dead.unsubscribe()
        await broker.close()
    assert letter.headers is not None
    reason = "NotificationFailed: failure_rate fault: confirmation not sent"
    assert letter.headers[DEAD_REASON_HEADER] == reason
    event_id = letter.headers[EVENT_ID_HEADER]
    # the trace: PlaceOrder -> publish -> five failed deliveries, and no e-mail
    (place_order,) = servers(otel, "PlaceOrder")

    def deliveries() -> list[ReadableSpan]:
        process = f"process {stream.subject(ORDER_PLACED)}"  # (not the dead letter's)
        return [s for s in same_trace(otel, place_order) if s.name == process]

    await until(lambda: len(deliveries()) >= 5)  # the last ends after its dead letter went
    trace = same_trace(otel, place_order)
    # (a relay that timed out waiting for the broker's ack publishes again: the broker
    # drops the copy by its event id, the trace shows both publishes)
    publishes = [s for s in trace if s.name == f"publish {stream.subject(ORDER_PLACED)}"]
    # published from the saga's last step, under PlaceOrder
    (complete,) = [s for s in trace if s.name == "saga complete"]
    assert complete.parent is not None
    assert complete.parent.span_id == place_order.context.span_id
    assert {s.parent.span_id for s in publishes if s.parent} == {complete.context.span_id}
    (dead_letter,) = [s for s in trace if s.name == f"publish {stream.dead_letters(CONSUMER)}"]
    published = {s.context.span_id for s in publishes}
    for child in [*deliveries(), dead_letter]:  # the dead letter keeps the event's headers
        assert child.parent is not None and child.parent.span_id in published
    counts = [dict(s.attributes or {})[COUNT] for s in deliveries()]
    assert sorted(counts) == [1, 2, 3, 4, 5]  # type: ignore[type-var]
    assert {s.status.status_code for s in deliveries()} == {StatusCode.ERROR}
    assert not [s for s in trace if s.name.endswith("/SendOrderConfirmation")]
    assert emailed(lines, order) == 0
    # the logs: each failed attempt's error, after the line naming the order
    ours = [e for e in lines.entries() if e.get("message_id") == event_id]
    assert [(e["msg"], e["attempt"]) for e in ours if e["level"] == "error"] == [
        ("unhandled exception", n) for n in range(1, 6)
    ]
    assert {e["order_id"] for e in ours if e["msg"] == "sending order confirmation"} == {order}
    # switched off: the next order is confirmed at once
    await switch(boutique, "notification", failure_rate="0")
    await visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
    again = order_id(await visitor.post("/cart/checkout", data=ORDER_FORM))
    await until(lambda: emailed(lines, again) == 1)


async def test_checkout_relay_paused_holds_the_events(
    boutique: Boutique, otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient
) -> None:
    assert boutique.orders is not None
    outbox = Outbox(boutique.orders.db)  # the outbox in checkout's order database
    await switch(boutique, "checkout", relay_paused="on")
    await visitor.post("/cart", data={"product_id": WATCH, "quantity": "1"})
    order = order_id(await visitor.post("/cart/checkout", data=ORDER_FORM))
    # the order's events: status_changed to PAID and to SHIPPED, order.placed
    assert await outbox.count_pending() == 3
    await asyncio.sleep(1.5)  # longer than the relay's poll: it held the events
    assert await outbox.count_pending() == 3
    assert emailed(lines, order) == 0
    await switch(boutique, "checkout", relay_paused="off")
    await until(lambda: emailed(lines, order) == 1)
    assert await outbox.count_pending() == 0
    (place_order,) = servers(otel, "PlaceOrder")
    (confirmation,) = servers(otel, "SendOrderConfirmation")
    assert confirmation.context.trace_id == place_order.context.trace_id
