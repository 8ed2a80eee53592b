"""Exporter objects built from exporter names and the OTLP settings of each signal."""

from __future__ import annotations

import sys
from typing import Any

from clue.telemetry.settings import OTLPTarget, otlp_target

_DEFAULT_ENDPOINTS = {"grpc": "localhost:4317", "http/protobuf": "http://localhost:4318"}


def _otlp(signal: str, target: OTLPTarget, timeout: float | None) -> Any:
    kwargs: dict[str, Any] = {"timeout": timeout}
    if target.endpoint is not None:
        kwargs["endpoint"] = target.endpoint
    if target.protocol == "grpc":
        if target.insecure is not None:
            kwargs["insecure"] = target.insecure
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(**kwargs)
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter(**kwargs)
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(**kwargs)
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HTTPSpanExporter,
        )

        return HTTPSpanExporter(**kwargs)
    if signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HTTPMetricExporter,
        )

        return HTTPMetricExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HTTPLogExporter,
    )

    return HTTPLogExporter(**kwargs)


def _console(signal: str) -> Any:
    """A console exporter writing to the ``sys.stdout`` of now (not of import time)."""
    if signal == "traces":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout)
    if signal == "metrics":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stdout)
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    return ConsoleLogRecordExporter(out=sys.stdout)


def build(signal: str, name: str, timeout: float | None) -> tuple[Any, str]:
    """The exporter called ``name`` ("otlp" or "console") for ``signal``, and a
    description of where it sends (for failure reports)."""
    if name == "console":
        return _console(signal), "the console"
    target = otlp_target(signal)
    where = target.endpoint or _DEFAULT_ENDPOINTS[target.protocol]
    return _otlp(signal, target, timeout), f"{where} (OTLP {target.protocol})"
