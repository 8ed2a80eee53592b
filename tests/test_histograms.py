"""Histograms aggregated by clue (clue.telemetry.histograms), read back through real readers."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Histogram as SDKHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import clue
from clue import telemetry
from clue.asgi import ClueMiddleware
from clue.telemetry import histograms
from clue.telemetry.histograms import CARDINALITY_LIMIT, ClueHistogram
from tests.otlp_receiver import OTLPReceiver
from tests.test_asgi import serve_app
from tests.test_telemetry_configure import clean_env  # noqa: F401 - autouse: no OTEL_*, clue's globals

BOUNDS = (1.0, 2.0, 5.0)


def points(reader: InMemoryMetricReader, name: str) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    return [
        p
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def histogram(name: str = "test.latency") -> metrics.Histogram:
    meter = metrics.get_meter("tests.histograms")
    return meter.create_histogram(name, unit="ms", explicit_bucket_boundaries_advisory=BOUNDS)


def test_clue_meters_hand_out_clue_histograms_that_aggregate_like_the_sdk() -> None:
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    ours = histogram()
    assert isinstance(ours, ClueHistogram)
    sdk_reader = InMemoryMetricReader()
    sdk = (
        MeterProvider(metric_readers=[sdk_reader])
        .get_meter("sdk")
        .create_histogram("test.latency", unit="ms", explicit_bucket_boundaries_advisory=BOUNDS)
    )
    values = [0.0, 0.5, 1.0, 1.5, 2.0, 4.99, 5.0, 5.01, 1e9]  # bounds are inclusive upper limits
    for value in values:
        for h in (ours, sdk):
            h.record(value, {"route": "/a", "code": 200})
            h.record(value * 2, {"code": 200, "route": "/b"})

    def shape(p: HistogramDataPoint) -> tuple[Any, ...]:
        return (
            sorted(p.attributes.items()),
            p.count,
            p.sum,
            tuple(p.bucket_counts),
            tuple(p.explicit_bounds),
            p.min,
            p.max,
        )

    mine = sorted(map(shape, points(reader, "test.latency")))
    theirs = sorted(map(shape, points(sdk_reader, "test.latency")))
    assert mine == theirs
    assert mine[0][3] == (3, 2, 2, 2)  # "/a": <=1, (1, 2], (2, 5], > 5


async def test_the_asgi_duration_histogram_reaches_otlp_after_a_reconfiguration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = OTLPReceiver()
    receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        reader = InMemoryMetricReader()
        clue.configure("shop", metric_exporter=reader)  # the OTLP exporter comes from env
        clue.configure("shop")

        async def product(request: Request) -> JSONResponse:
            return JSONResponse({"id": request.path_params["pid"]})

        app = ClueMiddleware(Starlette(routes=[Route("/products/{pid}", product)]))
        async with serve_app(app) as client:
            for _ in range(3):
                assert (await client.get("/products/7")).status_code == 200
            assert (await client.get("/nowhere")).status_code == 404
        clue.shutdown()  # the final export carries the histogram
        received = receiver.wait_for(
            lambda r: [m for m in r.metrics() if m.name == "http.server.request.duration"]
        )
    finally:
        receiver.stop()
    got = {
        (p.attributes.get("http.route"), p.attributes["http.response.status_code"]): p.count
        for m in received
        for p in m.points
    }
    assert got == {("/products/{pid}", 200): 3, (None, 404): 1}
    assert received[0].unit == "s" and received[0].scope == "clue.asgi"
    assert points(reader, "http.server.request.duration") == []  # reconfigured before


def test_delta_readers_get_each_interval_and_cumulative_readers_everything() -> None:
    delta = InMemoryMetricReader(preferred_temporality={SDKHistogram: AggregationTemporality.DELTA})
    clue.configure("svc", metric_exporter=delta, exporter="none", prometheus=True)
    h = histogram()
    h.record(1.0)
    h.record(3.0)
    [first] = points(delta, "test.latency")
    assert (first.count, first.sum, first.min, first.max) == (2, 4.0, 1.0, 3.0)
    assert points(delta, "test.latency") == []  # nothing new in this interval
    h.record(7.0)
    [second] = points(delta, "test.latency")
    assert (second.count, second.min, second.max) == (1, 7.0, 7.0)
    assert second.start_time_unix_nano >= first.time_unix_nano
    exposition = _prometheus_text().splitlines()  # the cumulative reader saw all three
    assert [line.rsplit(" ", 1)[1] for line in exposition if "test_latency_milliseconds_" in line][
        -6:
    ] == ["1.0", "1.0", "2.0", "3.0", "3.0", "11.0"]  # buckets <=1, <=2, <=5, +Inf; count; sum


def _prometheus_text() -> str:
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY).decode()


def test_reconfiguring_moves_histograms_to_the_new_readers() -> None:
    first = InMemoryMetricReader()
    clue.configure("one", metric_exporter=first, exporter="none")
    h = histogram()
    h.record(1.0)
    second = InMemoryMetricReader()
    clue.configure("two", metric_exporter=second, exporter="none")
    h.record(2.0)
    assert [p.count for p in points(second, "test.latency")] == [1]
    clue.shutdown()
    h.record(3.0)  # after shutdown: dropped, nothing kept
    third = InMemoryMetricReader()
    clue.configure("three", metric_exporter=third, exporter="none")
    h.record(4.0)
    assert [(p.count, p.sum) for p in points(third, "test.latency")] == [(1, 4.0)]


def test_bad_amounts_are_ignored_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    h = histogram("test.bad")
    h.record(2.0, {"k": "v"})
    with caplog.at_level(logging.WARNING, logger="clue.telemetry.histograms"):
        for bad in (-1.0, math.nan, math.inf):
            h.record(bad, {"k": "v"})
    [point] = points(reader, "test.bad")
    assert (point.count, point.sum) == (1, 2.0)
    warnings = [r for r in caplog.records if r.name == "clue.telemetry.histograms"]
    assert len(warnings) == 1 and "test.bad ignores -1.0" in warnings[0].getMessage()


def test_sequence_values_no_attributes_and_the_overflow_set() -> None:
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    h = histogram("test.many")
    h.record(1.0, {"tags": ["a", "b"]})
    h.record(1.0, {"tags": ["a", "b"]})
    h.record(1.0)
    for n in range(CARDINALITY_LIMIT + 10):
        h.record(1.0, {"n": n})
    found = {tuple(sorted(p.attributes.items())): p.count for p in points(reader, "test.many")}
    assert found[(("tags", ("a", "b")),)] == 2
    assert found[()] == 1
    assert len(found) == CARDINALITY_LIMIT
    assert found[(("otel.metric.overflow", True),)] == CARDINALITY_LIMIT + 10 - (
        CARDINALITY_LIMIT - 3
    )


def test_readers_clue_cannot_hook_leave_the_recording_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = InMemoryMetricReader()
    monkeypatch.setattr(histograms.REGISTRY, "attach", lambda readers, resource: ())
    clue.configure("svc", metric_exporter=reader, exporter="none")
    h = histogram("test.fallback")
    h.record(1.5, {"k": "v"})
    [point] = points(reader, "test.fallback")
    assert (dict(point.attributes), point.count, point.sum) == ({"k": "v"}, 1, 1.5)


def test_without_configure_nothing_is_aggregated() -> None:
    h = histogram("test.unconfigured")
    h.record(1.0, {"k": "v"})
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    h.record(2.0, {"k": "v"})
    assert [(p.count, p.sum) for p in points(reader, "test.unconfigured")] == [(1, 2.0)]


@pytest.mark.parametrize(("preference", "counts"), [("delta", [2, 1]), ("cumulative", [2, 3])])
def test_the_otlp_temporality_preference_is_honoured(
    monkeypatch: pytest.MonkeyPatch, preference: str, counts: list[int]
) -> None:
    receiver = OTLPReceiver()
    receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", preference)
        clue.configure("svc", span_exporter=None, log_exporter=None)
        h = histogram("test.exported")
        h.record(1.0)
        h.record(2.0)
        telemetry.force_flush()
        h.record(3.0)
        telemetry.force_flush()
        exported = [m.points[0].count for m in receiver.metrics() if m.name == "test.exported"]
    finally:
        clue.shutdown()
        receiver.stop()
    assert exported == counts


@pytest.mark.parametrize(
    ("exemplar_filter", "expected"),
    [(None, ["sampled"]), ("always_on", ["sampled", "unsampled", "none"]), ("always_off", [])],
)
def test_exemplars_follow_the_exemplar_filter(
    monkeypatch: pytest.MonkeyPatch, exemplar_filter: str | None, expected: list[str]
) -> None:
    if exemplar_filter is not None:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", exemplar_filter)
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none", sampler=ALWAYS_ON)
    h = histogram("test.exemplars")
    tracer = telemetry.tracer("tests")
    ids: dict[int, str] = {}
    with tracer.start_as_current_span("sampled") as span:
        ids[span.get_span_context().span_id] = "sampled"
        h.record(0.5)  # bucket <= 1
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(1, 2, is_remote=False, trace_flags=trace.TraceFlags(0))
    )
    ids[2] = "unsampled"
    with trace.use_span(unsampled):
        h.record(1.5)  # bucket (1, 2]
    h.record(3.0)  # no span: bucket (2, 5]
    [point] = points(reader, "test.exemplars")
    seen = [ids.get(e.span_id or 0, "none") for e in point.exemplars]
    assert seen == expected
    if expected:
        assert point.exemplars[0].value == 0.5
    assert points(reader, "test.exemplars")[0].exemplars == []  # each collection its own


def test_bound_recorders_aggregate_like_record_and_survive_a_reconfiguration() -> None:
    unbound_reader = InMemoryMetricReader()
    early = histograms.bind(histogram("test.bound"), {"k": "v"})  # before configure: the proxy
    early(1.0)  # nothing listens yet
    clue.configure("svc", metric_exporter=unbound_reader, exporter="none")
    h = histogram("test.bound")
    bound = histograms.bind(h, {"k": "v"})
    for value in (0.5, 1.5, 7.0):
        bound(value)
        h.record(value, {"k": "v"})
        early(value)
    [point] = points(unbound_reader, "test.bound")
    assert (dict(point.attributes), point.count, point.sum) == ({"k": "v"}, 9, 27.0)
    assert tuple(point.bucket_counts) == (3, 3, 0, 3)
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    bound(2.5)
    [point] = points(reader, "test.bound")
    assert (point.count, point.sum) == (1, 2.5)


def test_binding_an_sdk_histogram_records_through_the_sdk() -> None:
    reader = InMemoryMetricReader()
    sdk = MeterProvider(metric_readers=[reader]).get_meter("sdk").create_histogram("test.sdk")
    record = histograms.bind(sdk, {"k": "v"})
    record(3.0)
    [point] = points(reader, "test.sdk")
    assert (dict(point.attributes), point.count, point.sum) == ({"k": "v"}, 1, 3.0)


def test_measurements_are_aggregated_in_batches_with_their_own_context_and_time() -> None:
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none", sampler=ALWAYS_ON)
    h = histogram("test.batches")
    record = histograms.bind(h, {"k": "v"})
    with telemetry.tracer("tests").start_as_current_span("sampled") as span:
        recorded_before = time.time_ns()
        record(0.5)  # waits for its batch, with the span of the moment
    time.sleep(0.05)
    for _ in range(histograms.BATCH * 2 + 10):  # two full batches, then some
        record(1.5)
    [point] = points(reader, "test.batches")
    assert point.count == histograms.BATCH * 2 + 11
    assert tuple(point.bucket_counts) == (1, histograms.BATCH * 2 + 10, 0, 0)
    [exemplar] = [e for e in point.exemplars if e.value == 0.5]
    assert exemplar.span_id == span.get_span_context().span_id
    assert recorded_before <= exemplar.time_unix_nano < recorded_before + 50_000_000


def test_records_from_many_threads_are_all_counted() -> None:
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    record = histograms.bind(histogram("test.threads"), {"k": "v"})

    def run() -> None:
        for _ in range(1000):
            record(1.5)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    middle = points(reader, "test.threads")  # a collection while they record
    for thread in threads:
        thread.join()
    [point] = points(reader, "test.threads")
    assert point.count == 4000 and point.sum == 6000.0
    assert not middle or middle[0].count <= 4000


def test_a_reused_attributes_dict_keeps_each_record_in_its_own_series() -> None:
    reader = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=reader, exporter="none")
    h = histogram("test.reused")
    attributes = {"k": "a"}
    h.record(1.0, attributes)  # waits for its batch
    attributes["k"] = "b"
    h.record(2.0, attributes)
    found = {p.attributes["k"]: p.sum for p in points(reader, "test.reused")}
    assert found == {"a": 1.0, "b": 2.0}
