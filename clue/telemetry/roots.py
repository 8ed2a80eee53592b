"""New traces the adaptive sampler drops, started without the SDK's span machinery.

For a trace its sampler drops, the SDK's ``Tracer.start_span`` still builds a
sampling result, trace flags, a span context and its internal-metrics hook
through several layers: about 5 µs in a tight loop, several times that inside
a busy server. Under clue's :class:`~clue.telemetry.AdaptiveSampler` nearly
every new trace is dropped, so the tracers clue hands out ask the sampler
first: a dropped trace costs one decision and a ``NonRecordingSpan``, exactly
what the SDK would have returned; a sampled one is started by the SDK, told
that the decision is made so that it is not counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer as SDKTracer
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    get_current_span,
)
from opentelemetry.util.types import Attributes

from clue.telemetry.sampler import AdaptiveSampler


class FastRoots:
    """Starts spans on an SDK tracer, deciding new traces before the SDK does."""

    __slots__ = ("_enabled", "_flags", "_ids", "_root", "_tracer")

    def __init__(self, tracer: SDKTracer, sampler: AdaptiveSampler) -> None:
        self._tracer = tracer
        self._root = sampler.root
        self._ids = tracer.id_generator
        # The tracer configurator (SDK 1.39+) may switch a tracer off at any time.
        self._enabled: Callable[[], bool] | None = getattr(tracer, "_is_enabled", None)
        random_ids = self._ids.is_trace_id_random()
        self._flags = TraceFlags(TraceFlags.RANDOM_TRACE_ID if random_ids else TraceFlags.DEFAULT)

    @classmethod
    def of(cls, tracer: object) -> FastRoots | None:
        """The fast path for ``tracer``, or None when it does not apply: not an SDK tracer,
        another sampler, or the SDK's internal span metrics turned on (they count every
        span the SDK starts)."""
        if type(tracer) is not SDKTracer:
            return None
        sampler = getattr(tracer, "sampler", None)
        if type(sampler) is not AdaptiveSampler:  # a subclass may decide otherwise
            return None
        internal = os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "")
        if internal.strip().lower() == "true":
            return None
        return cls(tracer, sampler)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        """``Tracer.start_span``, with a dropped new trace answered here."""
        tracer = self._tracer
        if get_current_span(context).get_span_context().is_valid or (
            self._enabled is not None and not self._enabled()
        ):
            return tracer.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
        ids = self._ids
        trace_id = ids.generate_trace_id()
        if not self._root.decide(trace_id):
            span_context = SpanContext(trace_id, ids.generate_span_id(), False, self._flags)
            return NonRecordingSpan(span_context)
        with self._root.decided():
            return tracer.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
