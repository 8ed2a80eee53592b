"""Every use clue makes of OpenTelemetry's private names and implementation details.

clue goes past the OpenTelemetry API in a few places, for speed or for a hook
the SDK keeps to itself. Each of those is here and nowhere else, behind a
check made once: at import, or the first time the hook is needed. When a
release breaks one (a renamed attribute, a changed signature), clue takes the
plain API or SDK path instead and says so once in its log, naming the hook; it
never fails at import or on a request.

The hooks (the name each is logged under: what clue does with it; without it):

- ``span-key``: the span of a context read in one lookup; ``trace.get_current_span``.
- ``span-context-layout``: a ``SpanContext`` read by tuple position; its properties.
- ``agnostic-contextmanager``: ``start_as_current_span`` also decorates ``async def``
  functions; ``contextlib.contextmanager`` (plain functions only).
- ``sync-gauge``: clue's gauges are instances of the API's ``_Gauge``; gauges that
  forward all the same.
- ``tracer-enabled``: new traces the sampler drops are decided before the SDK (a tracer
  switched off by the SDK's tracer configurator is asked first); the SDK starts every span.
- ``reader-collect``: clue's histograms join each metric reader's collection; the SDK
  aggregates them.
- ``batch-processor-drops``: queue-full drops counted in ``stats()``; the SDK logs each.
- ``exporter-preferences``: a wrapped metric exporter keeps its preferred temporality and
  aggregation; the SDK's defaults.
- ``composite-propagators``: a message's ``traceparent`` read without the propagators when
  they are W3C trace context and baggage alone; the configured propagators read it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.metrics import _Gauge
    from opentelemetry.util._decorator import _agnosticcontextmanager

_T = TypeVar("_T")
_said: set[str] = set()  # hooks whose absence was logged
_said_lock = threading.Lock()


def fell_back(hook: str, fallback: str) -> None:
    """Say once in clue's log that ``hook`` is unusable and ``fallback`` is taken instead."""
    if hook in _said:
        return
    with _said_lock:
        if hook in _said:
            return
        _said.add(hook)
    from clue.log import WARN, Entry, write_entry  # clue.log imports this module first

    message = "an OpenTelemetry internal clue relies on has changed: using the plain path"
    kv = {"hook": hook, "fallback": fallback}
    # Written directly (a request scope must not buffer, then drop it); the caller may be
    # serving a request: nothing raised here reaches it.
    with contextlib.suppress(Exception):
        write_entry(Entry((WARN, message, kv, time.time_ns(), {}, Context(), None, None, False)))


# --- span-key: the key the API keeps the current span under -------------------------------


def _span_key() -> str | None:
    """The span key of the API, if a context holding a span is the one-entry dict it reads."""
    try:
        (key,) = set_span_in_context(INVALID_SPAN, Context()).keys()
        probe = NonRecordingSpan(INVALID_SPAN_CONTEXT)
        if trace.get_current_span(Context({key: probe})) is probe:
            return key
    except Exception:  # any change of shape: the API's own path
        pass
    return None


_SPAN_KEY = _span_key()
_span_types: set[type] = set()  # classes already checked to be spans


def _span_context_by_key(context: Context) -> SpanContext:
    span: Span | None = context.get(_SPAN_KEY)  # type: ignore[arg-type, assignment]
    if span is None:
        return INVALID_SPAN_CONTEXT
    kind = type(span)
    if kind not in _span_types:
        if not isinstance(span, Span):
            return INVALID_SPAN_CONTEXT
        _span_types.add(kind)
    return span.get_span_context()


def _span_context_by_api(context: Context) -> SpanContext:
    fell_back("span-key", "trace.get_current_span")
    return trace.get_current_span(context).get_span_context()


span_context_in: Callable[[Context], SpanContext] = (
    _span_context_by_key if _SPAN_KEY is not None else _span_context_by_api
)
"""``get_current_span(context).get_span_context()`` in fewer steps (the API's makes several
calls and an ABC ``isinstance`` check): the invalid span context when ``context`` holds no
span."""


# --- span-context-layout: SpanContext is tuple[trace_id, span_id, is_remote, flags, state,
# is_valid]; unpacking it costs less than one of its properties. The only positional reads.


def _layout_holds() -> bool:
    try:
        probe = SpanContext(0xA, 0xB, True, TraceFlags(TraceFlags.SAMPLED), TraceState())
        fields = (
            probe.trace_id,
            probe.span_id,
            probe.is_remote,
            probe.trace_flags,
            probe.trace_state,
            probe.is_valid,
        )
        return isinstance(probe, tuple) and tuple(probe) == fields
    except Exception:
        return False


_SAMPLED = TraceFlags.SAMPLED


def _ids_by_position(span_context: SpanContext) -> tuple[int, int] | None:
    trace_id, span_id, _, _, _, valid = span_context
    return (trace_id, span_id) if valid else None


def _sampled_by_position(span_context: SpanContext) -> bool:
    _, _, _, flags, _, _ = span_context
    return bool(flags & _SAMPLED)


def _valid_by_position(span_context: SpanContext) -> bool:
    *_, valid = span_context
    return valid


def _parent_by_position(span_context: SpanContext) -> tuple[int, int, TraceState, bool]:
    trace_id, _, _, flags, state, valid = span_context
    return trace_id, flags, state, valid


def _ids_by_property(span_context: SpanContext) -> tuple[int, int] | None:
    fell_back("span-context-layout", "SpanContext properties")
    return (span_context.trace_id, span_context.span_id) if span_context.is_valid else None


def _sampled_by_property(span_context: SpanContext) -> bool:
    fell_back("span-context-layout", "SpanContext properties")
    return span_context.trace_flags.sampled


def _parent_by_property(span_context: SpanContext) -> tuple[int, int, TraceState, bool]:
    fell_back("span-context-layout", "SpanContext properties")
    sc = span_context
    return sc.trace_id, sc.trace_flags, sc.trace_state, sc.is_valid


def _valid_by_property(span_context: SpanContext) -> bool:
    fell_back("span-context-layout", "SpanContext properties")
    return span_context.is_valid


_BY_POSITION = _layout_holds()
ids_of: Callable[[SpanContext], tuple[int, int] | None] = (
    _ids_by_position if _BY_POSITION else _ids_by_property
)
"""The trace and span ids of a valid span context, None for an invalid one."""
is_sampled: Callable[[SpanContext], bool] = (
    _sampled_by_position if _BY_POSITION else _sampled_by_property
)
"""Whether the sampled flag of a span context is set."""
is_valid: Callable[[SpanContext], bool] = _valid_by_position if _BY_POSITION else _valid_by_property
"""Whether a span context is valid (a context without a span gives an invalid one)."""
parent_fields: Callable[[SpanContext], tuple[int, int, TraceState, bool]] = (
    _parent_by_position if _BY_POSITION else _parent_by_property
)
"""What a child span takes from its parent's span context: the trace id, the trace flags,
the trace state, and whether it is valid."""


# --- agnostic-contextmanager: a context manager that also decorates coroutine functions, the
# way the API's Tracer.start_as_current_span does.


def _agnostic_contextmanager() -> Callable[..., Any] | None:
    try:
        from opentelemetry.util._decorator import _agnosticcontextmanager

        @_agnosticcontextmanager
        def probe() -> Iterator[int]:
            yield 1

        with probe() as got:
            return _agnosticcontextmanager if got == 1 else None
    except Exception:
        return None


def _plain_contextmanager(
    function: Callable[..., Iterator[_T]],
) -> Callable[..., contextlib.AbstractContextManager[_T]]:
    made = contextlib.contextmanager(function)

    def start(*args: Any, **kwargs: Any) -> contextlib.AbstractContextManager[_T]:
        fell_back("agnostic-contextmanager", "contextlib.contextmanager")
        return made(*args, **kwargs)

    return start


# contextlib.contextmanager, whose result also decorates ``async def`` functions.
if TYPE_CHECKING:
    agnostic_contextmanager = _agnosticcontextmanager
else:
    agnostic_contextmanager = _agnostic_contextmanager() or _plain_contextmanager


# --- sync-gauge: the API names its synchronous gauge ``_Gauge`` (clue's gauges subclass it).


def _gauge_base() -> type[Any] | None:
    base = getattr(metrics, "_Gauge", None)
    if isinstance(base, type) and issubclass(base, metrics.Synchronous):
        return base
    return None


if TYPE_CHECKING:
    Gauge = _Gauge
else:
    Gauge = _gauge_base() or metrics.Synchronous
GAUGE_IS_THE_APIS = _gauge_base() is not None


# --- tracer-enabled: the SDK's tracer configurator (1.39+) may switch a tracer off.


def tracer_switch(tracer: Any) -> tuple[bool, Callable[[], bool] | None]:
    """Whether clue may decide new traces for the SDK ``tracer``, and the switch to ask
    first (None: this SDK cannot switch tracers off)."""
    switch = getattr(tracer, "_is_enabled", None)
    if switch is None and not hasattr(tracer, "_tracer_config"):
        return True, None  # an SDK before tracer configurators
    try:
        if callable(switch) and type(switch()) is bool:
            return True, switch
    except Exception:
        pass
    fell_back("tracer-enabled", "the SDK starts every span")
    return False, None


# --- reader-collect: a metric reader's collection, which clue's histograms join.

Collect = Callable[..., Any]


def collect_hooks(readers: Any) -> bool:
    """Whether every reader of ``readers`` lets clue wrap its collection (else: False, said
    once, and the SDK aggregates the histograms)."""
    for reader in readers:
        try:
            collect = reader._collect
            usable = (
                callable(collect)
                and callable(reader._set_collect_callback)
                and isinstance(reader._instrument_class_temporality, dict)
            )
            inspect.signature(collect).bind(reader, timeout_millis=1.0)
            inspect.signature(reader._set_collect_callback).bind(collect)
        except (AttributeError, TypeError, ValueError):
            usable = False
        if not usable:
            fell_back("reader-collect", "the SDK aggregates clue's histograms")
            return False
    return True


def wrap_collect(reader: Any, wrap: Callable[[Collect], Collect]) -> None:
    """Make ``reader`` collect through ``wrap(its collection)`` (checked by `collect_hooks`)."""
    reader._set_collect_callback(wrap(reader._collect))


def temporalities(reader: Any) -> dict[type, Any]:
    """The temporality ``reader`` wants per SDK instrument class (checked by `collect_hooks`)."""
    return dict(reader._instrument_class_temporality)


# --- batch-processor-drops: the bookkeeping object an SDK batch processor reports drops to.

# With drops counted, the SDK's logger of one line per dropped item is limited to its errors.
_SDK_QUEUE_LOGGER = "opentelemetry.sdk._shared_internal"


_BOOKKEEPING = ("register_queue_size", "drop_items", "finish_items")


def replace_drop_counter(processor: Any, counter: Any) -> bool:
    """Make ``counter`` (``drop_items``, ``finish_items``, ``register_queue_size``) receive
    the queue bookkeeping of the SDK batch ``processor``; False (said once) when it cannot,
    or when its methods do not take every call the SDK's are declared to take (the SDK
    calls them from its export thread)."""
    batch: Any = getattr(processor, "_batch_processor", None)
    bookkeeping = getattr(batch, "_metrics", None)
    if bookkeeping is None or not all(
        _takes(getattr(counter, name), getattr(bookkeeping, name, None)) for name in _BOOKKEEPING
    ):
        fell_back("batch-processor-drops", "the SDK logs each dropped item")
        return False
    batch._metrics = counter
    logging.getLogger(_SDK_QUEUE_LOGGER).setLevel(logging.ERROR)
    return True


def _takes(ours: Callable[..., Any], theirs: Any) -> bool:
    """Whether ``ours`` accepts every argument the method ``theirs`` declares."""
    try:
        parameters = inspect.signature(theirs).parameters.values()
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        keywords = {p.name: None for p in parameters if p.kind is p.KEYWORD_ONLY}
        inspect.signature(ours).bind(*[None] * len(positional), **keywords)
    except (TypeError, ValueError):  # theirs is missing, not callable, or takes more
        return False
    return True


# --- exporter-preferences: what a metric exporter asked for, for a wrapper to ask the same.


def exporter_preferences(exporter: Any) -> tuple[Any, Any]:
    """The preferred temporality and aggregation maps of a metric exporter (None, None: the
    SDK's defaults, said once, when they cannot be read)."""
    try:
        temporality = exporter._preferred_temporality
        aggregation = exporter._preferred_aggregation
    except AttributeError:
        temporality = aggregation = False  # neither a map nor None: not usable
    if isinstance(temporality, dict | None) and isinstance(aggregation, dict | None):
        return temporality, aggregation
    fell_back("exporter-preferences", "the SDK's default temporality and aggregation")
    return None, None


# --- composite-propagators: what a CompositePropagator is made of.

_W3C = frozenset({TraceContextTextMapPropagator, W3CBaggagePropagator})


def w3c_only(propagator: Any) -> bool:
    """Whether ``propagator`` is the API's W3C trace context propagator, alone or in a
    ``CompositePropagator`` with at most the W3C baggage propagator (exact classes: a
    subclass may read more). False (said once) when a composite cannot be looked into."""
    if type(propagator) is TraceContextTextMapPropagator:
        return True
    if type(propagator) is not CompositePropagator:
        return False
    parts = getattr(propagator, "_propagators", None)
    if not isinstance(parts, list | tuple):
        fell_back("composite-propagators", "the configured propagators read every traceparent")
        return False
    kinds = [type(part) for part in parts]
    return (
        TraceContextTextMapPropagator in kinds
        and len(set(kinds)) == len(kinds) <= 2
        and set(kinds) <= _W3C
    )
