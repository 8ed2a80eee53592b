"""Messages in the viewer: a checkout trace made with the OpenTelemetry SDK, whose
checkout publishes ``orders.placed`` (a PRODUCER span) that the notification
service consumes (a CONSUMER child span), exported over real OTLP/HTTP to
``python -m clue.collector``. The JSON API names the asynchronous edges and their
destinations; in a headless Chromium, the map draws them dashed, no two labels
overlap, no edge runs behind a node, and the waterfall marks producer and
consumer spans.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium, screenshot_dir
from tests.test_collector_support import CollectorProcess, wait_for

pytestmark = pytest.mark.browser

SERVICES = [
    "frontend",
    "checkout",
    "cart",
    "currency",
    "payment",
    "shipping",
    "notification",
    "email",
    "inventory-and-stock-keeping",
]


def send_traces(endpoint: str) -> str:
    """A checkout across the boutique, with three messages, sent with the SDK; its trace id."""
    providers = {}
    for name in SERVICES:
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
        providers[name] = provider
    tracers = {name: p.get_tracer("test") for name, p in providers.items()}

    def call(caller: str, callee: str, method: str, then: Any = None) -> None:
        with (
            tracers[caller].start_as_current_span(method, kind=SpanKind.CLIENT),
            tracers[callee].start_as_current_span(method, kind=SpanKind.SERVER) as server,
        ):
            if then is not None:
                then(server)

    def message(producer: str, consumer: str, subject: str, then: Any = None) -> None:
        messaging = {MESSAGING_SYSTEM: "nats", MESSAGING_DESTINATION_NAME: subject}
        with tracers[producer].start_as_current_span(
            f"send {subject}",
            kind=SpanKind.PRODUCER,
            attributes={**messaging, MESSAGING_OPERATION_TYPE: "send"},
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        # the consumer continues the producer's trace from the message's headers, later
        with tracers[consumer].start_as_current_span(
            f"process {subject}",
            context=propagate.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={**messaging, MESSAGING_OPERATION_TYPE: "process"},
        ):
            if then is not None:
                then()

    def checkout(_: Any) -> None:
        call("checkout", "cart", "CartService/GetCart")
        call("checkout", "currency", "CurrencyService/Convert")
        call("checkout", "payment", "PaymentService/Charge", declined)
        call("checkout", "shipping", "ShippingService/ShipOrder")
        message("checkout", "notification", "orders.placed", notify)
        message("checkout", "inventory-and-stock-keeping", "stock.reserved")

    def declined(span: Any) -> None:
        span.set_status(Status(StatusCode.ERROR, "card declined"))
        # payment tells checkout asynchronously too: an edge against the flow
        message("payment", "checkout", "payments.completed")

    def notify() -> None:
        call("notification", "email", "EmailService/SendOrderConfirmation")

    with tracers["frontend"].start_as_current_span("POST /cart/checkout", kind=SpanKind.SERVER):
        call("frontend", "checkout", "CheckoutService/PlaceOrder", checkout)
        call("frontend", "cart", "CartService/EmptyCart")
        trace_id = trace.get_current_span().get_span_context().trace_id
    for provider in providers.values():
        provider.shutdown()
    return f"{trace_id:032x}"


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess()
    try:
        yield c
    finally:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def trace_id(collector: CollectorProcess) -> str:
    tid = send_traces(collector.http_endpoint)
    assert wait_for(lambda: httpx.get(f"{collector.ui}/api/traces/{tid}").status_code == 200)
    return tid


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_dir()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium(1440, 900) as driver:
        yield driver


def test_api_names_asynchronous_edges_and_destinations(
    collector: CollectorProcess, trace_id: str
) -> None:
    edges = {
        (e["parent"], e["child"]): (e["async"], e["destination"], e["calls"])
        for e in collector.api("/api/dependencies")["edges"]
    }
    assert edges == {
        ("frontend", "checkout"): (False, None, 1),
        ("frontend", "cart"): (False, None, 1),
        ("checkout", "cart"): (False, None, 1),
        ("checkout", "currency"): (False, None, 1),
        ("checkout", "payment"): (False, None, 1),
        ("checkout", "shipping"): (False, None, 1),
        ("checkout", "notification"): (True, "orders.placed", 1),
        ("checkout", "inventory-and-stock-keeping"): (True, "stock.reserved", 1),
        ("payment", "checkout"): (True, "payments.completed", 1),
        ("notification", "email"): (False, None, 1),
    }
    kinds = {(s["service"], s["kind"]) for s in collector.api(f"/api/traces/{trace_id}")["spans"]}
    assert ("checkout", "producer") in kinds and ("notification", "consumer") in kinds


# The geometry of the drawn map, read from the page: every edge's path sampled
# along its length, the boxes of its label and of the nodes.
GEOMETRY = """
const box = (r) => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom});
const svg = document.querySelector('#service-map svg');
const matrix = svg.getScreenCTM();
const edges = [...svg.querySelectorAll('g.edge')].map((g) => {
  const path = g.querySelector('path');
  const length = path.getTotalLength();
  const points = [];
  for (let i = 0; i <= 200; i++) {
    const p = path.getPointAtLength(length * i / 200).matrixTransform(matrix);
    points.push([p.x, p.y]);
  }
  return {parent: g.dataset.parent, child: g.dataset.child,
          dashes: getComputedStyle(path).strokeDasharray,
          label: box(g.querySelector('text').getBoundingClientRect()),
          text: g.querySelector('text').textContent, points};
});
const nodes = [...svg.querySelectorAll('g.node')].map((g) => ({
  service: g.dataset.service, box: box(g.querySelector('rect').getBoundingClientRect())}));
return {edges, nodes};
"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def _inside(point: list[float], box: dict[str, float], margin: float = 2.0) -> bool:
    x, y = point
    return (
        box["left"] + margin < x < box["right"] - margin
        and box["top"] + margin < y < box["bottom"] - margin
    )


def test_map_draws_async_edges_dashed_and_keeps_labels_and_edges_clear(
    collector: CollectorProcess, trace_id: str, browser: WebDriver, shots: Path
) -> None:
    browser.get(collector.ui + "/map")
    found = browser.execute_script(GEOMETRY)
    nodes = {n["service"]: n["box"] for n in found["nodes"]}
    assert sorted(nodes) == sorted(SERVICES)
    edges = {(e["parent"], e["child"]): e for e in found["edges"]}
    assert len(edges) == 10
    dashed = {pair for pair, e in edges.items() if e["dashes"] not in ("none", "")}
    assert dashed == {
        ("checkout", "notification"),
        ("checkout", "inventory-and-stock-keeping"),
        ("payment", "checkout"),
    }
    assert "orders.placed" in edges["checkout", "notification"]["text"]
    assert "orders.placed" not in edges["frontend", "checkout"]["text"]

    labels = [e["label"] for e in found["edges"]]
    for i, a in enumerate(labels):
        assert a["right"] > a["left"]
        for b in labels[i + 1 :]:
            assert not _overlap(a, b), (a, b)
        for service, node in nodes.items():
            assert not _overlap(a, node), (a, service)
    for (parent, child), e in edges.items():
        for service, node in nodes.items():
            crossing = [p for p in e["points"] if _inside(p, node)]
            assert not crossing, f"{parent} → {child} runs behind {service}"
        # it starts at its caller's box and ends, with the arrow, at its callee's
        start, end = e["points"][0], e["points"][-1]
        assert _inside(start, nodes[parent], margin=-2) and not _inside(start, nodes[child], -2)
        assert _inside(end, nodes[child], margin=-2) and not _inside(end, nodes[parent], -2)

    table = browser.find_element(By.ID, "edges").text
    assert "async orders.placed" in table
    browser.save_screenshot(str(shots / "collector-map.png"))


def test_waterfall_marks_producer_and_consumer_spans(
    collector: CollectorProcess, trace_id: str, browser: WebDriver, shots: Path
) -> None:
    browser.get(f"{collector.ui}/trace/{trace_id}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")
    by_name = {r.find_element(By.CSS_SELECTOR, ".op").text: r for r in rows}
    producer, consumer = by_name["send orders.placed"], by_name["process orders.placed"]
    assert "producer" in producer.get_attribute("class").split()
    assert "consumer" in consumer.get_attribute("class").split()
    assert producer.find_element(By.CSS_SELECTOR, ".kind-mark").text == "⇢ producer"
    assert consumer.find_element(By.CSS_SELECTOR, ".kind-mark").text == "⇠ consumer"
    assert producer.find_element(By.CSS_SELECTOR, ".dest").text == "orders.placed"
    assert consumer.find_element(By.CSS_SELECTOR, ".dest").text == "orders.placed"
    server = by_name["CheckoutService/PlaceOrder"]
    assert not server.find_elements(By.CSS_SELECTOR, ".kind-mark")

    def bar_style(row: Any) -> str:
        bar = row.find_element(By.CSS_SELECTOR, ".bar")
        return str(
            browser.execute_script("return getComputedStyle(arguments[0]).backgroundImage", bar)
        )

    assert "repeating-linear-gradient" in bar_style(producer)
    assert "repeating-linear-gradient" in bar_style(consumer)
    assert bar_style(server) == "none"
    # the consumer sits under its producer: the trace goes on through the broker
    consumer_depth = consumer.find_element(By.CSS_SELECTOR, ".wf-name").get_attribute("style")
    producer_depth = producer.find_element(By.CSS_SELECTOR, ".wf-name").get_attribute("style")
    assert consumer_depth != producer_depth

    consumer.click()
    WebDriverWait(browser, 10).until(
        ec.text_to_be_present_in_element((By.ID, "detail-summary"), "consumer")
    )
    attributes = browser.find_element(By.ID, "detail-attributes").text
    assert "messaging.destination.name orders.placed" in attributes
    browser.save_screenshot(str(shots / "collector-messaging.png"))


def test_favicon_is_served_and_linked(
    collector: CollectorProcess, trace_id: str, browser: WebDriver
) -> None:
    icon = httpx.get(collector.ui + "/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in icon.text
    moved = httpx.get(collector.ui + "/favicon.ico")
    assert moved.status_code == 301 and moved.headers["location"] == "/static/favicon.svg"
    browser.get(collector.ui + "/")
    link = browser.find_element(By.CSS_SELECTOR, 'link[rel="icon"]')
    assert link.get_attribute("href") == collector.ui + "/static/favicon.svg"
    loaded = browser.execute_script(
        "const img = new Image(); img.src = arguments[0]; await img.decode();"
        "return img.naturalWidth;",
        link.get_attribute("href"),
    )
    assert loaded > 0
    browser.get_log("browser")  # what earlier tests left
    for page in ("/", "/map", f"/trace/{trace_id}", "/logs", "/metrics"):
        browser.get(collector.ui + page)
        # no failed load (the favicon included) and no script error
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == [], page
