"""The span context held by an OpenTelemetry context, read in fewer steps than the API's.

``trace.get_current_span(ctx).get_span_context()`` goes through several Python
calls, an ABC ``isinstance`` check among them; the request path asks it several
times per request (new trace or not, trace ids of a log line, exemplars). A
``SpanContext`` is declared as ``tuple[trace_id, span_id, is_remote, trace_flags,
trace_state, is_valid]``: unpacking it costs less than one of its properties.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    Span,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)

# The key the API keeps the current span under, found through the API itself.
(_SPAN_KEY,) = set_span_in_context(INVALID_SPAN, Context()).keys()
_SAMPLED = TraceFlags.SAMPLED
_span_types: set[type] = set()  # classes already checked to be spans


def span_context_in(context: Context) -> SpanContext:
    """``get_current_span(context).get_span_context()``: the invalid span context when
    ``context`` holds no span."""
    span: Span | None = context.get(_SPAN_KEY)  # type: ignore[assignment]
    if span is None:
        return INVALID_SPAN_CONTEXT
    kind = type(span)
    if kind not in _span_types:
        if not isinstance(span, Span):
            return INVALID_SPAN_CONTEXT
        _span_types.add(kind)
    return span.get_span_context()


def is_sampled(span_context: SpanContext) -> bool:
    """Whether the sampled flag of ``span_context`` is set."""
    _, _, _, flags, _, _ = span_context
    return bool(flags & _SAMPLED)
