"""Telemetry for benchmark servers, exporting into nothing: clue's pipeline, or the plain
OpenTelemetry SDK that the official instrumentations are measured with."""

from __future__ import annotations

from typing import Any


def _null_exporters() -> tuple[Any, Any]:
    """A span exporter and a metric exporter that drop what they get."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        MetricExporter,
        MetricExportResult,
    )
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class NullSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class NullMetrics(MetricExporter):
        def __init__(self) -> None:
            super().__init__(preferred_temporality={}, preferred_aggregation={})
            self._temporality = AggregationTemporality.CUMULATIVE

        def export(self, metrics_data: Any, timeout_millis: float = 0, **kw: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kw: Any) -> None:
            return None

    return NullSpans(), NullMetrics()


def configure(service: str, sampler: str) -> None:
    """clue.configure(): spans through the batch processor and metrics through the periodic
    reader, both to exporters that drop them; ``sampler`` "always_on" or "adaptive" (clue's
    default)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    import clue

    spans, metrics = _null_exporters()
    options: dict[str, Any] = {"span_exporter": spans, "metric_exporter": metrics}
    if sampler == "always_on":
        options["sampler"] = ALWAYS_ON
    clue.configure(service, "1.0", **options)


def configure_sdk(service: str) -> None:
    """The OpenTelemetry SDK as its documentation sets it up, without clue: a tracer provider
    with the SDK's default sampler (parent-based, always on: every new trace sampled) and a
    batch span processor, a meter provider with a periodic reader; both exporters drop."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    spans, metric_exporter = _null_exporters()
    resource = Resource.create({"service.name": service, "service.version": "1.0"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(metric_exporter)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
