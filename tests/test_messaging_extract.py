"""clue.messaging reads a plain ``traceparent`` without the propagators when they are W3C
trace context and baggage alone: whatever the headers and whatever propagators are set, the
context it gives is the one the configured propagators give."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clue import _otel_internals, messaging
from clue.messaging._headers import LOWERED_GETTER, extract_lowered, lowered

PLAIN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FromOtherHeader(TraceContextTextMapPropagator):
    """A subclass that reads the trace context from another header: not W3C alone."""

    def extract(self, carrier: Any, context: Context | None = None, getter: Any = None) -> Context:
        value = getter.get(carrier, "x-trace") if getter else None
        return super().extract({"traceparent": value[0]} if value else {}, context)


class Stamp(TextMapPropagator):
    """Another propagator: marks every context it reads."""

    def extract(self, carrier: Any, context: Context | None = None, getter: Any = None) -> Context:
        return baggage.set_baggage("stamped", "yes", context)

    def inject(self, carrier: Any, context: Context | None = None, setter: Any = None) -> None:
        pass

    @property
    def fields(self) -> set[str]:
        return set()


def w3c() -> TextMapPropagator:
    return CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


PROPAGATORS = {
    "tracecontext,baggage": w3c,
    "baggage,tracecontext": lambda: CompositePropagator(
        [W3CBaggagePropagator(), TraceContextTextMapPropagator()]
    ),
    "tracecontext alone": TraceContextTextMapPropagator,
    "tracecontext, not in a composite": lambda: CompositePropagator(
        [TraceContextTextMapPropagator()]
    ),
    "baggage alone": lambda: CompositePropagator([W3CBaggagePropagator()]),
    "a subclass of tracecontext": lambda: CompositePropagator([FromOtherHeader()]),
    "tracecontext, baggage and another": lambda: CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), Stamp()]
    ),
    "none": lambda: CompositePropagator([]),
}

HEADERS: dict[str, dict[str, Any]] = {
    "plain, sampled": {"traceparent": PLAIN},
    "plain, not sampled": {"traceparent": PLAIN[:-2] + "00"},
    "plain, other flags": {"traceparent": PLAIN[:-2] + "03"},
    "name in upper case": {"TraceParent": PLAIN},
    "with tracestate": {"traceparent": PLAIN, "tracestate": "vendor=x1"},
    "with baggage": {"traceparent": PLAIN, "baggage": "user=42"},
    "upper-case hex": {"traceparent": PLAIN.upper()},
    "zero trace id": {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},
    "zero span id": {"traceparent": f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01"},
    "version ff": {"traceparent": "ff" + PLAIN[2:]},
    "version 01 with more": {"traceparent": "01" + PLAIN[2:] + "-extra"},
    "version 00 with more": {"traceparent": PLAIN + "-extra"},
    "spaces around": {"traceparent": f" {PLAIN}\t"},
    "bytes": {"traceparent": PLAIN.encode()},
    "not text": {"traceparent": 12},
    "too long": {"traceparent": PLAIN + "0" * 9000},
    "another header": {"x-trace": PLAIN},
    "none": {"nats-msg-id": "e-1"},
}


@pytest.fixture(autouse=True)
def global_propagators() -> Iterator[None]:
    before = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(before)


def seen(context: Context) -> tuple[object, dict[str, object]]:
    return trace.get_current_span(context).get_span_context(), dict(baggage.get_all(context))


def by_the_propagators(headers: dict[str, Any], context: Context) -> Context:
    return propagate.get_global_textmap().extract(headers, context, getter=LOWERED_GETTER)


@pytest.mark.parametrize("headers", HEADERS.values(), ids=HEADERS)
@pytest.mark.parametrize("propagator", PROPAGATORS.values(), ids=PROPAGATORS)
def test_the_context_read_is_the_propagators(propagator: Any, headers: dict[str, Any]) -> None:
    propagate.set_global_textmap(propagator())
    outer = baggage.set_baggage("outer", "kept", Context())
    names = lowered(headers)
    assert seen(extract_lowered(names, outer)) == seen(by_the_propagators(names, outer))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF-f \t\n", min_size=50, max_size=60))
def test_any_traceparent_reads_as_the_propagators_read_it(value: str) -> None:
    propagate.set_global_textmap(w3c())
    names = {"traceparent": value}
    assert seen(extract_lowered(names, Context())) == seen(by_the_propagators(names, Context()))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 54), st.sampled_from("0123456789abcdefA-x \n"))
def test_a_plain_traceparent_with_one_character_changed_reads_as_the_propagators_read_it(
    position: int, character: str
) -> None:
    propagate.set_global_textmap(w3c())
    names = {"traceparent": PLAIN[:position] + character + PLAIN[position + 1 :]}
    assert seen(extract_lowered(names, Context())) == seen(by_the_propagators(names, Context()))


def test_replaced_propagators_are_followed() -> None:
    headers = lowered({"traceparent": PLAIN})
    propagate.set_global_textmap(w3c())
    assert trace.get_current_span(extract_lowered(headers, Context())).get_span_context().is_valid
    propagate.set_global_textmap(CompositePropagator([W3CBaggagePropagator()]))
    assert (
        not trace.get_current_span(extract_lowered(headers, Context())).get_span_context().is_valid
    )


def test_a_consume_scope_continues_the_producers_trace() -> None:
    propagate.set_global_textmap(w3c())
    with messaging.Consumer("kafka").scope("orders", {"traceparent": PLAIN}):
        parent = trace.get_current_span().get_span_context()
        assert parent.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736


def test_a_composite_that_cannot_be_looked_into_is_left_to_the_propagators() -> None:
    odd = CompositePropagator([TraceContextTextMapPropagator()])
    odd._propagators = None  # type: ignore[assignment]  # a release that renamed it
    assert not _otel_internals.w3c_only(odd)
    assert _otel_internals.w3c_only(w3c())
