"""End to end: the whole boutique started by the launcher, telemetry to a real OTLP receiver.

An order placed through the shop's HTTP form must be one trace across the
frontend, checkout and every service checkout calls, and on through the event
broker to the notification service and the e-mail it sends; debug logs toggled on
one service show its payloads on the next call; a fault switch turns into
error traces and flushed error logs; a stopped payment service fails the
checkout cleanly (error page, no order, cart intact, health NOT OK); a
restarted service loses nothing. Each service's output goes to a log file
under the data dir, which the tests read.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reference_services.launcher import Boutique
from tests.boutique.shop import MUG, ORDER_FORM, SUNGLASSES, WATCH
from tests.otlp_receiver import OTLPReceiver, Span

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5  # opentelemetry.proto SpanKind


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    otlp = OTLPReceiver()
    otlp.start()
    yield otlp
    otlp.stop()


@pytest.fixture(scope="module")
def boutique(receiver: OTLPReceiver) -> Iterator[Boutique]:
    data = Path(tempfile.mkdtemp(prefix="boutique-"))
    env = {
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "CLUE_LOG_FORMAT": "json",
    }
    try:
        with Boutique(
            data, base_port=0, collector=False, otlp_endpoint=receiver.endpoint, env=env
        ) as running:
            yield running
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def visitor(boutique: Boutique) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=boutique.shop_url, timeout=20.0) as client:
        yield client


def add(visitor: httpx.Client, product: str, quantity: int) -> None:
    response = visitor.post("/cart", data={"product_id": product, "quantity": str(quantity)})
    assert response.status_code == 302, response.text


def cart(visitor: httpx.Client) -> dict[str, int]:
    page = visitor.get("/cart").text
    rows = re.findall(r'<tr data-product-id="(\w+)">.*?<td>(\d+)</td>', page, re.DOTALL)
    return {product: int(quantity) for product, quantity in rows}


def orders(boutique: Boutique) -> int:
    """Orders placed (SHIPPED or later): a failed checkout leaves its order FAILED, or
    PENDING until recovery can compensate it, neither counted."""
    placed = "SELECT count(*) FROM orders WHERE status NOT IN ('PENDING', 'PAID', 'FAILED')"
    with sqlite3.connect(boutique.data_dir / "orders.db") as db:
        try:
            return int(db.execute(placed).fetchone()[0])
        except sqlite3.OperationalError:  # no order yet: no table yet
            return 0


def log_lines(boutique: Boutique, service: str) -> list[dict[str, Any]]:
    """The JSON log entries a service has written so far."""
    entries = []
    for line in Path(boutique.processes[service].log).read_text().splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def admin(boutique: Boutique, service: str, path: str, **params: str) -> httpx.Response:
    url = f"{boutique.processes[service].admin_url}{path}"
    return httpx.post(url, params=params, timeout=10.0) if params else httpx.get(url, timeout=10.0)


def trace_of_order(receiver: OTLPReceiver, order_id: str) -> list[Span]:
    """Every span of the trace whose checkout span carries ``order_id``."""

    def find(r: OTLPReceiver) -> str | None:
        for span in r.spans():
            if span.attributes.get("app.order.id") == order_id:
                return span.trace_id
        return None

    trace_id = receiver.wait_for(find, timeout=20)
    return [s for s in receiver.spans() if s.trace_id == trace_id]


def test_an_order_is_one_trace_across_every_service(
    boutique: Boutique, receiver: OTLPReceiver, visitor: httpx.Client
) -> None:
    add(visitor, SUNGLASSES, 2)
    add(visitor, MUG, 1)
    visitor.post("/setCurrency", data={"currency_code": "EUR"})
    response = visitor.post("/cart/checkout", data=ORDER_FORM)
    assert response.status_code == 200, response.text
    order_id = re.search(r'<dd id="order-id">([^<]+)</dd>', response.text)
    assert order_id
    # 2 x €17.68 sunglasses, a €7.95 mug and €7.95 shipping (USD at 1.1305 a euro), in nanos
    assert '<dd id="total-paid">€51.26</dd>' in response.text

    expected = {"cart", "productcatalog", "currency", "shipping", "payment"}

    def complete(r: OTLPReceiver) -> list[Span] | None:
        spans = trace_of_order(r, order_id.group(1))
        servers = {s.service_name for s in spans if s.kind == SERVER}
        if not expected | {"frontend", "checkout", "email"} <= servers:
            return None
        # each service exports on its own schedule: wait for every parent (the e-mail's is
        # the notification consumer's span) before judging the tree
        ids = {s.span_id for s in spans}
        return spans if all(s.parent_span_id in ids for s in spans if s.parent_span_id) else None

    spans = receiver.wait_for(complete, timeout=20)
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if not s.parent_span_id]
    assert root.service_name == "frontend" and root.kind == SERVER
    assert root.name == "POST /cart/checkout"
    for span in spans:
        if span is not root:
            assert span.parent_span_id in by_id, f"{span.service_name} {span.name} lost its parent"

    def ancestors(span: Span) -> list[Span]:
        found = []
        while span.parent_span_id:
            span = by_id[span.parent_span_id]
            found.append(span)
        return found

    (place_order,) = [s for s in spans if s.kind == SERVER and s.service_name == "checkout"]
    caller = by_id[place_order.parent_span_id]
    assert caller.kind == CLIENT and caller.service_name == "frontend"
    assert place_order.name == "hipstershop.CheckoutService/PlaceOrder"
    assert [e.name for e in place_order.events][:3] == ["prepared", "charged", "shipped"]
    for service in expected:  # each called by checkout, inside PlaceOrder's span
        called = [
            s
            for s in spans
            if s.kind == SERVER and s.service_name == service and place_order in ancestors(s)
        ]
        assert called, f"{service} is not under PlaceOrder"
        for span in called:
            client = by_id[span.parent_span_id]
            assert client.kind == CLIENT and client.service_name == "checkout", span.name
            assert span.name.split("/")[-1] == client.name.split("/")[-1]
    # the confirmation, asynchronously: PlaceOrder -> the relay's publish -> the
    # notification service's consumer -> its call to the e-mail service
    (mail,) = [s for s in spans if s.kind == SERVER and s.service_name == "email"]
    chain = [(s.kind, s.service_name, s.name) for s in [mail, *ancestors(mail)]]
    subject = "boutique.order.placed"
    assert chain[: chain.index((SERVER, "checkout", place_order.name)) + 1] == [
        (SERVER, "email", "hipstershop.EmailService/SendOrderConfirmation"),
        (CLIENT, "notification", "hipstershop.EmailService/SendOrderConfirmation"),
        (CONSUMER, "notification", f"process {subject}"),
        (PRODUCER, "checkout", f"publish {subject}"),
        (INTERNAL, "checkout", "saga complete"),
        (SERVER, "checkout", "hipstershop.CheckoutService/PlaceOrder"),
    ]
    assert all(s.status_code != 2 for s in spans)


def test_debug_toggle_shows_payloads_on_the_next_call(
    boutique: Boutique, visitor: httpx.Client
) -> None:
    def payloads() -> list[dict[str, Any]]:
        return [e for e in log_lines(boutique, "shipping") if "payload" in str(e.get("msg", ""))]

    def quoted(page: str) -> None:
        """Get ``page`` and wait for shipping's access line of the GetQuote it makes: the
        service writes it after that call's payloads, and its lines can wait 0.1 s."""

        def quotes() -> int:
            return sum(
                e.get("msg") == "request" and str(e.get("method", "")).endswith("/GetQuote")
                for e in log_lines(boutique, "shipping")
            )

        before = quotes()
        assert visitor.get(page).status_code == 200
        wait(lambda: quotes() > before)

    add(visitor, WATCH, 1)
    quoted("/cart")
    assert payloads() == []
    turned_on = admin(boutique, "shipping", "/debug", **{"debug-logs": "on"})
    assert turned_on.status_code == 200
    try:
        quoted("/cart")
        found = [e for e in payloads() if e["method"] == "/hipstershop.ShippingService/GetQuote"]
        assert [e["msg"] for e in found] == ["request payload", "response payload"]
        assert found[0]["request_id"] == found[1]["request_id"]  # of the same call
        request, response = (json.loads(e["payload"]) for e in found)
        assert request == {"address": {}, "items": [{"product_id": WATCH, "quantity": 1}]}
        flat_rate = {"currency_code": "USD", "units": "8", "nanos": 990_000_000}
        assert response == {"cost_usd": flat_rate}  # int64 units are strings in protobuf JSON
    finally:
        admin(boutique, "shipping", "/debug", **{"debug-logs": "off"})
    settled = len(payloads())
    quoted("/cart")
    assert len(payloads()) == settled  # off again: no more payloads


def test_payment_failure_rate_shows_as_error_traces_and_flushed_error_logs(
    boutique: Boutique, receiver: OTLPReceiver, visitor: httpx.Client
) -> None:
    assert admin(boutique, "payment", "/faults", failure_rate="2").status_code == 400
    assert admin(boutique, "payment", "/faults").json()  # unchanged, readable
    assert admin(boutique, "payment", "/faults", failure_rate="1").status_code == 200
    try:
        add(visitor, MUG, 2)
        kept = orders(boutique)
        response = visitor.post("/cart/checkout", data=ORDER_FORM)
        assert response.status_code >= 400
        assert "placing the order" in response.text
        assert orders(boutique) == kept
        assert cart(visitor) == {MUG: 2}
    finally:
        assert admin(boutique, "payment", "/faults", failure_rate="0").status_code == 200

    def failed_charge(r: OTLPReceiver) -> Span | None:
        for span in r.spans():
            if span.service_name == "payment" and span.kind == SERVER and span.status_code == 2:
                trace = {s.service_name for s in r.spans() if s.trace_id == span.trace_id}
                if trace >= {"frontend", "checkout", "payment"}:
                    return span
        return None

    failed = receiver.wait_for(failed_charge, timeout=20)
    for service, message in (("payment", "charge failed"), ("frontend", "page failed")):
        errors = [
            e
            for e in log_lines(boutique, service)
            if e.get("level") == "error" and e.get("trace_id") == failed.trace_id
        ]
        assert [e["msg"] for e in errors] == [message], service
    flushed = [  # the frontend's buffered info entries of that request, written by the error
        e
        for e in log_lines(boutique, "frontend")
        if e.get("trace_id") == failed.trace_id and e.get("level") in ("info", "warn")
    ]
    assert any(e.get("method", "").endswith("PlaceOrder") for e in flushed)

    def exported_error(r: OTLPReceiver) -> bool:  # what the viewer's log search shows
        return any(
            record.service_name == "payment"
            and record.body == "charge failed"
            and record.severity_text.lower().startswith("error")
            and record.trace_id == failed.trace_id
            for record in r.logs()
        )

    assert receiver.wait_for(exported_error, timeout=20)


def test_a_restarted_cart_service_loses_nothing(boutique: Boutique, visitor: httpx.Client) -> None:
    add(visitor, WATCH, 3)
    assert boutique.stop_service("cart") == 0  # graceful stop on SIGTERM
    boutique.start_service("cart")
    assert cart(visitor) == {WATCH: 3}


def test_stopped_payment_fails_checkout_cleanly(boutique: Boutique, visitor: httpx.Client) -> None:
    add(visitor, SUNGLASSES, 1)
    kept = orders(boutique)
    assert boutique.stop_service("payment") == 0
    try:
        response = visitor.post("/cart/checkout", data=ORDER_FORM)
        assert response.status_code == 503
        assert '<p class="status" id="status">503</p>' in response.text
        assert "placing the order" in response.text and "UNAVAILABLE" not in response.text
        assert orders(boutique) == kept
        assert cart(visitor) == {SUNGLASSES: 1}
        health = admin(boutique, "checkout", "/healthz")
        assert health.status_code == 503
        assert health.json()["status"]["payment"] == "NOT OK"
    finally:
        boutique.start_service("payment")

    def placed() -> httpx.Response | None:  # checkout's channel reconnects with backoff
        again = visitor.post("/cart/checkout", data=ORDER_FORM)
        return again if again.status_code == 200 else None

    wait(placed, timeout=30)
    assert orders(boutique) == kept + 1
    # checkout's health pinger retries payment up to a second apart (its own channel: 0.25 s)
    wait(lambda: admin(boutique, "checkout", "/healthz").status_code == 200, timeout=5)


def wait(probe: Any, timeout: float = 15.0) -> Any:
    """Poll ``probe()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing after {timeout} s")
