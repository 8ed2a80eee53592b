"""A small, real OTLP/gRPC receiver for tests.

It serves the three OTLP collector services (traces, metrics, logs) generated
by ``opentelemetry-proto`` on a loopback port, and keeps what it receives as
flat, easy-to-assert records::

    from tests.otlp_receiver import OTLPReceiver

    receiver = OTLPReceiver()
    port = receiver.start()                 # port=0: any free port
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    ...                                     # code under test exports spans/logs/metrics
    spans = receiver.wait_for(lambda r: len(r.spans()) >= 2, timeout=10)
    assert spans[1].parent_span_id == spans[0].span_id
    receiver.stop()

``stop()`` then ``start(port)`` restarts it on the same port, which is how
tests simulate a collector that goes down and comes back. ``delay`` makes
every answer wait that many seconds (a slow collector). All accessors are
thread-safe and return copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

T = TypeVar("T")


@dataclass(frozen=True)
class SpanEvent:
    """One event of a received span."""

    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Span:
    """One received span, flattened with its resource's service name."""

    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # 16 hex digits, "" for a root span
    service_name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind value
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[SpanEvent]
    resource: dict[str, Any]
    scope: str
    start_time_unix_nano: int
    end_time_unix_nano: int


@dataclass(frozen=True)
class LogRecord:
    """One received log record."""

    body: Any
    severity_number: int
    severity_text: str
    trace_id: str  # "" when not correlated
    span_id: str
    attributes: dict[str, Any]
    service_name: str
    resource: dict[str, Any]
    scope: str
    time_unix_nano: int


@dataclass(frozen=True)
class DataPoint:
    """One data point: ``value`` for sums and gauges; ``count``/``sum`` for histograms."""

    attributes: dict[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None


@dataclass(frozen=True)
class Metric:
    """One received metric with its data points."""

    name: str
    kind: str  # "sum", "gauge", "histogram", "exponential_histogram" or "summary"
    unit: str
    service_name: str
    scope: str
    points: list[DataPoint] = field(default_factory=list)


def value(v: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(item) for item in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    """A dict from a repeated OTLP ``KeyValue`` field."""
    out: dict[str, Any] = {}
    for kv in kvs:
        assert isinstance(kv, KeyValue)
        out[kv.key] = value(kv.value)
    return out


def _service(resource: Resource) -> tuple[dict[str, Any], str]:
    attrs = attributes(resource.attributes)
    return attrs, str(attrs.get("service.name", ""))


def _points(metric: Any) -> tuple[str, list[DataPoint]]:
    kind = metric.WhichOneof("data") or ""
    data = getattr(metric, kind) if kind else None
    points: list[DataPoint] = []
    for p in getattr(data, "data_points", ()):
        attrs = attributes(p.attributes)
        if kind in ("sum", "gauge"):
            number = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
            points.append(DataPoint(attrs, value=float(number)))
        else:
            points.append(DataPoint(attrs, count=int(p.count), sum=float(p.sum)))
    return kind, points


class OTLPReceiver:
    """A real OTLP/gRPC server on 127.0.0.1 that records traces, metrics and logs."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._spans: list[Span] = []
        self._logs: list[LogRecord] = []
        self._metrics: list[Metric] = []
        self._requests = {"traces": 0, "metrics": 0, "logs": 0}
        self._server: grpc.Server | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self, port: int = 0) -> int:
        """Start serving on ``port`` (0: a free one) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("the receiver is already running")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-receiver"),
            options=[("grpc.so_reuseport", 0)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(self), server)
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        if bound == 0:
            raise RuntimeError(f"could not bind 127.0.0.1:{port}")
        server.start()
        self._server, self.port = server, bound
        return bound

    def stop(self) -> None:
        """Stop serving (idempotent); what was received is kept."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait()

    @property
    def endpoint(self) -> str:
        """The ``http://127.0.0.1:<port>`` URL to give an OTLP/gRPC exporter."""
        return f"http://127.0.0.1:{self.port}"

    # -- accessors -------------------------------------------------------------
    def spans(self) -> list[Span]:
        """Every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def logs(self) -> list[LogRecord]:
        """Every log record received so far, in arrival order."""
        with self._lock:
            return list(self._logs)

    def metrics(self) -> list[Metric]:
        """Every metric received so far (one entry per metric per export)."""
        with self._lock:
            return list(self._metrics)

    def metric_names(self) -> set[str]:
        """The names of every metric received so far."""
        with self._lock:
            return {m.name for m in self._metrics}

    def requests(self) -> dict[str, int]:
        """How many Export calls each signal ("traces", "metrics", "logs") received."""
        with self._lock:
            return dict(self._requests)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self._spans.clear()
            self._logs.clear()
            self._metrics.clear()
            self._requests = dict.fromkeys(self._requests, 0)

    def wait_for(self, predicate: Callable[[OTLPReceiver], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate(self)`` is truthy and return it; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s; received {len(self.spans())} spans, "
                    f"{len(self.logs())} logs, metrics {sorted(self.metric_names())}"
                )
            with self._changed:
                self._changed.wait(min(remaining, 0.05))

    # -- recording (called by the servicers) -----------------------------------
    def _pause(self) -> None:
        if self.delay > 0:
            time.sleep(self.delay)

    def _add(self, signal: str, items: list[Any], into: list[Any]) -> None:
        with self._changed:
            self._requests[signal] += 1
            into.extend(items)
            self._changed.notify_all()

    def _record_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        out: list[Span] = []
        for rs in request.resource_spans:
            resource, service = _service(rs.resource)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            service_name=service,
                            kind=int(s.kind),
                            attributes=attributes(s.attributes),
                            status_code=int(s.status.code),
                            status_message=s.status.message,
                            events=[SpanEvent(e.name, attributes(e.attributes)) for e in s.events],
                            resource=resource,
                            scope=ss.scope.name,
                            start_time_unix_nano=s.start_time_unix_nano,
                            end_time_unix_nano=s.end_time_unix_nano,
                        )
                    )
        self._add("traces", out, self._spans)

    def _record_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        out: list[LogRecord] = []
        for rl in request.resource_logs:
            resource, service = _service(rl.resource)
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    out.append(
                        LogRecord(
                            body=value(r.body),
                            severity_number=int(r.severity_number),
                            severity_text=r.severity_text,
                            trace_id=r.trace_id.hex(),
                            span_id=r.span_id.hex(),
                            attributes=attributes(r.attributes),
                            service_name=service,
                            resource=resource,
                            scope=sl.scope.name,
                            time_unix_nano=r.time_unix_nano,
                        )
                    )
        self._add("logs", out, self._logs)

    def _record_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        out: list[Metric] = []
        for rm in request.resource_metrics:
            _, service = _service(rm.resource)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind, points = _points(m)
                    out.append(Metric(m.name, kind, m.unit, service, sm.scope.name, points))
        self._add("metrics", out, self._metrics)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver._pause()
        self._receiver._record_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver._pause()
        self._receiver._record_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver._pause()
        self._receiver._record_logs(request)
        return logs_service_pb2.ExportLogsServiceResponse()
