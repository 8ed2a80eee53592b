"""Live tail: ``/api/tail/logs`` and ``/api/tail/traces`` stream what arrives (over real
OTLP from the OpenTelemetry SDK) as server-sent events, with the searches' filters,
bounded (clients, rate, heartbeat); the live pages, in a headless Chromium, show new
lines as they come and hold them while paused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from clue.collector import Collector, Config
from clue.collector.tail import Tail
from tests.browser import chromium, screenshot_dir
from tests.test_collector_support import CollectorProcess, wait_for

pytestmark = pytest.mark.browser


def log(endpoint: str, service: str, *bodies: str, batch: bool = False) -> None:
    """Export *bodies* as log records of *service* (in one request when *batch*)."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPLogExporter(f"{endpoint}/v1/logs")
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter) if batch else SimpleLogRecordProcessor(exporter)
    )
    for body in bodies:
        provider.get_logger("tail").emit(body=body, severity_number=SeverityNumber.INFO)
    provider.shutdown()


def tracer_provider(endpoint: str, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    return provider


def events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event name, parsed data) of each event of a stream; ("comment", text) for comments."""
    name = "message"
    for line in response.iter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            yield name, json.loads(line[5:])
            name = "message"


def following(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """The events of a stream, once it says it follows (its cursor is set)."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = events(response)
    assert next(stream) == ("comment", "following")
    return stream


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess()
    try:
        yield c
    finally:
        assert c.stop() == 0


@pytest.fixture
def small() -> Iterator[Collector]:
    """A collector in this process with tight tail limits."""
    c = Collector(Config(grpc_port=0, http_port=0, ui_port=0))
    c.tail = Tail(c.store, max_clients=2, max_per_second=8, poll_s=0.25, heartbeat_s=0.3)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium(1280, 900) as driver:
        yield driver


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        ("/api/tail/logs", {"severity": "loud"}, "severity"),
        ("/api/tail/logs", {"lookback": "5m"}, "lookback"),
        ("/api/tail/logs", {"attr": [f"k{i}=v" for i in range(17)]}, "attr"),
        ("/api/tail/logs", {"trace_id": "xyz"}, "trace_id"),
        ("/api/tail/traces", {"min_duration": "soon"}, "min_duration"),
        ("/api/tail/traces", {"limit": "5"}, "limit"),
        ("/api/tail/traces", {"attr": "no-equals"}, "attr"),
    ],
)
def test_bad_tail_filters_are_400s_naming_them(
    collector: CollectorProcess, path: str, query: dict[str, Any], parameter: str
) -> None:
    response = httpx.get(collector.ui + path, params=query, timeout=5)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter
    page = httpx.get(collector.ui + path.removeprefix("/api"), params=query, timeout=5)
    assert page.status_code == 400 and parameter in page.text


def test_log_tail_streams_new_records_matching_its_filters(collector: CollectorProcess) -> None:
    url = collector.ui + "/api/tail/logs"
    with httpx.stream("GET", url, params={"service": "tail-api"}, timeout=10) as response:
        stream = following(response)
        log(collector.http_endpoint, "someone-else", "not for this tail")
        log(collector.http_endpoint, "tail-api", "order 7 shipped")
        name, record = next(e for e in stream if e[0] != "comment")
    assert name == "log"
    assert (record["service"], record["body"], record["severity_text"]) == (
        "tail-api",
        "order 7 shipped",
        "INFO",
    )


def test_trace_tail_sends_a_trace_again_as_its_spans_arrive(collector: CollectorProcess) -> None:
    url = collector.ui + "/api/tail/traces"
    provider = tracer_provider(collector.http_endpoint, "tail-orders")
    tracer = provider.get_tracer("test")
    with httpx.stream("GET", url, params={"service": "tail-orders"}, timeout=10) as response:
        stream = (e for e in following(response) if e[0] != "comment")
        root = tracer.start_span("POST /orders", kind=SpanKind.SERVER)
        tracer.start_span("charge card", context=set_span_in_context(root)).end()
        name, first = next(stream)
        assert name == "trace"
        assert (first["span_count"], first["receiving"]) == (1, True)
        root.end()
        name, again = next(stream)
    provider.shutdown()
    assert again["trace_id"] == first["trace_id"]
    assert (again["span_count"], again["receiving"]) == (2, False)
    assert again["root"] == {"service": "tail-orders", "name": "POST /orders"}


def test_tails_beyond_the_limit_get_429_and_a_closed_one_frees_its_slot(small: Collector) -> None:
    url = small.ui_url + "api/tail/logs"
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", url) as one, client.stream("GET", url) as two:
            # kept: dropping a stream's line iterator closes its connection
            streams = following(one), following(two)
            refused = client.get(url)
            assert refused.status_code == 429
            assert "at most 2 live tails" in refused.json()["error"]
            assert refused.headers["retry-after"] == "5"
            assert small.tail.clients == len(streams)

        def admitted() -> bool:
            with client.stream("GET", url) as three:
                return three.status_code == 200

        assert wait_for(admitted)


def test_a_quiet_tail_sends_heartbeats(small: Collector) -> None:
    with httpx.stream("GET", small.ui_url + "api/tail/traces", timeout=10) as response:
        stream = following(response)
        assert next(stream) == ("comment", "heartbeat")


def test_a_burst_beyond_the_rate_sends_the_newest_and_counts_the_rest(small: Collector) -> None:
    endpoint = f"http://127.0.0.1:{small.http_port}"
    with httpx.stream("GET", small.ui_url + "api/tail/logs", timeout=10) as response:
        stream = (e for e in following(response) if e[0] != "comment")
        log(endpoint, "bursty", *(f"line {i}" for i in range(10)), batch=True)
        # 8 a second, polled every 0.25 s: 2 records a poll at most
        got = [next(stream) for _ in range(3)]
    assert got == [
        ("log", got[0][1]),
        ("log", got[1][1]),
        ("skipped", {"skipped": 8}),
    ]
    assert [e[1]["body"] for e in got[:2]] == ["line 8", "line 9"]


def rows_text(browser: WebDriver) -> list[str]:
    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#tail tbody tr")]


def test_live_log_page_shows_new_lines_and_holds_them_while_paused(
    collector: CollectorProcess, browser: WebDriver
) -> None:
    wait = WebDriverWait(browser, 10)
    browser.get(collector.ui + "/tail/logs?service=live-shop")
    status = browser.find_element(By.ID, "tail-status")
    wait.until(lambda _: status.text == "following")
    assert rows_text(browser) == []

    log(collector.http_endpoint, "live-shop", "cart 12 checked out")
    wait.until(lambda _: any("cart 12 checked out" in row for row in rows_text(browser)))

    pause = browser.find_element(By.ID, "pause")
    pause.click()
    assert pause.text == "Resume"
    log(collector.http_endpoint, "live-shop", "cart 13 checked out")
    fresh = browser.find_element(By.ID, "tail-new")
    wait.until(lambda _: fresh.text == "1 new")
    assert not any("cart 13" in row for row in rows_text(browser))
    browser.save_screenshot(str(screenshot_dir() / "collector-live-logs.png"))

    pause.click()
    assert pause.text == "Pause" and not fresh.is_displayed()
    rows = rows_text(browser)
    assert "cart 13 checked out" in rows[0] and "cart 12 checked out" in rows[1]


def test_live_trace_page_shows_a_trace_receiving_then_complete(
    collector: CollectorProcess, browser: WebDriver
) -> None:
    wait = WebDriverWait(browser, 10)
    browser.get(collector.ui + "/tail/traces?service=live-orders")
    status = browser.find_element(By.ID, "tail-status")
    wait.until(lambda _: status.text == "following")
    provider = tracer_provider(collector.http_endpoint, "live-orders")
    tracer = provider.get_tracer("test")
    root = tracer.start_span("POST /orders", kind=SpanKind.SERVER)
    tracer.start_span("reserve stock", context=set_span_in_context(root)).end()
    trace_id = f"{root.get_span_context().trace_id:032x}"
    row = f'#tail tr[data-trace-id="{trace_id}"]'
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, row + " .receiving"))
    assert browser.find_element(By.CSS_SELECTOR, row + " .receiving").text == "receiving…"

    root.end()
    provider.shutdown()
    WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda b: "POST /orders" in b.find_element(By.CSS_SELECTOR, row).text
    )
    assert browser.find_elements(By.CSS_SELECTOR, row + " .receiving") == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tail tbody tr")) == 1
