"""Spans the adaptive sampler drops (new traces, children of unsampled parents) are started
without the SDK (clue.telemetry.roots), as the very spans the SDK would have made."""

from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import clue
from clue import log, messaging
from clue.telemetry import AdaptiveSampler
from clue.telemetry.roots import FastRoots
from clue.testing import capture_logs
from tests.test_telemetry_configure import clean_env  # noqa: F401 - autouse: no OTEL_*, clue's globals


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def configure(sampler: object) -> InMemorySpanExporter:
    spans = InMemorySpanExporter()
    clue.configure("svc", span_exporter=spans, sampler=sampler, exporter="none")  # type: ignore[arg-type]
    return spans


def exported(spans: InMemorySpanExporter) -> list[str]:
    assert clue.telemetry.force_flush()
    return [span.name for span in spans.get_finished_spans()]


@pytest.fixture(autouse=True)
def seeded_ids() -> None:
    """The SDK draws ids from ``random``: seeded, every decision below is the same each run."""
    random.seed(20261123)


def starved() -> tuple[trace.Tracer, InMemorySpanExporter]:
    """clue configured with an adaptive sampler that has seen 10 new traces with its clock
    standing still (an infinite rate): it now samples at its floor of 1e-4."""
    sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=FakeClock())
    spans = configure(sampler)
    tracer = trace.get_tracer("tests.roots")
    for _ in range(10):
        tracer.start_span("warm-up").end()
    assert sampler.probability == 1e-4
    return tracer, spans


def test_a_dropped_new_trace_is_the_span_the_sdk_would_have_made() -> None:
    tracer, spans = starved()
    dropped = [tracer.start_span("dropped", kind=trace.SpanKind.SERVER) for _ in range(50)]
    sdk_provider = TracerProvider(sampler=ParentBased(AdaptiveSampler(1e-9, sample_size=1)))
    sdk_span = sdk_provider.get_tracer("sdk").start_span("dropped")  # same flags, same type
    for span in dropped:
        assert type(span) is NonRecordingSpan
        assert not span.is_recording()
        context = span.get_span_context()
        assert context.is_valid and not context.is_remote
        assert context.trace_flags == sdk_span.get_span_context().trace_flags
        assert not context.trace_flags.sampled
        assert context.trace_state == sdk_span.get_span_context().trace_state
        span.end()
    assert len({span.get_span_context().trace_id for span in dropped}) == 50
    assert "dropped" not in exported(spans)


def test_a_sampled_new_trace_is_made_by_the_sdk_and_counted_once() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=clock)
    spans = configure(sampler)
    tracer = trace.get_tracer("tests.roots")
    for _ in range(9):  # 10 traces/s; counted twice, the 5th would start an estimate
        clock.now += 0.1
        with tracer.start_as_current_span("request") as span:
            assert span.is_recording() and span.get_span_context().trace_flags.sampled
    assert sampler.probability == 1.0  # no estimate yet: the 9 traces were counted once
    assert exported(spans) == ["request"] * 9
    clock.now += 0.1
    tracer.start_span("tenth").end()  # the estimate: 10 traces in 1 s
    assert sampler.probability == pytest.approx(0.1)


def test_the_rate_estimate_counts_new_traces_not_spans() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=clock)
    configure(sampler)
    tracer = trace.get_tracer("tests.roots")
    for _ in range(10):  # 10 traces in 1 s, each with two children: 10/s, not 30/s or 20/s
        clock.now += 0.1
        with tracer.start_as_current_span("request"):
            tracer.start_span("query").end()
            tracer.start_span("cache").end()
    assert sampler.probability == pytest.approx(0.1)


def test_children_of_a_dropped_trace_follow_it() -> None:
    tracer, spans = starved()
    with tracer.start_as_current_span("request") as root:
        assert not root.is_recording()
        assert trace.get_current_span() is root
        child = tracer.start_span("query")
        assert child.get_span_context().trace_id == root.get_span_context().trace_id
        assert not child.is_recording()
        child.end()
    assert trace.get_current_span() is not root
    assert "request" not in exported(spans)


def test_a_remote_sampled_parent_is_followed_by_the_sdk() -> None:
    tracer, spans = starved()
    parent = NonRecordingSpan(
        SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    span = tracer.start_span("served", context=trace.set_span_in_context(parent))
    assert span.is_recording()
    assert span.get_span_context().trace_id == 0xABC
    span.end()
    assert "served" in exported(spans)


def test_an_exception_in_a_dropped_current_span_still_propagates() -> None:
    tracer, _ = starved()
    with pytest.raises(KeyError), tracer.start_as_current_span("request"):
        raise KeyError("missing")


class Subclassed(AdaptiveSampler):
    pass


@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, Subclassed()], ids=["another sampler", "a subclass"]
)
def test_other_samplers_keep_the_sdk_path(sampler: object) -> None:
    configure(sampler)
    sdk_tracer = trace.get_tracer_provider().delegate.get_tracer("x")  # type: ignore[attr-defined]
    assert FastRoots.of(sdk_tracer) is sdk_tracer


def test_the_sdk_internal_span_metrics_keep_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(AdaptiveSampler())
    sdk_tracer = trace.get_tracer_provider().delegate.get_tracer("x")  # type: ignore[attr-defined]
    assert isinstance(FastRoots.of(sdk_tracer), FastRoots)
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    assert FastRoots.of(sdk_tracer) is sdk_tracer


def test_a_disabled_tracer_makes_no_decision() -> None:
    sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=FakeClock())
    configure(sampler)
    sdk_tracer = trace.get_tracer_provider().delegate.get_tracer("x")  # type: ignore[attr-defined]
    if not hasattr(sdk_tracer, "_tracer_config"):
        pytest.skip("this SDK has no tracer configurator")
    fast = FastRoots.of(sdk_tracer)
    assert isinstance(fast, FastRoots)
    sdk_tracer._tracer_config = type(sdk_tracer._tracer_config)(is_enabled=False)
    for _ in range(10):  # a sample's worth: counted, they would bring the rate down
        span = fast.start_span("off")
        assert not span.get_span_context().is_valid
    assert sampler.probability == 1.0  # no decision was made, so none was counted


def test_dropped_ids_are_the_draws_of_the_id_generator() -> None:
    tracer, _ = starved()
    random.seed(7)
    span = tracer.start_span("dropped")
    random.seed(7)  # the SDK's RandomIdGenerator: one 128-bit draw, then one 64-bit draw
    expected = (random.getrandbits(128), random.getrandbits(64))
    assert not span.is_recording()
    assert (span.get_span_context().trace_id, span.get_span_context().span_id) == expected


class CountingIds(IdGenerator):
    def __init__(self) -> None:
        self.next = 0

    def generate_trace_id(self) -> int:
        self.next += 1
        return self.next << 64 | (1 << 64) - 1  # the sampler reads the low 64 bits: drop

    def generate_span_id(self) -> int:
        self.next += 1
        return self.next


def test_another_id_generator_is_asked_for_the_ids_of_dropped_traces() -> None:
    sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=FakeClock())
    provider = TracerProvider(sampler=sampler, id_generator=CountingIds())
    tracer = FastRoots.of(provider.get_tracer("tests.roots"))
    assert type(tracer) is FastRoots
    for _ in range(10):
        tracer.start_span("warm-up").end()
    spans = [tracer.start_span("dropped") for _ in range(20)]
    dropped = [s.get_span_context() for s in spans if not s.is_recording()]
    assert dropped and all(c.trace_id >> 64 == c.span_id - 1 for c in dropped)


# --- children of unsampled parents -------------------------------------------------------

STATE = TraceState([("vendor", "x1"), ("other", "y2")])
UNSAMPLED_PARENTS = {
    "remote, random trace id": SpanContext(
        0xABC, 0xDEF, True, TraceFlags(TraceFlags.RANDOM_TRACE_ID), STATE
    ),
    "remote, plain flags": SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.DEFAULT), STATE),
    "remote, no trace state": SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.DEFAULT)),
    "local": SpanContext(0xABC, 0xDEF, False, TraceFlags(TraceFlags.RANDOM_TRACE_ID), STATE),
}


def sdk_and_fast() -> tuple[trace.Tracer, trace.Tracer]:
    """The SDK's tracer and clue's fast one, same sampler settings, each with its own
    counting id generator: the same calls draw the same ids from both."""
    made = []
    for _ in range(2):
        sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=FakeClock())
        provider = TracerProvider(sampler=sampler, id_generator=CountingIds())
        made.append(provider.get_tracer("tests.roots"))
    fast = FastRoots.of(made[1])
    assert type(fast) is FastRoots
    return made[0], fast


@pytest.mark.parametrize("parent", UNSAMPLED_PARENTS.values(), ids=UNSAMPLED_PARENTS)
def test_a_child_of_an_unsampled_parent_is_the_span_the_sdk_would_have_made(
    parent: SpanContext,
) -> None:
    sdk, fast = sdk_and_fast()
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    for _ in range(3):
        ours = fast.start_span("process orders", context=context, kind=trace.SpanKind.CONSUMER)
        theirs = sdk.start_span("process orders", context=context, kind=trace.SpanKind.CONSUMER)
        assert type(ours) is type(theirs) is NonRecordingSpan
        assert not ours.is_recording()
        assert ours.get_span_context() == theirs.get_span_context()  # ids, flags, state
        assert ours.get_span_context().trace_state is parent.trace_state
        assert ours.get_span_context().span_id != parent.span_id


def test_a_child_of_an_unsampled_parent_keeps_the_random_ids_of_the_sdk() -> None:
    tracer, _ = starved()
    parent = UNSAMPLED_PARENTS["remote, random trace id"]
    random.seed(11)
    span = tracer.start_span("served", context=trace.set_span_in_context(NonRecordingSpan(parent)))
    random.seed(11)  # the SDK's RandomIdGenerator: one 64-bit draw for the span id
    assert span.get_span_context().span_id == random.getrandbits(64)
    assert span.get_span_context().trace_flags == TraceFlags(TraceFlags.RANDOM_TRACE_ID)


def test_children_of_unsampled_parents_are_not_counted_as_new_traces() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=1, sample_size=10, clock=clock)
    configure(sampler)
    tracer = trace.get_tracer("tests.roots")
    remote = trace.set_span_in_context(NonRecordingSpan(UNSAMPLED_PARENTS["remote, plain flags"]))
    for _ in range(30):
        tracer.start_span("served", context=remote).end()
    assert sampler.probability == 1.0  # no estimate: nothing was counted


def test_a_message_with_an_unsampled_trace_context_continues_it_downstream() -> None:
    """Through clue.messaging's door: the consumer span of a message whose producer did not
    sample is dropped, and what it passes on (headers of the calls it makes, its log
    entries) carries the producer's trace, the consumer span's id and "not sampled"."""
    _, spans = starved()
    consumer = messaging.Consumer("kafka")
    headers = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "tracestate": "vendor=x1,other=y2",
    }
    with capture_logs() as logs, consumer.scope("orders", headers) as scope:
        span = trace.get_current_span()
        assert span is scope.span and type(span) is NonRecordingSpan
        ids = span.get_span_context()
        assert ids.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
        assert ids.span_id != 0x00F067AA0BA902B7 and not ids.is_remote
        outgoing = messaging.inject()
        log.error("payment declined")
    assert outgoing["traceparent"] == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{ids.span_id:016x}-00"
    assert outgoing["tracestate"] == "vendor=x1,other=y2"
    (entry,) = logs.where(msg="payment declined")
    assert entry["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert entry["span_id"] == f"{ids.span_id:016x}"
    assert "process orders" not in exported(spans)


def test_a_message_with_a_sampled_trace_context_is_recorded() -> None:
    _, spans = starved()
    consumer = messaging.Consumer("kafka")
    headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    with consumer.scope("orders", headers) as scope:
        assert scope.span.is_recording()
        with trace.get_tracer("tests.roots").start_as_current_span("charge") as child:
            assert child.is_recording()  # a child of a sampled local parent records too
    assert clue.telemetry.force_flush()
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["process orders"].parent.span_id == 0x00F067AA0BA902B7
    assert finished["charge"].parent.span_id == finished["process orders"].context.span_id
