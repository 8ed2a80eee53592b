"""tests/otlp_receiver.py: what the official OTLP/gRPC exporters send, flattened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.otlp_receiver import OTLPReceiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    r.start()
    yield r
    r.stop()


def test_spans_are_flattened_with_links_attributes_and_events(receiver: OTLPReceiver) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True))
    )
    tracer = provider.get_tracer("scope-a")
    with tracer.start_as_current_span("parent", attributes={"ids": [1, 2]}) as parent:
        parent.add_event("cache-miss", {"key": "k"})
        with tracer.start_as_current_span("child") as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()
    child_span, parent_span = receiver.wait_for(lambda r: len(r.spans()) == 2 and r.spans())
    assert child_span.parent_span_id == parent_span.span_id
    assert parent_span.parent_span_id == ""
    assert (
        child_span.trace_id
        == parent_span.trace_id
        == format(parent.get_span_context().trace_id, "032x")
    )
    assert (child_span.status_code, child_span.status_message) == (2, "boom")
    assert parent_span.attributes == {"ids": [1, 2]}
    assert [(e.name, e.attributes) for e in parent_span.events] == [("cache-miss", {"key": "k"})]
    assert (parent_span.service_name, parent_span.scope) == ("svc", "scope-a")
    assert receiver.requests()["traces"] == 2

    receiver.clear()
    assert receiver.spans() == [] and receiver.requests()["traces"] == 0


def test_metrics_keep_their_kind_and_points(receiver: OTLPReceiver) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=receiver.endpoint, insecure=True),
        export_interval_millis=3_600_000,
    )
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({}))
    meter = provider.get_meter("m")
    meter.create_counter("calls").add(4, {"route": "/a"})
    meter.create_histogram("latency", unit="s").record(0.5)
    provider.shutdown()
    by_name = {m.name: m for m in receiver.wait_for(lambda r: r.metrics())}
    assert by_name["calls"].kind == "sum"
    assert [(p.attributes, p.value) for p in by_name["calls"].points] == [({"route": "/a"}, 4.0)]
    assert by_name["latency"].kind == "histogram"
    assert (by_name["latency"].points[0].count, by_name["latency"].points[0].sum) == (1, 0.5)
    assert receiver.metric_names() == {"calls", "latency"}


def test_wait_for_times_out_with_a_summary(receiver: OTLPReceiver) -> None:
    with pytest.raises(AssertionError, match="received 0 spans"):
        receiver.wait_for(lambda r: r.spans(), timeout=0.1)


def test_a_running_receiver_cannot_start_twice(receiver: OTLPReceiver) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        receiver.start()
