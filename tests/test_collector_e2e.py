"""End to end: two instrumented processes (plain OpenTelemetry SDK, OTLP/gRPC and
OTLP/HTTP exporters) send traces, metrics and logs to ``python -m clue.collector``;
the JSON API and the HTML pages show them with the right structure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.test_collector_support import CollectorProcess, run_emitter, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    collector = CollectorProcess()
    try:
        tmp = tmp_path_factory.mktemp("emitters")
        outgoing = run_emitter(tmp, "checkout", "grpc", collector.grpc_endpoint)
        run_emitter(tmp, "payment", "http", collector.http_endpoint, parent=outgoing, fail=True)
        trace_id = outgoing.split("-")[1]
        yield {"collector": collector, "trace_id": trace_id, "outgoing": outgoing}
    finally:
        assert collector.stop() == 0


def test_trace_from_two_processes_has_the_right_tree(world: dict[str, Any]) -> None:
    c: CollectorProcess = world["collector"]
    trace = c.api(f"/api/traces/{world['trace_id']}")
    spans = {(s["service"], s["name"]): s for s in trace["spans"]}
    assert sorted(spans) == [
        ("checkout", "call downstream"),
        ("checkout", "handle checkout"),
        ("checkout", "load data"),
        ("payment", "call downstream"),
        ("payment", "handle payment"),
        ("payment", "load data"),
    ]
    root = spans["checkout", "handle checkout"]
    assert root["parent_id"] == "" and root["kind"] == "server" and root["depth"] == 0
    assert trace["spans"][0] is not None and trace["spans"][0]["span_id"] == root["span_id"]
    call = spans["checkout", "call downstream"]
    assert call["parent_id"] == root["span_id"] and call["kind"] == "client"
    assert call["span_id"] == world["outgoing"].split("-")[2]
    served = spans["payment", "handle payment"]
    assert served["parent_id"] == call["span_id"] and served["depth"] == 2
    assert spans["payment", "load data"]["parent_id"] == served["span_id"]
    assert served["status"] == {"code": "error", "message": "card declined"}
    assert served["attributes"] == {"http.route": "/payment", "app.fail": True}
    assert served["resource"]["service.name"] == "payment"
    assert served["resource"]["deployment.environment"] == "test"
    load = spans["checkout", "load data"]
    assert load["events"][0]["name"] == "cache miss"
    assert load["events"][0]["attributes"] == {"key": "cart:42"}
    assert trace["services"] == ["checkout", "payment"] and trace["error_count"] == 1


def test_trace_search_filters(world: dict[str, Any]) -> None:
    c: CollectorProcess = world["collector"]
    tid = world["trace_id"]

    def found(**params: Any) -> list[str]:
        return [t["trace_id"] for t in c.api("/api/traces", **params)["traces"]]

    assert found(service="payment") == [tid]
    assert found(service="payment", operation="handle payment", errors="true") == [tid]
    assert found(service="checkout", errors="true") == []
    assert found(attr="http.route=/payment") == [tid]
    assert found(attr="app.fail=true") == [tid]
    assert found(attr="http.route=/nowhere") == []
    assert found(min_duration="10ms", operation="load data") == [tid]
    assert found(min_duration="1h") == []
    assert found(lookback="1h") == [tid]
    assert found(end="2000-01-01T00:00:00Z") == []
    summary = c.api("/api/traces", service="payment")["traces"][0]
    assert summary["root"] == {"service": "checkout", "name": "handle checkout"}
    assert summary["span_count"] == 6 and summary["error_count"] == 1
    assert summary["services"] == [
        {"name": "checkout", "spans": 3},
        {"name": "payment", "spans": 3},
    ]


def test_logs_are_correlated_and_searchable(world: dict[str, Any]) -> None:
    c: CollectorProcess = world["collector"]
    tid = world["trace_id"]
    logs = wait_for(lambda: len(c.api("/api/logs", trace_id=tid)["logs"]) == 3 or None)
    assert logs, c.api("/api/logs")
    in_trace = c.api(f"/api/traces/{tid}")["logs"]
    assert [(entry["service"], entry["body"]) for entry in in_trace] == [
        ("checkout", "request received in checkout"),
        ("payment", "request received in payment"),
        ("payment", "payment failed in payment"),
    ]
    assert in_trace[0]["attributes"]["app.step"] == "start"
    errors = c.api("/api/logs", severity="error")["logs"]
    assert [(e["service"], e["severity_text"]) for e in errors] == [("payment", "ERROR")]
    assert errors[0]["trace_id"] == tid
    assert len(c.api("/api/logs", q="FAILED", service="payment")["logs"]) == 1


def test_service_map_counts_calls_and_errors(world: dict[str, Any]) -> None:
    deps = world["collector"].api("/api/dependencies")
    assert [(e["parent"], e["child"], e["calls"], e["errors"]) for e in deps["edges"]] == [
        ("checkout", "payment", 1, 1)
    ]
    nodes = {n["service"]: n for n in deps["nodes"]}
    assert nodes["checkout"]["requests"] == 1 and nodes["checkout"]["errors"] == 0
    assert nodes["payment"]["requests"] == 1 and nodes["payment"]["errors"] == 1
    assert deps["edges"][0]["call_rate"] > 0


def test_metrics_listed_and_charted(world: dict[str, Any]) -> None:
    c: CollectorProcess = world["collector"]
    listed = {(m["service"], m["name"]): m for m in c.api("/api/metrics")["metrics"]}
    assert listed["checkout", "app.requests"]["shown_as"] == "rate"
    assert listed["payment", "app.latency"]["kind"] == "histogram"
    assert listed["payment", "app.latency"]["shown_as"] == "percentiles"
    rates = c.api("/api/metrics/app.requests/series", service="checkout")
    assert rates["unit"] == "1/s" and rates["series"][0]["labels"]["route"] == "/checkout"
    assert rates["series"][0]["points"], rates
    assert all(v >= 0 for _, v in rates["series"][0]["points"])
    latency = c.api("/api/metrics/app.latency/series", service="payment")
    quantiles = {s["labels"]["quantile"] for s in latency["series"]}
    assert quantiles == {0.5, 0.9, 0.99}
    for s in latency["series"]:
        assert all(0 < v <= 50 for _, v in s["points"]), s


def test_pages_render_the_same_data(world: dict[str, Any]) -> None:
    c: CollectorProcess = world["collector"]
    tid = world["trace_id"]
    page = httpx.get(f"{c.ui}/trace/{tid}").text
    for text in (
        "handle checkout",
        "handle payment",
        "load data",
        "payment failed in payment",
        "local development tool",
    ):
        assert text in page
    assert page.count('class="span-row') == 6
    search = httpx.get(f"{c.ui}/", params={"service": "payment", "errors": "true"}).text
    assert f'href="/trace/{tid}"' in search and "1 error" in search
    logs = httpx.get(f"{c.ui}/logs", params={"severity": "error"}).text
    assert f'href="/trace/{tid}#span-' in logs
    graph = httpx.get(f"{c.ui}/map").text
    assert 'data-parent="checkout" data-child="payment"' in graph
    chart = httpx.get(f"{c.ui}/metrics/app.latency", params={"service": "payment"}).text
    assert chart.count("<polyline") == 3
    assert "app.requests" in httpx.get(f"{c.ui}/metrics").text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/traces?limit=0", "limit must be between 1 and 1000"),
        ("/api/traces?min_duration=fast", "min_duration"),
        ("/api/traces?errors=maybe", "errors must be true or false"),
        ("/api/traces?attr=novalue", "key=value"),
        ("/api/traces?start=yesterday", "start must be unix seconds or ISO 8601"),
        ("/api/traces?start=20&end=10", "start must not be after end"),
        ("/api/traces?colour=red", "colour is an unknown parameter"),
        ("/api/traces/xyz", "trace_id must be 32 hexadecimal characters"),
        ("/api/logs?severity=loud", "severity must be one of"),
        ("/api/logs?trace_id=123", "trace_id must be 32"),
        ("/api/dependencies?lookback=-1m", "lookback"),
        ("/api/metrics/app.requests/series?lookback=soon", "lookback"),
    ],
)
def test_bad_parameters_are_400_with_a_message(
    world: dict[str, Any], path: str, message: str
) -> None:
    response = httpx.get(world["collector"].ui + path)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_things_are_404_and_bad_pages_400(world: dict[str, Any]) -> None:
    ui = world["collector"].ui
    missing = httpx.get(f"{ui}/api/traces/{'ab' * 16}")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    assert httpx.get(f"{ui}/api/metrics/no.such.metric/series").status_code == 404
    page = httpx.get(f"{ui}/trace/{'ab' * 16}")
    assert page.status_code == 404 and "not found" in page.text
    bad = httpx.get(f"{ui}/", params={"min_duration": "soon"})
    assert bad.status_code == 400 and "is not a duration" in bad.text


def test_status_reports_counts(world: dict[str, Any]) -> None:
    status = world["collector"].api("/api/status")
    assert status["stored"]["traces"] == 6
    assert status["stored"]["logs"] == 3
    assert status["rejected"] == {"traces": 0, "metrics": 0, "logs": 0}
