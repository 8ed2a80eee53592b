"""clue's meters and tracers: instruments made before ``configure()`` follow each new SDK
provider, and clue's tracers start spans as the API's do (as context managers and as
decorators of plain and ``async def`` functions)."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import clue
from clue import telemetry
from clue.telemetry import AdaptiveSampler
from tests.test_telemetry_configure import clean_env  # noqa: F401 - autouse: no OTEL_*, clue's globals


def values(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    found = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope.name != "tests.instruments":
                continue  # other tests' instruments follow every configuration too
            for metric in sm.metrics:
                point = metric.data.data_points[0]
                found[metric.name] = getattr(point, "value", None) or getattr(point, "sum", None)
    return found


def observe(amount: float) -> Any:
    def callback(_options: CallbackOptions) -> list[Observation]:
        return [Observation(amount)]

    return callback


def test_every_kind_of_instrument_follows_each_configuration() -> None:
    meter = metrics.get_meter("tests.instruments")
    counter = meter.create_counter("t.counter")
    updown = meter.create_up_down_counter("t.updown")
    gauge = meter.create_gauge("t.gauge")
    histogram = meter.create_histogram("t.histogram")
    meter.create_observable_counter("t.obs_counter", callbacks=[observe(4)])
    meter.create_observable_up_down_counter("t.obs_updown", callbacks=[observe(-2)])
    meter.create_observable_gauge("t.obs_gauge", callbacks=[observe(9.5)])
    counter.add(1)  # before any configure: recorded nowhere, and no error

    for name in ("one", "two"):
        reader = InMemoryMetricReader()
        clue.configure(name, metric_exporter=reader, exporter="none")
        counter.add(3)
        updown.add(-5)
        gauge.set(7.0)
        histogram.record(2.5)
        assert values(reader) == {
            "t.counter": 3,
            "t.updown": -5,
            "t.gauge": 7.0,
            "t.histogram": 2.5,
            "t.obs_counter": 4,
            "t.obs_updown": -2,
            "t.obs_gauge": 9.5,
        }
    assert isinstance(counter, metrics.Counter) and isinstance(gauge, metrics.Synchronous)


def test_the_same_definition_gives_the_same_instrument() -> None:
    meter = telemetry.meter("tests.instruments")
    assert meter.create_counter("same", "1", "d") is meter.create_counter("same", "1", "d")
    assert meter.create_counter("same", "1", "d") is not meter.create_counter("same", "ms")


def spans_of(sampler: Any) -> InMemorySpanExporter:
    spans = InMemorySpanExporter()
    clue.configure("svc", span_exporter=spans, sampler=sampler, exporter="none")
    return spans


def test_start_as_current_span_decorates_plain_and_async_functions() -> None:
    for sampler in (ALWAYS_ON, AdaptiveSampler(max_sampled_per_second=1000)):
        spans = spans_of(sampler)
        tracer = trace.get_tracer("tests.instruments")

        @tracer.start_as_current_span("plain")
        def plain() -> int:
            return trace.get_current_span().get_span_context().span_id

        @tracer.start_as_current_span("awaited")
        async def awaited() -> int:
            await asyncio.sleep(0)
            return trace.get_current_span().get_span_context().span_id

        ids = [plain(), plain(), asyncio.run(awaited()), asyncio.run(awaited())]
        assert telemetry.force_flush()
        finished = spans.get_finished_spans()
        assert sorted(s.name for s in finished) == ["awaited", "awaited", "plain", "plain"]
        assert sorted(ids) == sorted(s.context.span_id for s in finished)  # one span a call


def test_start_as_current_span_keeps_the_span_open_when_asked() -> None:
    spans = spans_of(ALWAYS_ON)
    tracer = trace.get_tracer("tests.instruments")
    with tracer.start_as_current_span("kept", end_on_exit=False) as span:
        assert trace.get_current_span() is span
    assert trace.get_current_span() is not span
    assert telemetry.force_flush() and spans.get_finished_spans() == ()
    span.end()
    assert telemetry.force_flush() and [s.name for s in spans.get_finished_spans()] == ["kept"]
