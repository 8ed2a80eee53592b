"""Checker: concurrency, timeouts, deadlines, spans and logs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
from opentelemetry.trace import StatusCode

import clue.health.checker
from clue import health
from clue.testing import CapturedLogs, CapturedSpans


async def test_all_ok_sync_and_async() -> None:
    async def up_async() -> None:
        await asyncio.sleep(0)

    checker = health.Checker(health.pinger("a", lambda: None), health.pinger("b", up_async))
    report = await checker.acheck()
    assert report.ok
    assert report.status() == {"a": "OK", "b": "OK"}


def test_blocking_check_for_a_caller_without_an_event_loop() -> None:
    def broken() -> None:
        raise ConnectionRefusedError("db refused the connection")

    async def hangs() -> None:
        await asyncio.sleep(30)

    checker = health.Checker(
        health.pinger("db", broken), health.pinger("slow", hangs), health.pinger("ok", lambda: None)
    )
    started = time.monotonic()
    report = checker.check(deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started < 5
    assert report.status() == {"db": "NOT OK", "slow": "NOT OK", "ok": "OK"}
    checker.close()


async def test_blocking_check_on_an_event_loop_is_refused() -> None:
    """It would block the loop: the error says to await acheck() instead."""
    with pytest.raises(RuntimeError, match=r"await acheck\(\)"):
        health.Checker(health.pinger("ok", lambda: None)).check()


async def test_failure_is_reported_logged_and_traced(
    clue_logs: CapturedLogs, clue_spans: CapturedSpans
) -> None:
    def broken() -> None:
        raise ConnectionRefusedError("db refused the connection")

    checker = health.Checker(health.pinger("db", broken), health.pinger("cache", lambda: None))
    report = await checker.acheck()
    assert not report.ok
    assert report.status() == {"db": "NOT OK", "cache": "OK"}
    (entry,) = clue_logs.where(level="error")
    assert entry["dependency"] == "db"
    assert entry["error"] == "db refused the connection"
    by_dep = {s.attributes["clue.health.dependency"]: s for s in clue_spans.where("health.ping")}
    assert by_dep["db"].status.status_code is StatusCode.ERROR
    assert by_dep["db"].events[0].name == "exception"
    assert by_dep["cache"].status.status_code is StatusCode.UNSET
    check = clue_spans.one("health.check")
    assert all(s.parent.span_id == check.context.span_id for s in by_dep.values())


async def test_pings_run_concurrently() -> None:
    def slow_sync() -> None:
        time.sleep(0.2)

    async def slow_async() -> None:
        await asyncio.sleep(0.2)

    pingers = [health.pinger(f"sync{i}", slow_sync) for i in range(8)]
    pingers += [health.pinger(f"async{i}", slow_async) for i in range(8)]
    start = time.monotonic()
    report = await health.Checker(*pingers).acheck()
    elapsed = time.monotonic() - start
    assert report.ok and len(report.healthy) == 16
    assert elapsed < 1.6  # sequential would take 3.2 s; one thread per sync ping


async def test_hanging_pings_time_out_without_holding_the_check(clue_logs: CapturedLogs) -> None:
    release = threading.Event()

    def hangs_in_thread() -> None:
        release.wait(10)

    async def hangs_async() -> None:
        await asyncio.sleep(3600)

    async def ignores_cancellation() -> None:
        for _ in range(3):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.3)

    checker = health.Checker(
        health.pinger("thread", hangs_in_thread),
        health.pinger("task", hangs_async),
        health.pinger("stubborn", ignores_cancellation),
        health.pinger("fine", lambda: None),
        timeout=0.2,
    )
    try:
        start = time.monotonic()
        report = await checker.acheck()
        elapsed = time.monotonic() - start
    finally:
        release.set()
    assert report.status() == {
        "thread": "NOT OK",
        "task": "NOT OK",
        "stubborn": "NOT OK",
        "fine": "OK",
    }
    assert 0.2 <= elapsed < 1.0
    failed = {e["dependency"]: e for e in clue_logs.where(level="error")}
    assert set(failed) == {"thread", "task", "stubborn"}
    assert failed["task"]["error"] == "no answer within 0.2s"


async def test_pinger_timeout_overrides_checker_timeout() -> None:
    async def takes(seconds: float) -> None:
        await asyncio.sleep(seconds)

    checker = health.Checker(
        health.pinger("patient", lambda: takes(0.3), timeout=5.0),
        health.pinger("hasty", lambda: takes(0.3)),
        timeout=0.1,
    )
    report = await checker.acheck()
    assert report.status() == {"patient": "OK", "hasty": "NOT OK"}


async def test_deadline_cuts_the_timeout_short() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.5)

    checker = health.Checker(health.pinger("slow", slow), timeout=5.0)
    start = time.monotonic()
    report = await checker.acheck(deadline=time.monotonic() + 0.1)
    assert not report.ok
    assert time.monotonic() - start < 1.0
    past = await checker.acheck(deadline=time.monotonic() - 1)
    assert past.status() == {"slow": "NOT OK"}


async def test_no_exception_escapes() -> None:
    class Weird(BaseException):
        pass

    async def cancelled() -> None:
        raise asyncio.CancelledError

    def weird() -> None:
        raise Weird("odd")

    checker = health.Checker(health.pinger("c", cancelled), health.pinger("w", weird))
    assert (await checker.acheck()).status() == {"c": "NOT OK", "w": "NOT OK"}


async def test_cancelling_the_check_cancels_the_pings() -> None:
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    check = asyncio.create_task(health.Checker(health.pinger("h", hangs), timeout=30).acheck())
    await asyncio.sleep(0.05)
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await check
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_no_pingers_is_healthy() -> None:
    report = await health.Checker().acheck()
    assert report.ok and report.status() == {}


def test_bad_construction() -> None:
    ok = health.pinger("a", lambda: None)
    with pytest.raises(ValueError, match="unique"):
        health.Checker(ok, health.pinger("a", lambda: None))
    with pytest.raises(ValueError, match="timeout"):
        health.Checker(ok, timeout=0)
    with pytest.raises(TypeError, match="not a pinger"):
        health.Checker(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty name"):
        health.pinger("", lambda: None)
    with pytest.raises(TypeError, match="not callable"):
        health.pinger("x", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        health.pinger("x", lambda: None, timeout=-1)


async def test_custom_pinger_class_with_sync_ping_returning_awaitable() -> None:
    class Service:
        name = "svc"

        def ping(self) -> object:
            return asyncio.sleep(0)

    assert isinstance(Service(), health.Pinger)
    assert (await health.Checker(Service()).acheck()).ok


async def test_a_hung_sync_ping_holds_one_thread_across_checks() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hangs() -> None:
        calls.append(1)
        release.wait(10)

    checker = health.Checker(health.pinger("stuck", hangs), timeout=0.05)
    try:
        for _ in range(4):
            assert (await checker.acheck()).status() == {"stuck": "NOT OK"}
        alive = [t for t in threading.enumerate() if t.name == "clue-health-ping-stuck"]
        assert len(alive) == 1 and len(calls) == 1
    finally:
        release.set()
    for _ in range(100):  # the thread ends; the next check pings afresh
        if not any(t.name == "clue-health-ping-stuck" for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)
    assert (await checker.acheck()).ok
    assert len(calls) == 2


async def test_plain_function_returning_awaitables(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = clue.health.checker._in_thread

    def counting(fn: object, name: str) -> object:
        threads.append(name)
        return real(fn, name)  # type: ignore[arg-type]

    monkeypatch.setattr(clue.health.checker, "_in_thread", counting)
    gate = threading.Event()
    awaited: list[int] = []

    async def work() -> None:
        awaited.append(1)
        await asyncio.sleep(0.01)

    def factory() -> object:
        gate.wait(5)  # the first call is slow: concurrent checks join its thread
        return work()

    checker = health.Checker(health.pinger("factory", factory), timeout=5)
    first = asyncio.gather(*(checker.acheck() for _ in range(3)))
    await asyncio.sleep(0.05)
    gate.set()
    assert all(r.ok for r in await first)
    assert threads == ["factory"] and len(awaited) == 3  # each check awaited its own
    again = await asyncio.gather(*(checker.acheck() for _ in range(3)))
    assert all(r.ok for r in again) and threads == ["factory"] and len(awaited) == 6
