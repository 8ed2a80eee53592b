"""Capture clue's log entries, spans and metric points in memory, and reset clue, in tests.

Examples:
    >>> from clue import log
    >>> from clue.testing import capture_logs
    >>> with capture_logs() as logs:
    ...     log.info("signed in", user="ana")
    >>> logs.where(msg="signed in")[0]["user"]
    'ana'

The pytest plugin that comes with clue offers the same as fixtures: ``clue_logs``,
``clue_spans``, ``clue_metrics`` and ``clue_reset`` (see docs/testing.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    DataPointT,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import NoOpTracerProvider, SpanKind

from clue import debug, log
from clue.log import (
    DEFAULT_WRITE_DELAY,
    STATE,
    ClueHandler,
    State,
    set_write_delay,
    uninstall_bridge,
    write_delay_from_env,
)
from clue.telemetry import METER_PROVIDER, REGISTRY, TRACER_PROVIDER, shutdown

_P = TypeVar("_P")

__all__ = [
    "CapturedLogs",
    "CapturedMetrics",
    "CapturedSpans",
    "capture_logs",
    "capture_metrics",
    "capture_spans",
    "reset",
]


class _Discard(io.StringIO):
    """The stream of the capturing output: its renderer keeps the entries, not the lines."""

    def write(self, text: str) -> int:
        return len(text)


class CapturedLogs(Sequence[dict[str, Any]]):
    """The entries clue.log wrote while capturing, in order, each the dict its renderers get:
    ``time``, ``level`` (``"info"``...), ``msg``, the context and request-scope fields, the
    call's own fields, ``error``/``error_type`` of an exception, ``trace_id``/``span_id``
    inside a span. Values are masked and cut as they would be written. Reading writes the
    entries waiting for the write delay first.
    """

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []

    def _render(self, _logger: Any, _level: str, event: dict[str, Any]) -> str:
        self._entries.append(dict(event))
        return ""

    def _written(self) -> list[dict[str, Any]]:
        log.sync()
        return self._entries

    def __len__(self) -> int:
        return len(self._written())

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._written()[index]

    def __repr__(self) -> str:
        return f"CapturedLogs({self._written()!r})"

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        """The entries with all of ``fields``: ``where(msg="paid", level="info")``."""
        return [e for e in self._written() if all(k in e and e[k] == v for k, v in fields.items())]

    def msgs(self) -> list[str]:
        """The messages of the entries, in order."""
        return [e["msg"] for e in self._written()]

    def clear(self) -> None:
        """Forget the entries captured so far."""
        self._written().clear()


@contextlib.contextmanager
def capture_logs() -> Iterator[CapturedLogs]:
    """Keep what clue.log writes in the block (see `CapturedLogs`) instead of writing it.

    Only the outputs change: debug, redaction, limits, the write delay and the
    stdlib bridge stay as set. The previous outputs are back after the block,
    unless ``clue.log.configure()`` replaced the capture in it.
    """
    captured = CapturedLogs()
    output = log.Output(_Discard(), captured._render)
    log.sync()  # entries logged before the block go where they were meant to
    before = (STATE.configured, STATE.outputs)
    # configured: clue.configure() in the block must not replace the capture with defaults
    STATE.configured, STATE.outputs = True, (output,)
    try:
        yield captured
    finally:
        log.sync()
        if STATE.outputs == (output,):
            STATE.configured, STATE.outputs = before


class CapturedSpans(Sequence[ReadableSpan]):
    """The spans ended while capturing, in the order they ended."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        """The capturing provider, for a layer that takes a ``tracer_provider`` argument."""
        self._exporter = exporter

    def _ended(self) -> tuple[ReadableSpan, ...]:
        return self._exporter.get_finished_spans()

    def __len__(self) -> int:
        return len(self._ended())

    @overload
    def __getitem__(self, index: int) -> ReadableSpan: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ReadableSpan]: ...
    def __getitem__(self, index: int | slice) -> ReadableSpan | Sequence[ReadableSpan]:
        return self._ended()[index]

    def __repr__(self) -> str:
        return f"CapturedSpans({self.names()!r})"

    def names(self) -> list[str]:
        """The names of the spans, in order."""
        return [span.name for span in self._ended()]

    def where(
        self,
        name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind | None = None,
    ) -> list[ReadableSpan]:
        """The spans named ``name`` whose attributes include ``attributes``, of ``kind``
        (None: any)."""
        return [
            span
            for span in self._ended()
            if (name is None or span.name == name)
            and (kind is None or span.kind is kind)
            and _includes(span.attributes, attributes)
        ]

    def one(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind | None = None,
    ) -> ReadableSpan:
        """The only span `where` finds; AssertionError if it finds none or several."""
        return _only(self.where(name, attributes, kind), f"span {name!r}", self.names())

    def clear(self) -> None:
        """Forget the spans captured so far."""
        self._exporter.clear()


@contextlib.contextmanager
def capture_spans(sampler: Sampler | None = None) -> Iterator[CapturedSpans]:
    """Keep the spans of clue's tracers in memory during the block: those of
    ``clue.telemetry.tracer()`` and of the OpenTelemetry global provider, which clue's
    gRPC, ASGI, httpx and messaging layers use (clue's provider is made the global one
    if none is yet). Every new trace is sampled unless ``sampler`` decides otherwise; a
    caller's decision (``traceparent``) is followed. The previous provider is back after
    the block, unless ``clue.configure()`` replaced the capture in it.
    """
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be an OpenTelemetry Sampler, got {type(sampler).__name__}")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=ParentBased(ALWAYS_ON) if sampler is None else sampler, shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _make_global(trace.get_tracer_provider, trace.set_tracer_provider, TRACER_PROVIDER)
    before = TRACER_PROVIDER.delegate
    TRACER_PROVIDER.swap(provider)
    try:
        yield CapturedSpans(provider, exporter)
    finally:
        if TRACER_PROVIDER.delegate is provider:
            TRACER_PROVIDER.swap(before)
        provider.shutdown()


class CapturedMetrics:
    """The measurements recorded while capturing, collected (cumulatively) on each read."""

    def __init__(self, provider: MeterProvider, reader: InMemoryMetricReader) -> None:
        self.provider = provider
        """The capturing provider, for a layer that takes a ``meter_provider`` argument."""
        self._reader = reader

    def metrics(self, meter: str | None = None) -> list[Metric]:
        """Every metric with data, collected now; only meter ``meter``'s when given
        (observable instruments made earlier in the process report in every capture)."""
        data = self._reader.get_metrics_data()
        return [
            metric
            for resource_metrics in (data.resource_metrics if data else ())
            for scope_metrics in resource_metrics.scope_metrics
            if meter is None or scope_metrics.scope.name == meter
            for metric in scope_metrics.metrics
        ]

    def names(self, meter: str | None = None) -> list[str]:
        """The names of the metrics with data, sorted; only meter ``meter``'s when given."""
        return sorted({metric.name for metric in self.metrics(meter)})

    def points(self, name: str, attributes: Mapping[str, Any] | None = None) -> list[DataPointT]:
        """The data points of metric ``name`` whose attributes include ``attributes``."""
        return [
            point
            for metric in self.metrics()
            if metric.name == name
            for point in metric.data.data_points
            if _includes(point.attributes, attributes)
        ]

    def histogram(
        self, name: str, attributes: Mapping[str, Any] | None = None
    ) -> HistogramDataPoint:
        """The only point of histogram ``name`` with ``attributes`` (count, sum, buckets...);
        AssertionError if there is not exactly one."""
        point = _only(self.points(name, attributes), f"metric {name!r}", self.names())
        if not isinstance(point, HistogramDataPoint):
            raise AssertionError(f"metric {name!r} is not a histogram: {point!r}")
        return point

    def value(self, name: str, attributes: Mapping[str, Any] | None = None) -> int | float:
        """The value of the only point of counter, up-down counter or gauge ``name`` with
        ``attributes``; AssertionError if there is not exactly one."""
        point = _only(self.points(name, attributes), f"metric {name!r}", self.names())
        if not isinstance(point, NumberDataPoint):
            raise AssertionError(f"metric {name!r} has no single value: {point!r}")
        return point.value


@contextlib.contextmanager
def capture_metrics() -> Iterator[CapturedMetrics]:
    """Collect the measurements of clue's meters in memory during the block: those of
    ``clue.telemetry.meter()`` and of the OpenTelemetry global provider, which clue's
    layers use (clue's provider is made the global one if none is yet). The previous
    provider is back after the block, unless ``clue.configure()`` replaced the capture.
    """
    reader = InMemoryMetricReader()
    resource = Resource.create()
    provider = MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
    _make_global(metrics.get_meter_provider, metrics.set_meter_provider, METER_PROVIDER)
    others = REGISTRY.aggregate_only(())  # the configured readers get none of the capture's
    slots = REGISTRY.attach([reader], resource)  # clue's own histograms collected too
    before = METER_PROVIDER.delegate
    METER_PROVIDER.swap(provider)
    try:
        yield CapturedMetrics(provider, reader)
    finally:
        if METER_PROVIDER.delegate is provider:
            METER_PROVIDER.swap(before)
            REGISTRY.aggregate_only(others)
        else:  # clue.configure() in the block attached its own readers: they stay
            REGISTRY.detach(slots)
        provider.shutdown()


def reset() -> None:
    """Put clue back as in a process that imported it and set nothing up: telemetry shut
    down, clue.log unconfigured (default settings, the default output on the next write, no
    stdlib bridge, no OTLP export), debug logs off with no ttl pending. Captures still open
    stop capturing. clue's providers stay the OpenTelemetry globals once they are: a
    process sets those once.
    """
    shutdown()
    TRACER_PROVIDER.swap(NoOpTracerProvider())
    METER_PROVIDER.swap(NoOpMeterProvider())
    debug.disable()
    log.sync()
    fresh = State()
    for name in State.__slots__:
        setattr(STATE, name, getattr(fresh, name))
    delay = DEFAULT_WRITE_DELAY
    with contextlib.suppress(ValueError):  # a bad CLUE_LOG_WRITE_DELAY: the default, as at import
        delay = write_delay_from_env() or DEFAULT_WRITE_DELAY
    set_write_delay(delay)
    root = logging.getLogger()
    if any(isinstance(handler, ClueHandler) for handler in root.handlers):
        uninstall_bridge()
        root.setLevel(logging.WARNING)  # the stdlib's default, which the bridge changed


def _make_global(get: Callable[[], object], set_global: Callable[[_P], None], ours: _P) -> None:
    """Make clue's provider the OpenTelemetry global one, as ``clue.configure()`` does;
    RuntimeError when another was set first (clue's layers would report to that one)."""
    if get() is not ours:
        set_global(ours)  # OpenTelemetry ignores it, with a warning, if one was set
    current = get()
    if current is not ours:
        raise RuntimeError(
            f"the OpenTelemetry global provider is {current!r}, set before clue's: clue's "
            "layers report to it, not to the capture (set none, or clue's, in tests)"
        )


def _includes(attributes: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> bool:
    found = attributes or {}
    return all(key in found and found[key] == value for key, value in (wanted or {}).items())


def _only(found: list[_P], what: str, names: list[str]) -> _P:
    if len(found) != 1:
        raise AssertionError(
            f"expected one {what} that matches, found {len(found)} (seen: {names})"
        )
    return found[0]
