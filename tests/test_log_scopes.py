"""Context fields and request buffering of clue.log."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from clue import log
from tests.test_log_fixtures import Captured, captured

__all__ = ["captured"]


def test_context_fields_are_added_and_removed(captured: Captured) -> None:
    with log.context(user="ana", order=7):
        log.info("inside", step=1)
        with log.context(order=8):
            log.info("nested")
    log.info("outside")
    inside, nested, outside = captured.entries()
    assert (inside["user"], inside["order"], inside["step"]) == ("ana", 7, 1)
    assert nested["order"] == 8 and nested["user"] == "ana"
    assert "user" not in outside and "order" not in outside


async def test_context_fields_cross_await_and_tasks(captured: Captured) -> None:
    async def child(n: int) -> None:
        await asyncio.sleep(0)
        with log.context(child=n):
            await asyncio.sleep(0)
            log.info("child")

    with log.context(request="r1"):
        await asyncio.sleep(0)
        await asyncio.gather(*(asyncio.create_task(child(n)) for n in range(3)))
        log.info("parent")
    entries = captured.entries()
    assert sorted(e["child"] for e in entries[:3]) == [0, 1, 2]
    assert all(e["request"] == "r1" for e in entries)
    assert "child" not in entries[3]


def test_context_fields_cross_copied_threads(captured: Captured) -> None:
    with log.context(request="r2"):
        ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(log.info, "from thread"))
    thread.start()
    thread.join()
    (entry,) = captured.entries()
    assert entry["request"] == "r2" and entry["msg"] == "from thread"


def test_scope_that_ends_well_drops_its_buffer(captured: Captured) -> None:
    with log.request_scope(request_id="ok") as scope:
        log.info("one")
        log.warn("two")
        assert scope.pending == 2
        assert captured.lines() == []
    assert captured.lines() == []
    log.info("after")
    assert captured.msgs() == ["after"]


def test_error_writes_buffer_first_in_order_with_original_times(captured: Captured) -> None:
    with log.request_scope(request_id="bad"):
        log.info("first", n=1)
        log.warn("second", n=2)
        log.print("access line")  # never buffered: written at once
        try:
            raise ValueError("no stock")
        except ValueError as exc:
            log.error("checkout failed", exc)
    entries = captured.entries()
    assert [e["msg"] for e in entries] == ["access line", "first", "second", "checkout failed"]
    first, second, error = entries[1:]
    assert first["time"] < second["time"] < error["time"] and first["time"] < entries[0]["time"]
    assert all(e["request_id"] == "bad" for e in entries)
    assert (error["level"], error["error"], error["error_type"]) == (
        "error",
        "no stock",
        "ValueError",
    )
    assert "traceback" not in error


def test_error_with_traceback(captured: Captured) -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        log.fatal("lookup", exc, traceback=True, key="missing")
    (entry,) = captured.entries()
    assert entry["level"] == "fatal" and entry["error_type"] == "KeyError"
    assert entry["traceback"].startswith("Traceback (most recent call last):")
    assert "test_error_with_traceback" in entry["traceback"]


def test_explicit_flush_then_more_buffering(captured: Captured) -> None:
    with log.request_scope():
        log.info("a")
        log.flush()
        assert captured.msgs() == ["a"]
        log.info("b")
    assert captured.msgs() == ["a"]
    log.flush()  # outside a scope: nothing to do
    assert captured.msgs() == ["a"]


def test_scope_exited_by_exception_flushes(captured: Captured) -> None:
    with pytest.raises(RuntimeError), log.request_scope(request_id="boom"):
        log.info("before the crash")
        raise RuntimeError("crash")
    (entry,) = captured.entries()
    assert entry["msg"] == "before the crash" and entry["request_id"] == "boom"


def test_buffer_is_bounded_and_flush_counts_drops(captured: Captured) -> None:
    log.configure(outputs=[log.Output(captured.stream, "json")], buffer_size=3, stdlib=False)
    with log.request_scope() as scope:
        for n in range(10):
            log.info("entry", n=n)
        assert scope.pending == 3 and scope.dropped == 7
        log.error("failed")
    note, *kept, error = captured.entries()
    assert note["level"] == "warn" and note["dropped"] == 7 and "7" in note["msg"]
    assert [e["n"] for e in kept] == [7, 8, 9]
    assert error["msg"] == "failed"
    assert note["time"] == kept[0]["time"]


def test_debug_on_disables_buffering_and_writes_debug(captured: Captured) -> None:
    log.debug("hidden")
    assert not log.debug_enabled()
    log.set_debug(True)
    assert log.debug_enabled()
    with log.request_scope():
        log.debug("shown")
        log.info("written at once")
        assert captured.msgs() == ["shown", "written at once"]
    log.set_debug(False)
    log.debug("hidden again")
    assert captured.msgs() == ["shown", "written at once"]


def test_nothing_is_buffered_outside_a_scope(captured: Captured) -> None:
    log.info("direct")
    log.warn("direct too")
    assert captured.msgs() == ["direct", "direct too"]


def test_entries_after_the_scope_closed_are_written(captured: Captured) -> None:
    with log.request_scope():
        ctx = contextvars.copy_context()
    ctx.run(log.info, "late")  # e.g. a background task that outlived its request
    assert captured.msgs() == ["late"]


def test_tasks_and_threads_share_the_request_buffer(captured: Captured) -> None:
    async def handler() -> None:
        with log.request_scope(request_id="shared"):
            await asyncio.create_task(asyncio.to_thread(log.info, "in a thread"))
            await asyncio.create_task(_info_later("in a task"))
            assert captured.lines() == []
            log.error("failed")

    asyncio.run(handler())
    assert captured.msgs() == ["in a thread", "in a task", "failed"]
    assert {e["request_id"] for e in captured.entries()} == {"shared"}


async def _info_later(msg: str) -> None:
    await asyncio.sleep(0)
    log.info(msg)


def test_sampled_span_turns_buffering_off(captured: Captured) -> None:
    sampled = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with log.request_scope(), sampled.start_as_current_span("handle") as span:
        log.info("kept trace, written now")
        assert captured.msgs() == ["kept trace, written now"]
    entry = captured.entries()[0]
    ctx = span.get_span_context()
    assert entry["trace_id"] == f"{ctx.trace_id:032x}" and entry["span_id"] == f"{ctx.span_id:016x}"


def test_unsampled_span_keeps_buffering_and_ids_of_the_call(captured: Captured) -> None:
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with log.request_scope():
        with unsampled.start_as_current_span("first") as first:
            log.info("one")
        with unsampled.start_as_current_span("second") as second:
            log.info("two")
        assert captured.lines() == []
        log.error("failed")  # written outside both spans
    one, two, failed = captured.entries()
    assert one["span_id"] == f"{first.get_span_context().span_id:016x}"
    assert two["span_id"] == f"{second.get_span_context().span_id:016x}"
    assert one["trace_id"] != two["trace_id"]
    assert "trace_id" not in failed


def test_entries_of_interleaved_spans_carry_their_own_ids(captured: Captured) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    outer = tracer.start_span("outer")
    inner = tracer.start_span("inner", context=trace.set_span_in_context(outer))
    for span in (outer, inner, inner, outer, inner):  # the ids of the last span are remembered
        with trace.use_span(span):
            log.print("outer" if span is outer else "inner")
    for entry in captured.entries():
        ctx = (outer if entry["msg"] == "outer" else inner).get_span_context()
        assert entry["trace_id"] == f"{ctx.trace_id:032x}"
        assert entry["span_id"] == f"{ctx.span_id:016x}"


def test_entries_outside_spans_have_no_trace_ids(captured: Captured) -> None:
    log.info("plain")
    assert "trace_id" not in captured.entries()[0]


def test_an_exception_that_cannot_be_printed_is_still_logged(captured: Captured) -> None:
    class Opaque(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    log.error("odd failure", Opaque(), traceback=True)
    (entry,) = captured.entries()
    assert entry["error"] == "<unprintable Opaque>"
    assert entry["error_type"].endswith(".<locals>.Opaque")
    assert "traceback" in entry


def test_a_scope_exited_from_another_context_still_closes(captured: Captured) -> None:
    scope = log.request_scope(request_id="r9")
    request_context = contextvars.copy_context()
    request_context.run(scope.__enter__)
    request_context.run(log.info, "buffered")
    assert scope.pending == 1
    scope.__exit__(None, None, None)  # e.g. an interceptor whose exit runs in a callback
    assert not scope.open and scope.pending == 0
    request_context.run(log.info, "written: the scope is closed")
    assert captured.msgs() == ["written: the scope is closed"]
