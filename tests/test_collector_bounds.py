"""Bounds of the collector, through its real doors: every query parameter of the JSON
API and the pages answers a bad value with a small 400 naming it; oversized names,
values and bodies sent by the OpenTelemetry SDK's OTLP exporters (gRPC and HTTP) or
as raw protobuf come back truncated with a marker, over-long metric names are
rejected through OTLP partial success, and the rest of the batch is stored."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.test_collector_support import CollectorProcess, wait_for

pytestmark = pytest.mark.e2e

MB = 1 << 20
LONG = "x" * 2000  # longer than any query value may be
MARKER = re.compile(r"…\[truncated (\d+) characters\]$")
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess()
    try:
        yield c
    finally:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def seeded(collector: CollectorProcess) -> str:
    """One stored span (with an attribute key holding a quote) and one metric, so every
    query below runs against rows; returns the trace id."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="bounds"))
    trace_id = os.urandom(16)
    now = time.time_ns()
    span = rs.scope_spans.add().spans.add(
        trace_id=trace_id,
        span_id=os.urandom(8),
        name="seed",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1000,
    )
    span.attributes.add(key='say "hi"', value=AnyValue(string_value="1"))
    post(collector, "traces", request.SerializeToString())
    metrics = ExportMetricsServiceRequest()
    scope = metrics.resource_metrics.add().scope_metrics.add()
    scope.metrics.add(name="seed.gauge").gauge.data_points.add(as_double=1.0, time_unix_nano=now)
    post(collector, "metrics", metrics.SerializeToString())
    assert wait_for(lambda: collector.api("/api/status")["stored"]["metrics"] >= 1)
    return trace_id.hex()


def post(collector: CollectorProcess, signal: str, body: bytes) -> httpx.Response:
    response = httpx.post(
        f"{collector.http_endpoint}/v1/{signal}",
        content=body,
        headers={"content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


BAD_TIMES = ["1796578655000000000", "1e300", "-1", "NaN", "inf", "-Infinity", "soon"]
API_BAD = [
    *[("/api/traces", {"start": t}, "start") for t in BAD_TIMES],
    ("/api/traces", {"end": "9999-01-01T00:00:00Z"}, "end"),
    ("/api/traces", {"end": "1e300"}, "end"),
    ("/api/traces", {"lookback": "99999999999999999999d"}, "lookback"),
    ("/api/traces", {"lookback": "36501d"}, "lookback"),
    ("/api/traces", {"lookback": "1e300"}, "lookback"),
    ("/api/traces", {"lookback": "15m", "start": "1"}, "lookback"),
    ("/api/traces", {"start": "20", "end": "10"}, "start"),
    ("/api/traces", {"min_duration": "9" * 400}, "min_duration"),
    ("/api/traces", {"max_duration": "-5ms"}, "max_duration"),
    ("/api/traces", {"min_duration": "\u0661s"}, "min_duration"),
    ("/api/traces", {"limit": "0"}, "limit"),
    ("/api/traces", {"limit": "9" * 500}, "limit"),
    ("/api/traces", {"limit": "\u0661"}, "limit"),
    ("/api/traces", {"limit": "1_0"}, "limit"),
    ("/api/traces", {"errors": "maybe"}, "errors"),
    ("/api/traces", {"service": LONG}, "service"),
    ("/api/traces", {"operation": LONG}, "operation"),
    ("/api/traces", {"attr": "novalue"}, "attr"),
    ("/api/traces", {"attr": f"k={LONG}"}, "attr"),
    ("/api/traces", [("attr", f"k{i}=v") for i in range(17)], "attr"),
    ("/api/traces", [("limit", "1"), ("limit", "2")], "limit"),
    ("/api/traces", {"colour": "red"}, "colour"),
    ("/api/traces", {LONG: "1"}, "x" * 40),
    ("/api/traces/zz", {}, "trace_id"),
    (f"/api/traces/{'a' * 2000}", {}, "trace_id"),
    ("/api/traces/" + "ab" * 16, {"limit": "1"}, "limit"),
    ("/api/logs", {"start": "1e300"}, "start"),
    ("/api/logs", {"end": "-1"}, "end"),
    ("/api/logs", {"severity": "²"}, "severity"),
    ("/api/logs", {"severity": "25"}, "severity"),
    ("/api/logs", {"q": LONG}, "q"),
    ("/api/logs", {"trace_id": "123"}, "trace_id"),
    ("/api/logs", {"limit": "10001"}, "limit"),
    ("/api/dependencies", {"start": "1796578655000000000"}, "start"),
    ("/api/dependencies", {"lookback": "1e300"}, "lookback"),
    ("/api/dependencies", {"end": "1"}, "end"),
    ("/api/metrics", {"service": LONG}, "service"),
    ("/api/metrics/seed.gauge/series", {"start": "1e300"}, "start"),
    ("/api/metrics/seed.gauge/series", {"end": "nan"}, "end"),
    ("/api/metrics/seed.gauge/series", {"service": LONG}, "service"),
    (f"/api/metrics/{'m' * 2000}/series", {}, "name"),
    ("/api/services", {"x": "1"}, "x"),
    ("/api/status", {"x": "1"}, "x"),
]


@pytest.mark.parametrize(("path", "params", "parameter"), API_BAD)
def test_a_bad_api_parameter_is_a_small_400_naming_it(
    collector: CollectorProcess, seeded: str, path: str, params: Any, parameter: str
) -> None:
    before = collector.api("/api/status")["stored"]
    response = httpx.get(collector.ui + path, params=params, timeout=10)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == parameter
    assert body["error"].startswith(parameter) or f"'{parameter}" in body["error"]
    assert len(response.content) < 400, response.text
    assert collector.api("/api/status")["stored"] == before


PAGES_BAD = [
    ("/", {"start": "1796578655000000000"}, "start"),
    ("/", {"end": "1e300"}, "end"),
    ("/", {"limit": "9" * 500}, "limit"),
    ("/", {"service": LONG}, "service"),
    ("/trace/zz", {}, "trace_id"),
    ("/logs", {"start": "-1"}, "start"),
    ("/logs", {"q": LONG}, "q"),
    ("/map", {"lookback": "99999999999999999999d"}, "lookback"),
    ("/metrics", {"service": LONG}, "service"),
    ("/metrics/seed.gauge", {"start": "inf"}, "start"),
    (f"/metrics/{'m' * 2000}", {}, "name"),
]


@pytest.mark.parametrize(("path", "params", "parameter"), PAGES_BAD)
def test_a_bad_page_parameter_is_a_readable_400_page(
    collector: CollectorProcess, seeded: str, path: str, params: Any, parameter: str
) -> None:
    response = httpx.get(collector.ui + path, params=params, timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    message = re.search(r'id="error-message">([^<]*)<', response.text)
    assert message is not None and message.group(1).startswith(parameter)
    assert len(response.content) < 3000 and "x" * 100 not in response.text


def test_the_edges_of_each_bound_are_accepted(collector: CollectorProcess, seeded: str) -> None:
    def ok(path: str, **params: str) -> Any:
        response = httpx.get(collector.ui + path, params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json() if path.startswith("/api") else response.text

    found = ok("/api/traces", start="0", end="9223372036", limit="1000")
    assert seeded in [t["trace_id"] for t in found["traces"]]
    ok("/api/traces", start="1970-01-01T00:00:00Z", lookback="", max_duration="36500d")
    assert ok("/api/traces", lookback="36500d", service="bounds")["traces"]
    ok("/api/logs", severity="24", limit="10000", q="y" * 1024)
    ok("/api/dependencies", lookback="36500d")
    ok("/api/metrics/seed.gauge/series", start="0", end="2262-04-11")
    ok("/map", lookback="36500d")
    quoted = ok("/api/traces", attr='say "hi"=1')["traces"]
    assert [t["trace_id"] for t in quoted] == [seeded]


def truncated_to(text: str, limit: int, original: int) -> bool:
    """*text* is the first *limit* characters of a longer one and the marker."""
    marker = MARKER.search(text)
    return (
        marker is not None and marker.start() == limit and int(marker.group(1)) == original - limit
    )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_exports_of_oversized_names_and_values_come_back_bounded(
    collector: CollectorProcess, protocol: str
) -> None:
    service = f"svc-{protocol}-" + "s" * MB
    resource = Resource.create({"service.name": service})
    if protocol == "grpc":
        spans: Any = GrpcSpans(endpoint=collector.grpc_endpoint, insecure=True)
        logs: Any = GrpcLogs(endpoint=collector.grpc_endpoint, insecure=True)
    else:
        spans = HttpSpans(endpoint=f"{collector.http_endpoint}/v1/traces")
        logs = HttpLogs(endpoint=f"{collector.http_endpoint}/v1/logs")
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    try:
        span_name = "n" * MB
        with tracer_provider.get_tracer("bounds").start_as_current_span(
            span_name, attributes={"k" * MB: "short", "big": "v" * MB, "fine": "kept"}
        ) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            logger_provider.get_logger("bounds").emit(
                body="b" * MB, severity_number=SeverityNumber.WARN, severity_text="W" * 300
            )
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()

    trace = wait_for(lambda: httpx.get(f"{collector.ui}/api/traces/{trace_id}").json())
    (stored,) = trace["spans"]
    assert truncated_to(stored["name"], 255, MB)
    assert truncated_to(stored["service"], 255, len(service))
    attributes = stored["attributes"]
    assert attributes["fine"] == "kept" and truncated_to(attributes["big"], 4096, MB)
    (long_key,) = [k for k in attributes if k.startswith("k")]
    assert truncated_to(long_key, 255, MB) and attributes[long_key] == "short"
    (record,) = wait_for(lambda: collector.api("/api/logs", trace_id=trace_id)["logs"])
    assert truncated_to(record["body"], 65536, MB)
    assert truncated_to(record["severity_text"], 255, 300)
    assert record["service"] == stored["service"]
    status = collector.api("/api/status")
    assert status["truncated"]["traces"] >= 4 and status["truncated"]["logs"] >= 3
    assert status["limits"]["name_characters"] == 255


def test_an_over_long_metric_name_is_rejected_and_the_rest_stored(
    collector: CollectorProcess,
) -> None:
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    now = time.time_ns()
    huge = scope.metrics.add(name="m" * MB, unit="u" * 1000)
    for i in range(3):
        huge.gauge.data_points.add(as_double=i, time_unix_nano=now + i)
    fine = scope.metrics.add(name="fine.gauge", unit="u" * 1000, description="d" * 5000)
    fine.gauge.data_points.add(as_double=7.0, time_unix_nano=now)
    response = post(collector, "metrics", request.SerializeToString())
    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_data_points == 3
    assert "metric names must be at most 255 characters" in answer.partial_success.error_message
    assert "truncated" in answer.partial_success.error_message
    assert len(answer.partial_success.error_message) < 400
    metrics = collector.api("/api/metrics")["metrics"]
    (listed,) = [m for m in metrics if m["name"] == "fine.gauge"]
    assert truncated_to(listed["unit"], 255, 1000)
    assert truncated_to(listed["description"], 4096, 5000)
    assert all(len(m["name"]) <= 255 for m in metrics)


def test_truncation_is_a_partial_success_warning_over_grpc(collector: CollectorProcess) -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    trace_id, now = os.urandom(16), time.time_ns()
    for name in ("ok", "o" * 300):
        span = spans.add(
            trace_id=trace_id,
            span_id=os.urandom(8),
            name=name,
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
        )
    span.links.add(trace_id=os.urandom(1000), span_id=os.urandom(8))
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        raw = channel.unary_unary(TRACES, None, None)(request.SerializeToString(), timeout=10)
    answer = ExportTraceServiceResponse.FromString(raw)
    assert answer.partial_success.rejected_spans == 0
    assert answer.partial_success.error_message.startswith("2 names or values")
    stored = sorted(collector.api(f"/api/traces/{trace_id.hex()}")["spans"], key=len_of_name)
    assert stored[0]["name"] == "ok" and truncated_to(stored[1]["name"], 255, 300)
    assert truncated_to(stored[1]["links"][0]["trace_id"], 32, 2000)


def len_of_name(span: dict[str, Any]) -> int:
    return len(span["name"])


def test_an_exponential_histogram_beyond_floats_is_rejected_not_fatal(
    collector: CollectorProcess,
) -> None:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="exp.h")
    now = time.time_ns()
    for scale in (-10, 0):
        point = metric.exponential_histogram.data_points.add(
            scale=scale, count=1, time_unix_nano=now + scale
        )
        point.positive.offset = 1
        point.positive.bucket_counts.append(1)
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        raw = channel.unary_unary(METRICS, None, None)(request.SerializeToString(), timeout=10)
    answer = ExportMetricsServiceResponse.FromString(raw)
    assert answer.partial_success.rejected_data_points == 1
    assert "exponential histogram" in answer.partial_success.error_message
    series = collector.api("/api/metrics/exp.h/series")
    assert series["kind"] == "exponential_histogram"
