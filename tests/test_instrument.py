"""``@clue.instrument``: spans around functions, coroutines and generators, arguments recorded
and masked, exceptions recorded, nothing formatted for an unsampled call, a real export."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

import clue
from clue import log
from clue.testing import CapturedSpans, capture_spans
from tests.otlp_receiver import OTLPReceiver


@clue.instrument(record=("order_id", "amount", "password", "card"))
def charge(order_id: str, amount: float, password: str, card: dict[str, Any]) -> str:
    return f"charged {order_id}"


def test_a_function_runs_in_a_span_named_by_its_qualified_name(clue_spans: CapturedSpans) -> None:
    @clue.instrument
    def work() -> int:
        return trace.get_current_span().get_span_context().span_id

    span_id = work()
    span = clue_spans.one(
        "test_a_function_runs_in_a_span_named_by_its_qualified_name.<locals>.work"
    )
    assert span.context is not None and span.context.span_id == span_id
    assert span.attributes is not None
    assert span.attributes["code.function"].endswith("work")
    assert work.__name__ == "work"  # the wrapper looks like the function


def test_chosen_arguments_are_recorded_and_sensitive_ones_masked(clue_spans: CapturedSpans) -> None:
    card = {"holder": "Ana", "credit_card_number": "4111111111111111"}
    assert charge("o-1", 12.5, password="hunter2", card=card) == "charged o-1"
    attributes = dict(clue_spans.one("charge").attributes or {})
    assert attributes["order_id"] == "o-1"
    assert attributes["amount"] == 12.5
    assert attributes["password"] == "[REDACTED]"
    assert attributes["card"] == '{"holder": "Ana", "credit_card_number": "[REDACTED]"}'
    assert "4111111111111111" not in repr(attributes) and "hunter2" not in repr(attributes)


def test_long_values_are_cut_like_log_values(clue_reset: None, clue_spans: CapturedSpans) -> None:
    log.configure(max_value_size=16)

    @clue.instrument(record=("note",), name="note")
    def keep(note: str) -> None:
        pass

    keep("x" * 100)
    note = str((clue_spans.one("note").attributes or {})["note"])
    assert note.startswith("x" * 16) and "truncated 84 chars" in note


def test_keyword_arguments_and_defaults_are_recorded(clue_spans: CapturedSpans) -> None:
    @clue.instrument(record=("region", "tenant"), name="defaults")
    def work(region: str = "eu", **extra: Any) -> None:
        pass

    work(tenant="acme")
    attributes = clue_spans.one("defaults").attributes or {}
    assert (attributes["region"], attributes["tenant"]) == ("eu", "acme")


def test_recording_an_argument_the_function_lacks_is_an_error() -> None:
    with pytest.raises(ValueError, match="'user'"):

        @clue.instrument(record=("user",))
        def work(order_id: str) -> None:
            pass


def test_an_exception_is_recorded_and_sets_the_status(clue_spans: CapturedSpans) -> None:
    @clue.instrument(name="fails")
    def fails() -> None:
        raise KeyError("o-9")

    with pytest.raises(KeyError):
        fails()
    span = clue_spans.one("fails")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "KeyError: 'o-9'"
    assert [e.name for e in span.events] == ["exception"]


def test_an_unsampled_call_formats_nothing() -> None:
    formatted: list[str] = []

    class Loud:
        def __str__(self) -> str:
            formatted.append("str")
            return "loud"

    @clue.instrument(record=("value",), name="unsampled")
    def work(value: Any) -> str:
        return "done"

    with capture_spans(sampler=ALWAYS_OFF) as spans:
        assert work(Loud()) == "done"
    assert (len(spans), formatted) == (0, [])


async def test_a_coroutine_function_is_awaited_inside_its_span(clue_spans: CapturedSpans) -> None:
    @clue.instrument(record=("n",), name="double")
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        log.info("inside")
        return 2 * n

    with trace.get_tracer("t").start_as_current_span("parent"):
        assert await double(21) == 42
    span, parent = clue_spans.one("double"), clue_spans.one("parent")
    assert span.parent is not None and parent.context is not None
    assert span.parent.span_id == parent.context.span_id
    assert (span.attributes or {})["n"] == 21


def test_a_generator_span_covers_the_whole_iteration(clue_spans: CapturedSpans) -> None:
    seen: list[int] = []

    @clue.instrument(record=("count",), name="numbers")
    def numbers(count: int) -> Iterator[int]:
        for i in range(count):
            seen.append(trace.get_current_span().get_span_context().span_id)
            yield i

    outside = trace.get_current_span()
    iterator = numbers(3)
    assert next(iterator) == 0
    assert clue_spans.names() == []  # still open
    assert trace.get_current_span() is outside  # nothing attached across the yield
    assert list(iterator) == [1, 2]
    span = clue_spans.one("numbers")
    assert span.context is not None and set(seen) == {span.context.span_id}
    assert span.status.status_code is StatusCode.UNSET


def test_a_generator_closed_early_ends_its_span_without_an_error(
    clue_spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[bool] = []

    @clue.instrument(name="endless")
    def endless() -> Iterator[int]:
        try:
            while True:
                yield 1
        finally:
            closed.append(True)

    iterator = endless()
    next(iterator)
    # closed from another thread (another context): no "Failed to detach context"
    with caplog.at_level(logging.ERROR):
        closer = threading.Thread(target=iterator.close)
        closer.start()
        closer.join(5)
    assert closed == [True]
    assert clue_spans.one("endless").status.status_code is StatusCode.UNSET
    assert "detach" not in caplog.text


def test_send_and_throw_reach_the_generator(clue_spans: CapturedSpans) -> None:
    @clue.instrument(name="echo")
    def echo() -> Iterator[Any]:
        received = None
        while True:
            try:
                received = yield received
            except ValueError as exc:
                received = f"caught {exc}"

    iterator = echo()
    next(iterator)
    assert iterator.send("a") == "a"
    assert iterator.throw(ValueError("b")) == "caught b"
    iterator.close()
    assert clue_spans.names() == ["echo"]


def test_a_generator_failing_midway_records_the_error(clue_spans: CapturedSpans) -> None:
    @clue.instrument(name="breaks")
    def breaks() -> Iterator[int]:
        yield 1
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        list(breaks())
    assert clue_spans.one("breaks").status.description == "RuntimeError: disk gone"


async def test_an_async_generator_span_covers_the_iteration(clue_spans: CapturedSpans) -> None:
    @clue.instrument(record=("count",), name="ticks")
    async def ticks(count: int) -> AsyncIterator[int]:
        for _ in range(count):
            await asyncio.sleep(0)
            yield trace.get_current_span().get_span_context().span_id

    ids = [i async for i in ticks(3)]
    span = clue_spans.one("ticks")
    assert span.context is not None and set(ids) == {span.context.span_id}


async def test_an_async_generator_left_early_in_another_task_ends_cleanly(
    clue_spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    @clue.instrument(name="stream")
    async def stream() -> AsyncIterator[int]:
        while True:
            await asyncio.sleep(0)
            yield 1

    messages = stream()
    assert await anext(messages) == 1
    with caplog.at_level(logging.ERROR):
        await asyncio.create_task(messages.aclose())  # type: ignore[attr-defined]
    assert clue_spans.one("stream").status.status_code is StatusCode.UNSET
    assert "detach" not in caplog.text


def test_spans_of_an_instrumented_function_are_exported(
    clue_reset: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = OTLPReceiver()
    receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
        clue.configure("shop", "1.0")
        charge("o-7", 3.0, password="pw", card={})
        clue.shutdown()
        [span] = receiver.wait_for(lambda r: [s for s in r.spans() if s.name == "charge"])
        assert span.attributes["order_id"] == "o-7"
        assert span.attributes["password"] == "[REDACTED]"
    finally:
        receiver.stop()
