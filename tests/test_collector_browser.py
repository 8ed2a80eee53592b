"""A real headless Chromium uses the collector's UI: search, waterfall, span
details, logs, service map and a metric chart.

Screenshots go to a temporary directory; run with ``CLUE_UPDATE_SCREENSHOTS=1``
to refresh the committed ones in ``docs/images/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import chromium, screenshot_dir
from tests.test_collector_support import CollectorProcess

pytestmark = pytest.mark.browser
MS = 1_000_000

# (service, name, kind, parent index, start ms, duration ms, error, attributes)
CHECKOUT = [
    (
        "frontend",
        "POST /cart/checkout",
        Span.SPAN_KIND_SERVER,
        None,
        0,
        182,
        False,
        {
            "http.request.method": "POST",
            "http.route": "/cart/checkout",
            "http.response.status_code": 500,
        },
    ),
    (
        "frontend",
        "CheckoutService/PlaceOrder",
        Span.SPAN_KIND_CLIENT,
        0,
        3,
        175,
        False,
        {"rpc.system": "grpc"},
    ),
    (
        "checkout",
        "CheckoutService/PlaceOrder",
        Span.SPAN_KIND_SERVER,
        1,
        5,
        170,
        True,
        {"rpc.system": "grpc", "order.items": 3},
    ),
    (
        "checkout",
        "CartService/GetCart",
        Span.SPAN_KIND_CLIENT,
        2,
        8,
        21,
        False,
        {"rpc.system": "grpc"},
    ),
    ("cart", "CartService/GetCart", Span.SPAN_KIND_SERVER, 3, 10, 17, False, {"cart.items": 3}),
    ("cart", "redis HGETALL", Span.SPAN_KIND_CLIENT, 4, 12, 9, False, {"db.system": "redis"}),
    (
        "checkout",
        "CurrencyService/Convert",
        Span.SPAN_KIND_CLIENT,
        2,
        31,
        12,
        False,
        {"rpc.system": "grpc"},
    ),
    (
        "currency",
        "CurrencyService/Convert",
        Span.SPAN_KIND_SERVER,
        6,
        33,
        8,
        False,
        {"currency.to": "EUR"},
    ),
    (
        "checkout",
        "PaymentService/Charge",
        Span.SPAN_KIND_CLIENT,
        2,
        46,
        96,
        False,
        {"rpc.system": "grpc"},
    ),
    (
        "payment",
        "PaymentService/Charge",
        Span.SPAN_KIND_SERVER,
        8,
        48,
        92,
        True,
        {"card.type": "visa", "amount.units": 127},
    ),
    ("payment", "fraud check", Span.SPAN_KIND_INTERNAL, 9, 52, 60, False, {"fraud.score": 0.12}),
    (
        "checkout",
        "ShippingService/Quote",
        Span.SPAN_KIND_CLIENT,
        2,
        145,
        24,
        False,
        {"rpc.system": "grpc"},
    ),
    (
        "shipping",
        "ShippingService/Quote",
        Span.SPAN_KIND_SERVER,
        11,
        147,
        20,
        False,
        {"shipping.zip": "94043"},
    ),
]


def _kv(attrs: dict[str, object]) -> list[KeyValue]:
    out = []
    for key, value in attrs.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=str(value))
        out.append(KeyValue(key=key, value=any_value))
    return out


def _resource(request_list: object, service: str) -> object:
    item = request_list.add()  # type: ignore[attr-defined]
    item.resource.attributes.extend(_kv({"service.name": service, "service.version": "1.4.0"}))
    return item


def seed(collector: CollectorProcess) -> str:
    """Send a checkout trace across six services (with logs), a few other traces and
    a minute of metrics, all through OTLP/HTTP protobuf; return the checkout trace id."""
    now = time.time_ns()
    tid = os.urandom(16)
    ids = [os.urandom(8) for _ in CHECKOUT]
    traces = ExportTraceServiceRequest()
    logs = ExportLogsServiceRequest()
    by_service: dict[str, object] = {}
    for i, (service, name, kind, parent, start, dur, error, attrs) in enumerate(CHECKOUT):
        if service not in by_service:
            by_service[service] = _resource(traces.resource_spans, service).scope_spans.add()  # type: ignore[attr-defined]
        span = by_service[service].spans.add(  # type: ignore[attr-defined]
            trace_id=tid,
            span_id=ids[i],
            parent_span_id=ids[parent] if parent is not None else b"",
            name=name,
            kind=kind,
            start_time_unix_nano=now + start * MS,
            end_time_unix_nano=now + (start + dur) * MS,
            attributes=_kv(attrs),
        )
        if error:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="card declined"))
            span.events.add(
                time_unix_nano=now + (start + dur - 2) * MS,
                name="exception",
                attributes=_kv({"exception.type": "CardDeclined"}),
            )
        records = _resource(logs.resource_logs, service).scope_logs.add().log_records  # type: ignore[attr-defined]
        severity, text = (17, "ERROR") if error else (9, "INFO")
        records.add(
            time_unix_nano=now + (start + 1) * MS,
            severity_number=severity,
            severity_text=text,
            body=AnyValue(string_value=f"{name}: {'failed' if error else 'ok'}"),
            trace_id=tid,
            span_id=ids[i],
            attributes=_kv({"component": service}),
        )
    for n, (service, name, ms) in enumerate(
        [
            ("frontend", "GET /", 12),
            ("frontend", "GET /product/{id}", 35),
            ("cart", "CartService/AddItem", 7),
        ]
    ):
        other = _resource(traces.resource_spans, service).scope_spans.add()  # type: ignore[attr-defined]
        other.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=name,
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - (n + 1) * 1000 * MS,
            end_time_unix_nano=now - (n + 1) * 1000 * MS + ms * MS,
        )
    metrics = ExportMetricsServiceRequest()
    scope = _resource(metrics.resource_metrics, "frontend").scope_metrics.add()  # type: ignore[attr-defined]
    counter = scope.metrics.add(name="http.server.requests", unit="1", description="requests")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = 2
    histogram = scope.metrics.add(name="http.server.duration", unit="ms", description="latency")
    histogram.histogram.aggregation_temporality = 2
    bounds = [5, 10, 25, 50, 100, 250, 500]
    start = now - 60 * 10**9
    total = [0] * (len(bounds) + 1)
    for step in range(1, 13):
        t = start + step * 5 * 10**9
        for route, per_second in (("/", 8 + step % 4), ("/cart", 3 + step % 3)):
            counter.sum.data_points.add(
                start_time_unix_nano=start,
                time_unix_nano=t,
                as_int=per_second * 5 * step,
                attributes=_kv({"http.route": route}),
            )
        shares = [5, 20, 30, 25, 10, 6, 3, 1] if step % 4 else [2, 8, 20, 30, 22, 12, 5, 1]
        for b, share in enumerate(shares):
            total[b] += share * (1 + step % 3)
        histogram.histogram.data_points.add(
            start_time_unix_nano=start,
            time_unix_nano=t,
            count=sum(total),
            bucket_counts=list(total),
            explicit_bounds=bounds,
        )
    for signal, message in (("traces", traces), ("logs", logs), ("metrics", metrics)):
        response = httpx.post(
            f"{collector.http_endpoint}/v1/{signal}",
            content=message.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200, response.text
    return tid.hex()


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess()
    try:
        yield c
    finally:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium(1440, 900) as driver:
        yield driver


@pytest.fixture(scope="module")
def trace_id(collector: CollectorProcess) -> str:
    """The checkout trace (with its logs and metrics), sent once for the module's tests."""
    return seed(collector)


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_dir()


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,))


def rows_when(
    driver: WebDriver, css: str, ready: Callable[[list[WebElement]], bool]
) -> list[WebElement]:
    """The elements matching ``css`` once they satisfy ``ready``: a search may change the
    address before its results are on the page."""
    found: list[WebElement] = []

    def settled(d: WebDriver) -> bool:
        found[:] = d.find_elements(By.CSS_SELECTOR, css)
        return ready(found)

    wait(driver).until(settled)
    return found


def test_find_a_trace_and_read_its_waterfall(
    collector: CollectorProcess, trace_id: str, browser: WebDriver, shots: Path
) -> None:
    browser.get(collector.ui + "/")
    assert "local development tool" in browser.find_element(By.TAG_NAME, "footer").text
    Select(browser.find_element(By.ID, "service")).select_by_visible_text("payment")
    browser.find_element(By.ID, "errors").click()
    browser.find_element(By.ID, "min_duration").send_keys("50ms")
    browser.find_element(By.ID, "find").click()
    wait(browser).until(ec.url_contains("service=payment"))
    rows = rows_when(
        browser,
        "#results tr.trace-row",
        lambda rows: [r.get_attribute("data-trace-id") for r in rows] == [trace_id],
    )
    assert "frontend: POST /cart/checkout" in rows[0].text
    assert "2 errors" in rows[0].text and "13" in rows[0].text
    browser.save_screenshot(str(shots / "collector-search.png"))

    rows[0].find_element(By.CSS_SELECTOR, "a.trace-link").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "waterfall")))
    assert browser.find_element(By.ID, "trace-title").text == "frontend: POST /cart/checkout"
    spans = browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")
    assert len(spans) == 13
    names = [s.find_element(By.CSS_SELECTOR, ".wf-name").text for s in spans]
    assert names[0].startswith("frontend POST /cart/checkout")
    assert names[4].startswith("cart CartService/GetCart")  # depth-first: under GetCart client
    errored = [
        s.find_element(By.CSS_SELECTOR, ".op").text
        for s in spans
        if "error" in s.get_attribute("class")
    ]
    assert errored == ["CheckoutService/PlaceOrder", "PaymentService/Charge"]
    root_bar = spans[0].find_element(By.CSS_SELECTOR, ".bar")
    charge_bar = spans[9].find_element(By.CSS_SELECTOR, ".bar")
    assert root_bar.size["width"] > 3 * charge_bar.size["width"] / 2 > 0
    assert charge_bar.location["x"] > root_bar.location["x"]
    logs = browser.find_elements(By.CSS_SELECTOR, "#trace-logs li.log")
    assert len(logs) == 13 and "POST /cart/checkout: ok" in logs[0].text

    spans[9].click()
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "detail-title"), "payment: PaymentService/Charge")
    )
    attributes = browser.find_element(By.ID, "detail-attributes").text
    assert "card.type visa" in attributes and "amount.units 127" in attributes
    assert "error: card declined" in browser.find_element(By.ID, "detail-summary").text
    assert "service.name payment" in browser.find_element(By.ID, "detail-resource").text
    assert "exception" in browser.find_element(By.ID, "span-detail").text
    browser.save_screenshot(str(shots / "collector-trace.png"))


def test_logs_map_and_metrics_pages(
    collector: CollectorProcess, trace_id: str, browser: WebDriver, shots: Path
) -> None:
    browser.get(collector.ui + "/logs")
    browser.save_screenshot(str(shots / "collector-logs.png"))
    Select(browser.find_element(By.ID, "severity")).select_by_visible_text("error")
    browser.find_element(By.CSS_SELECTOR, "#log-search button").click()
    wait(browser).until(ec.url_contains("severity=error"))
    rows = rows_when(
        browser,
        "#log-results tbody tr",
        lambda rows: len(rows) == 2 and all("ERROR" in r.text for r in rows),
    )
    assert "PaymentService/Charge: failed" in rows[0].text  # newest first
    rows[0].find_element(By.CSS_SELECTOR, "a.trace-link").click()  # opens the trace at its span
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "detail-title"), "payment: PaymentService/Charge")
    )
    selected = browser.find_element(By.CSS_SELECTOR, "#waterfall .span-row.selected")
    assert selected.find_element(By.CSS_SELECTOR, ".op").text == "PaymentService/Charge"
    browser.find_element(By.CSS_SELECTOR, "#trace-logs li.log").click()  # a log selects its span
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "detail-title"), "frontend: POST /cart/checkout")
    )

    browser.get(collector.ui + "/map")
    nodes = browser.find_elements(By.CSS_SELECTOR, "#service-map g.node")
    assert sorted(n.get_attribute("data-service") for n in nodes) == [
        "cart",
        "checkout",
        "currency",
        "frontend",
        "payment",
        "shipping",
    ]
    edges = {
        (e.get_attribute("data-parent"), e.get_attribute("data-child"))
        for e in browser.find_elements(By.CSS_SELECTOR, "#service-map g.edge")
    }
    assert edges == {
        ("frontend", "checkout"),
        ("checkout", "cart"),
        ("checkout", "currency"),
        ("checkout", "payment"),
        ("checkout", "shipping"),
    }
    assert browser.find_elements(By.CSS_SELECTOR, "#service-map g.edge.error")
    # the map's screenshot, with messages, is taken by test_collector_messaging

    browser.get(collector.ui + "/metrics")
    browser.find_element(By.LINK_TEXT, "http.server.duration").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "metric-chart")))
    assert "shown as percentiles" in browser.find_element(By.ID, "metric-name").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#metric-chart polyline")) == 3
    browser.save_screenshot(str(shots / "collector-metric.png"))
