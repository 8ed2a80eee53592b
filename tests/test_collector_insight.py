"""Searching by resource attributes, traces still receiving spans, and each span's
percentile among its operation's: data made with the OpenTelemetry SDK, exported
over real OTLP/HTTP to ``python -m clue.collector``, read through the JSON API and
on screen in a headless Chromium.
"""

from __future__ import annotations

import bisect
import math
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from clue.collector import percentiles
from clue.collector.otlp import Decoded
from clue.collector.store import Store
from tests.browser import chromium, screenshot_dir
from tests.test_collector_support import CollectorProcess, wait_for

pytestmark = pytest.mark.browser
MS = 1_000_000


def tracer_provider(endpoint: str, service: str, **resource: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    return provider


def trace_ids(collector: CollectorProcess, **params: Any) -> set[str]:
    return {t["trace_id"] for t in collector.api("/api/traces", **params)["traces"]}


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
def resourced(collector: CollectorProcess) -> dict[str, str]:
    """One trace and one log line from each of two deployments of ``inventory``."""
    ids = {}
    for env, host in (("staging", "box-7"), ("prod", "box-9")):
        resource = {"deployment.environment": env, "host.name": host}
        provider = tracer_provider(collector.http_endpoint, "inventory", **resource)
        with provider.get_tracer("test").start_as_current_span(
            "reserve", kind=SpanKind.SERVER, attributes={"sku": "A-1"}
        ) as span:
            ids[env] = f"{span.get_span_context().trace_id:032x}"
        provider.shutdown()
        logs = LoggerProvider(resource=Resource.create({"service.name": "inventory", **resource}))
        logs.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(f"{collector.http_endpoint}/v1/logs"))
        )
        logs.get_logger("inventory").emit(
            body=f"stock low on {host}",
            severity_number=SeverityNumber.WARN,
            attributes={"sku": "A-1"},
        )
        logs.shutdown()
    assert wait_for(lambda: len(collector.api("/api/logs", service="inventory")["logs"]) == 2)
    assert wait_for(lambda: len(trace_ids(collector, service="inventory")) == 2)
    return ids


def test_api_matches_resource_attributes_of_spans_and_logs(
    collector: CollectorProcess, resourced: dict[str, str]
) -> None:
    staging = "deployment.environment=staging"
    assert trace_ids(collector, attr=staging) == {resourced["staging"]}
    assert trace_ids(collector, attr="host.name=box-9") == {resourced["prod"]}
    # a span attribute and a resource attribute together, each from its own side
    assert trace_ids(collector, attr=["sku=A-1", staging]) == {resourced["staging"]}
    assert trace_ids(collector, attr="deployment.environment=qa") == set()
    lines = collector.api("/api/logs", attr=["host.name=box-7", "sku=A-1"])["logs"]
    assert [line["body"] for line in lines] == ["stock low on box-7"]
    assert collector.api("/api/logs", attr="deployment.environment=qa")["logs"] == []


def test_bad_log_attribute_filter_is_a_400_naming_it(collector: CollectorProcess) -> None:
    response = httpx.get(f"{collector.ui}/api/logs", params={"attr": "no-equals-sign"})
    assert response.status_code == 400
    assert response.json()["parameter"] == "attr"
    many = httpx.get(f"{collector.ui}/api/logs", params={"attr": [f"k{i}=v" for i in range(17)]})
    assert many.status_code == 400 and many.json()["parameter"] == "attr"


def test_search_forms_find_by_resource_attribute(
    collector: CollectorProcess, resourced: dict[str, str], browser: WebDriver
) -> None:
    wait = WebDriverWait(browser, 10)
    browser.get(collector.ui + "/")
    browser.find_element(By.ID, "attr").send_keys("deployment.environment=staging")
    browser.find_element(By.ID, "find").click()
    wait.until(ec.url_contains("attr="))
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tr.trace-row")
    assert [r.get_attribute("data-trace-id") for r in rows] == [resourced["staging"]]

    browser.get(collector.ui + "/logs")
    browser.find_element(By.ID, "attr").send_keys("host.name=box-9")
    browser.find_element(By.CSS_SELECTOR, "#log-search button[type=submit]").click()
    wait.until(ec.url_contains("attr="))
    bodies = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#log-results td.body")]
    assert len(bodies) == 1 and bodies[0].startswith("stock low on box-9")


def test_trace_whose_root_has_not_arrived_is_marked_receiving(
    collector: CollectorProcess, browser: WebDriver
) -> None:
    provider = tracer_provider(collector.http_endpoint, "orders")
    tracer = provider.get_tracer("test")
    root = tracer.start_span("POST /orders", kind=SpanKind.SERVER)
    with tracer.start_as_current_span("charge card", context=set_span_in_context(root)):
        pass  # exported as it ends, before its parent
    trace_id = f"{root.get_span_context().trace_id:032x}"

    def summary() -> Any:
        found = collector.api("/api/traces", service="orders")["traces"]
        return found[0] if found and found[0]["trace_id"] == trace_id else None

    assert wait_for(summary)["receiving"] is True
    assert collector.api(f"/api/traces/{trace_id}")["receiving"] is True
    browser.get(collector.ui + "/?service=orders")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-trace-id="{trace_id}"]')
    assert row.find_element(By.CSS_SELECTOR, ".receiving").text == "receiving…"
    browser.save_screenshot(str(screenshot_dir() / "collector-receiving.png"))

    root.end()
    provider.shutdown()
    assert wait_for(lambda: summary()["span_count"] == 2)
    assert summary()["receiving"] is False
    browser.get(collector.ui + "/?service=orders")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-trace-id="{trace_id}"]')
    assert row.find_elements(By.CSS_SELECTOR, ".receiving") == []
    assert row.find_element(By.CSS_SELECTOR, ".trace-link").text == "orders: POST /orders"


def test_a_trace_whose_parent_never_came_is_final_after_a_minute(
    collector: CollectorProcess,
) -> None:
    provider = tracer_provider(collector.http_endpoint, "batch-job")
    tracer = provider.get_tracer("test")
    caller = tracer.start_span("never exported")  # a caller that does not report here
    ended = time.time_ns() - 120_000 * MS
    tracer.start_span(
        "nightly step", context=set_span_in_context(caller), start_time=ended - MS
    ).end(end_time=ended)
    provider.shutdown()
    (found,) = wait_for(lambda: collector.api("/api/traces", service="batch-job")["traces"])
    assert found["receiving"] is False
    assert found["root"]["name"] == "nightly step"


def span_rows(durations: list[int], first: int = 0) -> list[tuple[Any, ...]]:
    """Stored span rows of the operation db/query, one per duration."""
    return [
        (f"{i:032x}", f"{i:016x}", "", "db", "query", 1, i, d, 0, "", "{}", "[]", "[]", "s", "r")
        for i, d in enumerate(durations, start=first)
    ]


def stats_of(store: Store, duration_ns: int) -> dict[str, Any]:
    span = {"service": "db", "name": "query", "duration_ns": duration_ns}
    percentiles.operation_stats(store, [span])
    return span


def nearest_rank(ordered: list[int], q: float) -> int:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def test_percentiles_of_a_large_operation_within_two_percent() -> None:
    rng = random.Random(7)
    # 50,000 durations spread log-uniformly from 1 µs to 1 s, many of them repeated
    durations = [int(10 ** rng.uniform(3, 9)) for _ in range(50_000)]
    store = Store()
    store.add("traces", Decoded(rows=span_rows(durations), resources={"r": ("db", "{}")}))
    ordered = sorted(durations)
    for duration in (1_000, 5_432, 77_777, 1_000_000, 31_415_926, 999_000_000):
        span = stats_of(store, duration)
        # the documented precision: exact but for the spans within 2% of its duration
        low = bisect.bisect_left(ordered, duration / 1.02) / len(ordered)
        high = bisect.bisect_left(ordered, duration * 1.02) / len(ordered)
        assert 100 * low - 0.05 <= span["percentile"] <= 100 * high + 0.05, duration
    stats = span["operation"]
    assert stats["spans"] == 50_000
    for key, q in (("p50_ns", 0.5), ("p95_ns", 0.95)):
        exact = nearest_rank(ordered, q)
        assert abs(stats[key] - exact) <= 0.02 * exact, (key, stats[key], exact)


def test_percentiles_follow_eviction_and_resent_spans() -> None:
    store = Store(max_spans=1000)
    resources = {"r": ("db", "{}")}
    for batch in range(3):  # 3,000 spans of 1..3000 ms: the oldest 2,000 evicted
        store.add(
            "traces",
            Decoded(
                rows=span_rows([(batch * 1000 + i + 1) * MS for i in range(1000)], batch * 1000),
                resources=resources,
            ),
        )
    store.add(
        "traces", Decoded(rows=span_rows([2500 * MS] * 10, 2000), resources=resources)
    )  # re-sent
    span = stats_of(store, 2500 * MS)
    assert span["operation"] == {"spans": 1000, "p50_ns": 2500 * MS, "p95_ns": 2950 * MS}
    assert span["percentile"] == 49.9  # 2001..2499 ms are faster: 499 of 1,000
    assert store.evict_old(now_ns=10**12 + store.max_age_ns) == 1000  # every span is old
    assert stats_of(store, 2500 * MS)["operation"] == {"spans": 0, "p50_ns": None, "p95_ns": None}


def test_a_database_of_the_indexed_schema_gets_its_histograms(tmp_path: Path) -> None:
    path = str(tmp_path / "spans.db")
    store = Store(path)
    store.add(
        "traces",
        Decoded(rows=span_rows([i * MS for i in range(1, 101)]), resources={"r": ("db", "{}")}),
    )
    store.close()
    with closing(sqlite3.connect(path)) as db, db:  # as the collector stored it before
        db.execute("DROP TABLE durations")
        db.execute("CREATE INDEX spans_by_operation ON spans (service, name, duration_ns)")
    store = Store(path)
    span = stats_of(store, 90 * MS)
    assert span["percentile"] == 89.0
    assert span["operation"] == {"spans": 100, "p50_ns": 50 * MS, "p95_ns": 95 * MS}
    (index,) = store.query("SELECT count(*) FROM sqlite_master WHERE name = 'spans_by_operation'")
    assert index[0] == 0
    store.close()


def test_span_percentile_among_its_operation(
    collector: CollectorProcess, browser: WebDriver
) -> None:
    provider = tracer_provider(collector.http_endpoint, "pricing")
    tracer = provider.get_tracer("test")
    start = time.time_ns() - 60_000 * MS  # within the collector's retention
    for ms in range(1, 21):  # 20 earlier quotes of 1 to 20 ms
        tracer.start_span("quote", start_time=start).end(end_time=start + ms * MS)
    slow = tracer.start_span("quote", start_time=start)
    slow.end(end_time=start + 19_500_000)
    provider.shutdown()
    trace_id = f"{slow.get_span_context().trace_id:032x}"
    assert wait_for(lambda: len(trace_ids(collector, service="pricing", limit=100)) == 21)

    (span,) = collector.api(f"/api/traces/{trace_id}")["spans"]
    # 19 of the 21 stored quotes are faster; nearest-rank p50 is the 11th, p95 the 20th
    assert span["percentile"] == 90.5
    assert span["operation"] == {
        "spans": 21,
        "p50_ns": 11 * MS,
        "p95_ns": 19_500_000,
    }

    browser.get(f"{collector.ui}/trace/{trace_id}")
    browser.find_element(By.CSS_SELECTOR, ".span-row").click()
    summary = WebDriverWait(browser, 10).until(
        ec.visibility_of_element_located((By.ID, "detail-summary"))
    )
    WebDriverWait(browser, 10).until(lambda _: "slower than" in summary.text)
    assert "slower than 90.5% of 21 spans · p50 11.0ms · p95 19.5ms" in summary.text
    browser.save_screenshot(str(screenshot_dir() / "collector-percentile.png"))
