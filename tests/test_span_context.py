"""clue._otel_internals reads span contexts as the OpenTelemetry API does, in fewer steps."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from clue._otel_internals import _SPAN_KEY, is_sampled, span_context_in

SAMPLED = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
DROPPED = SpanContext(0xABC, 0x123, is_remote=True, trace_flags=TraceFlags(0))


@pytest.mark.parametrize(
    "ctx",
    [
        context.Context(),
        trace.set_span_in_context(NonRecordingSpan(SAMPLED)),
        trace.set_span_in_context(NonRecordingSpan(DROPPED)),
        trace.set_span_in_context(trace.INVALID_SPAN),
        context.set_value(_SPAN_KEY, "not a span", context.Context()),
    ],
    ids=["empty", "sampled", "dropped", "invalid", "not-a-span"],
)
def test_the_span_context_is_the_apis(ctx: context.Context) -> None:
    expected = trace.get_current_span(ctx).get_span_context()
    for _ in range(2):  # the second time the span's class is known
        got = span_context_in(ctx)
        assert got is expected or got == expected
        assert is_sampled(got) is expected.trace_flags.sampled


def test_the_key_is_the_one_the_api_uses() -> None:
    ctx = trace.set_span_in_context(NonRecordingSpan(SAMPLED))
    assert ctx[_SPAN_KEY].get_span_context() is SAMPLED
