"""Each OpenTelemetry internal clue relies on, taken away: clue takes the plain path, the
feature still works through its real door, and clue's log says so in exactly one line.

The hooks checked at import are taken away in a fresh interpreter before clue is imported;
the hooks checked at first use are taken away in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.metrics import Histogram as SDKHistogram
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import Tracer as SDKTracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import clue
from clue import _otel_internals, telemetry
from clue.telemetry import AdaptiveSampler
from clue.telemetry.bootstrap import TRACER_PROVIDER
from clue.telemetry.roots import FastRoots
from tests.conftest import Lines
from tests.otlp_receiver import OTLPReceiver
from tests.test_telemetry_configure import clean_env  # noqa: F401 - autouse: no OTEL_*, clue's globals

FALLBACK = "an OpenTelemetry internal clue relies on has changed: using the plain path"


@pytest.fixture(autouse=True)
def nothing_said_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_otel_internals, "_said", set())


def said(lines: Lines) -> list[str]:
    """The hooks clue's log reported missing."""
    return [entry["hook"] for entry in lines.entries(FALLBACK)]


def test_with_every_hook_in_place_nothing_is_said(lines: Lines) -> None:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    clue.configure("svc", span_exporter=spans, metric_exporter=reader, exporter="none")
    tracer = trace.get_tracer("tests.internals")
    with tracer.start_as_current_span("work"):
        get_meter("tests.internals").create_histogram("test.ok").record(1.0)
        get_meter("tests.internals").create_gauge("test.gauge").set(2.0)
    assert telemetry.force_flush()
    assert [s.name for s in spans.get_finished_spans()] == ["work"]
    assert said(lines) == []


# --- hooks checked at first use ------------------------------------------------------------


class RenamedTemporalityMap(InMemoryMetricReader):
    """A reader of a release that renamed the map clue reads temporalities from (the SDK
    reads it when the reader is registered, before this runs)."""

    def _set_collect_callback(self, func: Any) -> None:
        super()._set_collect_callback(func)
        self.__dict__.pop("_instrument_class_temporality", None)


def test_reader_collect_taken_away_the_sdk_aggregates_the_histograms(lines: Lines) -> None:
    reader = RenamedTemporalityMap(
        preferred_temporality={SDKHistogram: AggregationTemporality.DELTA}
    )
    clue.configure("svc", metric_exporter=reader, exporter="none")
    histogram = get_meter("tests.internals").create_histogram("test.fallback")
    for amount in (1.0, 7.0, 7.5):
        histogram.record(amount, {"route": "/a"})
    first = points(reader, "test.fallback")
    histogram.record(30.0, {"route": "/a"})
    second = points(reader, "test.fallback")
    clue.configure("svc", metric_exporter=RenamedTemporalityMap(), exporter="none")
    assert [(p.count, p.sum, p.min, p.max) for p in first] == [(3, 15.5, 1.0, 7.5)]
    assert list(first[0].bucket_counts)[:3] == [0, 1, 2]  # bounds 0, 5, 10: the SDK's
    assert [(p.count, p.sum) for p in second] == [(1, 30.0)]  # delta, as the reader asked
    assert said(lines) == ["reader-collect"]


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_tracer_enabled_changed_the_sdk_starts_every_span(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A release whose switch answers with the tracer's config instead of a bool.
    monkeypatch.setattr(SDKTracer, "_is_enabled", lambda self: self._tracer_config)
    spans = InMemorySpanExporter()
    sampler = AdaptiveSampler(max_sampled_per_second=1000)
    clue.configure("svc", span_exporter=spans, sampler=sampler, exporter="none")
    provider: Any = TRACER_PROVIDER.delegate
    assert type(FastRoots.of(provider.get_tracer("a"))) is SDKTracer
    tracer = trace.get_tracer("tests.internals")
    with tracer.start_as_current_span("root"):
        tracer.start_span("child").end()
    assert telemetry.force_flush()
    assert sorted(s.name for s in spans.get_finished_spans()) == ["child", "root"]
    assert said(lines) == ["tracer-enabled"]


class RenamedDrops:
    """The queue bookkeeping of a release that renamed ``drop_items``."""

    def register_queue_size(self, get: Any) -> None: ...
    def record_dropped(self, count: int) -> None: ...
    def finish_items(self, count: int, error: Exception | None = None) -> None: ...


class WiderFinish(RenamedDrops):
    """The queue bookkeeping of a release whose ``finish_items`` takes one more argument."""

    def drop_items(self, count: int) -> None: ...
    def finish_items(self, count: int, error: Any = None, duration: Any = None) -> None: ...


@pytest.mark.parametrize(
    "bookkeeping", [RenamedDrops(), WiderFinish()], ids=["drop_items-renamed", "finish_items-wider"]
)
def test_batch_processor_drops_taken_away_spans_are_still_exported(
    lines: Lines, monkeypatch: pytest.MonkeyPatch, bookkeeping: Any
) -> None:
    from opentelemetry.sdk.trace import export as sdk_export

    monkeypatch.setattr(sdk_export, "create_processor_metrics", lambda *a, **k: bookkeeping)
    receiver = OTLPReceiver()
    receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        clue.configure("svc", sampler=ALWAYS_ON, log_exporter=None, metric_exporter=None)
        clue.configure("svc", sampler=ALWAYS_ON, log_exporter=None, metric_exporter=None)
        trace.get_tracer("tests.internals").start_span("exported").end()
        assert telemetry.force_flush()
        names = [span.name for span in receiver.spans()]
    finally:
        clue.shutdown()
        receiver.stop()
    assert names == ["exported"]
    assert said(lines) == ["batch-processor-drops"]


def test_exporter_preferences_taken_away_metrics_are_exported_with_the_defaults(
    lines: Lines,
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    receiver = OTLPReceiver()
    receiver.start()
    try:
        exporter = OTLPMetricExporter(endpoint=receiver.endpoint, insecure=True)
        del exporter._preferred_temporality  # a release that renamed it
        clue.configure("svc", metric_exporter=exporter, exporter="none")
        histogram = get_meter("tests.internals").create_histogram("test.exported")
        histogram.record(1.0)
        histogram.record(2.0)
        assert telemetry.force_flush()
        exported = [(m.points[0].count, m.points[0].sum) for m in receiver.metrics()]
    finally:
        clue.shutdown()
        receiver.stop()
    assert (2, 3.0) in exported
    assert said(lines) == ["exporter-preferences"]


# --- hooks checked at import: taken away before clue is imported -------------------------

_EXERCISE = """
import io, json
from opentelemetry import trace
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
import clue
from clue import log, telemetry

stream = io.StringIO()
log.configure(outputs=[log.Output(stream, "json")])
spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
clue.configure("svc", span_exporter=spans, metric_exporter=reader, sampler=ALWAYS_ON,
               exporter="none")
tracer = trace.get_tracer("probe")
meter = get_meter("probe")

@tracer.start_as_current_span("decorated")
def decorated():
    return trace.get_current_span().get_span_context().span_id

with tracer.start_as_current_span("outer") as outer:
    inner_id = decorated()
    log.info("inside")
    meter.create_histogram("probe.h").record(3.0)
    meter.create_gauge("probe.g").set(5.0)
with log.request_scope():
    log.info("buffered, then dropped")
with tracer.start_as_current_span("again"):
    log.info("inside again")
data = reader.get_metrics_data()  # before force_flush: a collection takes the exemplars
telemetry.force_flush()
ctx = outer.get_span_context()
found = {m.name: m.data.data_points[0] for rm in data.resource_metrics
         for sm in rm.scope_metrics for m in sm.metrics}
exemplar = found["probe.h"].exemplars[0]
lines = [json.loads(line) for line in stream.getvalue().splitlines()]
print(json.dumps({
    "spans": sorted(s.name for s in spans.get_finished_spans()),
    "decorated_parent": [s.parent.span_id for s in spans.get_finished_spans()
                         if s.name == "decorated"] == [ctx.span_id],
    "decorated_ran_inside": inner_id != ctx.span_id,
    "logged_ids": [(e["trace_id"], e["span_id"]) for e in lines if e["msg"] == "inside"]
                  == [(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")],
    "histogram": [found["probe.h"].count, found["probe.h"].sum],
    "exemplar_ids": [exemplar.trace_id, exemplar.span_id] == [ctx.trace_id, ctx.span_id],
    "gauge": found["probe.g"].value,
    "said": [e["hook"] for e in lines if e.get("hook")],
}))
clue.shutdown()
"""

_TAKE_AWAY = {
    # The span kept under a key that is not alone in the context.
    "span-key": """
        import opentelemetry.trace
        from opentelemetry import context
        _original = opentelemetry.trace.set_span_in_context
        def set_span_in_context(span, ctx=None):
            return context.set_value("release.extra", 1, _original(span, ctx))
        opentelemetry.trace.set_span_in_context = set_span_in_context
    """,
    # A SpanContext whose fields come out of its tuple in another order.
    "span-context-layout": """
        from opentelemetry.trace import SpanContext
        SpanContext.__iter__ = lambda self: iter([self[i] for i in (5, 4, 3, 2, 1, 0)])
    """,
    # The decorator of the API's start_as_current_span, renamed.
    "agnostic-contextmanager": """
        import opentelemetry.sdk.trace
        import opentelemetry.util._decorator as decorator
        del decorator._agnosticcontextmanager
    """,
    # The API's synchronous gauge, renamed.
    "sync-gauge": """
        import opentelemetry.metrics
        import opentelemetry.sdk.metrics
        del opentelemetry.metrics._Gauge
    """,
}


@pytest.mark.parametrize("hook", list(_TAKE_AWAY))
def test_an_import_time_hook_taken_away(hook: str) -> None:
    script = textwrap.dedent(_TAKE_AWAY[hook]) + _EXERCISE
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got == {
        "spans": ["again", "decorated", "outer"],
        "decorated_parent": True,
        "decorated_ran_inside": True,
        "logged_ids": True,
        "histogram": [1, 3.0],
        "exemplar_ids": True,
        "gauge": 5.0,
        "said": [hook],
    }
