"""Spans the adaptive sampler drops, started without the SDK's span machinery.

For a span its sampler drops, the SDK's ``Tracer.start_span`` still builds a
sampling result, trace flags, a span context and its internal-metrics hook
through several layers (the cost: docs/performance.md). Under clue's
:class:`~clue.telemetry.AdaptiveSampler` nearly every new trace is dropped,
and so is every child of an unsampled parent (local, or remote: a request or
message whose ``traceparent`` says "not sampled"), so the tracers clue hands
out decide those themselves:

- a child of an unsampled parent is a ``NonRecordingSpan`` with the parent's
  trace id and trace state, a new span id and the flags the SDK would give it;
- a new trace costs one decision: dropped, a ``NonRecordingSpan``; sampled,
  started by the SDK, told that the decision is made so that it is not
  counted twice;
- a child of a sampled parent is started by the SDK.

Each is exactly the span the SDK would have returned (tests/test_telemetry_roots.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from random import getrandbits

from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import Tracer as SDKTracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    use_span,
)
from opentelemetry.util.types import Attributes

from clue._otel_internals import (
    agnostic_contextmanager,
    parent_fields,
    span_context_in,
    tracer_switch,
)
from clue.telemetry.sampler import AdaptiveSampler

_UNDECIDED = nullcontext()
_SAMPLED = TraceFlags.SAMPLED
_RANDOM = TraceFlags.RANDOM_TRACE_ID
# The flags the SDK gives a child its sampler drops: its parent's random-trace-id bit only.
_CHILD_FLAGS = {False: TraceFlags(TraceFlags.DEFAULT), True: TraceFlags(_RANDOM)}


class SpanStarter(Tracer):
    """A tracer whose ``start_as_current_span`` is its ``start_span`` made current, as the
    SDK defines it: written once here for clue's tracers (the fast roots and the swappable
    proxy), which define ``start_span`` only."""

    @agnostic_contextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        """``start_span`` with the span current in the block (ended at its end by default)."""
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class FastRoots(SpanStarter):
    """An SDK tracer whose dropped spans (new traces the sampler drops, children of unsampled
    parents) are made without the SDK."""

    def __init__(
        self, tracer: SDKTracer, sampler: AdaptiveSampler, enabled: Callable[[], bool] | None
    ) -> None:
        self._tracer = tracer
        self._root = sampler.root
        self._ids = tracer.id_generator
        # The SDK's default generator: its random draws are made here, without its two calls.
        self._random_ids = type(self._ids) is RandomIdGenerator
        self._enabled = enabled  # the SDK's tracer configurator may switch it off at any time
        random_ids = self._ids.is_trace_id_random()
        self._flags = TraceFlags(TraceFlags.RANDOM_TRACE_ID if random_ids else TraceFlags.DEFAULT)

    @classmethod
    def of(cls, tracer: Tracer) -> Tracer:
        """``tracer`` with the fast path, or ``tracer`` itself when the path does not apply:
        not an SDK tracer, another sampler, or the SDK's internal span metrics turned on
        (they count every span the SDK starts)."""
        if type(tracer) is not SDKTracer:
            return tracer
        sampler = getattr(tracer, "sampler", None)
        if type(sampler) is not AdaptiveSampler:  # a subclass may decide otherwise
            return tracer
        internal = os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "")
        if internal.strip().lower() == "true":
            return tracer
        usable, enabled = tracer_switch(tracer)
        return cls(tracer, sampler, enabled) if usable else tracer

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
        """``Tracer.start_span``, with the spans the sampler drops answered here."""
        decided: AbstractContextManager[None] = _UNDECIDED
        if self._enabled is None or self._enabled():
            parent = span_context_in(get_current() if context is None else context)
            trace_id, flags, state, has_parent = parent_fields(parent)
            if not has_parent:
                ids = self._ids
                if self._random_ids:
                    trace_id = getrandbits(128) or ids.generate_trace_id()  # 0 is not valid
                else:
                    trace_id = ids.generate_trace_id()
                if not self._root.decide(trace_id):
                    return NonRecordingSpan(
                        SpanContext(trace_id, self._span_id(), False, self._flags)
                    )
                decided = self._root.decided()  # sampled: the SDK must not count it again
            elif not flags & _SAMPLED:  # the sampler follows an unsampled parent: dropped
                child_flags = _CHILD_FLAGS[bool(flags & _RANDOM)]
                return NonRecordingSpan(
                    SpanContext(trace_id, self._span_id(), False, child_flags, state)
                )
        with decided:
            return self._tracer.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )

    def _span_id(self) -> int:
        if self._random_ids:
            return getrandbits(64) or self._ids.generate_span_id()  # 0 is not a valid id
        return self._ids.generate_span_id()
