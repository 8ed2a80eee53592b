"""clue.configure() for benchmark servers: the full pipeline, exporting into nothing."""

from __future__ import annotations

from typing import Any


def configure(service: str, sampler: str) -> None:
    """Spans through the batch processor and metrics through the periodic reader, both to
    exporters that drop them; ``sampler`` "always_on" or "adaptive" (clue's default)."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        MetricExporter,
        MetricExportResult,
    )
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    import clue

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

    options: dict[str, Any] = {"span_exporter": NullSpans(), "metric_exporter": NullMetrics()}
    if sampler == "always_on":
        options["sampler"] = ALWAYS_ON
    clue.configure(service, "1.0", **options)
