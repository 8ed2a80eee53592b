"""Checker: ping every dependency concurrently, each within its timeout."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from clue import log, telemetry
from clue.health.pinger import Pinger

_tracer = trace.get_tracer("clue.health")

OK = "OK"
NOT_OK = "NOT OK"


@dataclass(frozen=True)
class Report:
    """The outcome of one check: each dependency's name and whether it is healthy."""

    healthy: Mapping[str, bool]

    @property
    def ok(self) -> bool:
        """True when every dependency is healthy (and when there are none)."""
        return all(self.healthy.values())

    def status(self) -> dict[str, str]:
        """``{"<dependency>": "OK" | "NOT OK"}``, as served by ``/healthz``."""
        return {name: OK if up else NOT_OK for name, up in self.healthy.items()}


class Checker:
    """Pings dependencies concurrently; see `acheck`, and `check` for callers without
    an event loop.

    ``timeout`` (seconds) bounds each ping unless the pinger has its own
    ``timeout`` attribute. Names must be unique: they key the report.
    """

    def __init__(self, *pingers: Pinger, timeout: float = 1.0) -> None:
        if not timeout > 0:
            raise ValueError(f"Checker timeout must be > 0 seconds, got {timeout}")
        names: set[str] = set()
        for p in pingers:
            if not isinstance(p, Pinger):
                raise TypeError(f"{p!r} is not a pinger: it needs a .name and a .ping()")
            if not p.name or p.name in names:
                raise ValueError(f"pinger names must be unique and non-empty, got {p.name!r}")
            names.add(p.name)
        self.pingers: tuple[Pinger, ...] = pingers
        self.timeout = timeout
        self._threads: list[Future[Any] | None] = [None] * len(pingers)
        self._makes_awaitables = [False] * len(pingers)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        telemetry.in_child(self._after_fork)

    def _after_fork(self) -> None:
        """A forked child has none of the parent's threads: the lock they may have held,
        the loop of `check` and the threads of hung sync pings are made anew (the parent's
        loop is the parent's to close)."""
        self._lock = threading.Lock()
        self._loop = None
        self._threads = [None] * len(self.pingers)

    def check(self, deadline: float | None = None) -> Report:
        """`acheck`, blocking: for a thread without an event loop (a ``grpc.server``
        handler, a WSGI view).

        The pings run on an event loop of the checker's own, in a daemon thread,
        so pingers keep their pooled connections between checks; `close` stops it.
        On an event loop, ``await acheck()`` instead (this would block the loop).
        """
        if _running_loop() is not None:
            raise RuntimeError("Checker.check() blocks: on an event loop, await acheck()")
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=_run_forever, args=(self._loop,), name="clue-health-checks", daemon=True
                ).start()
            loop = self._loop
        # the caller's span is the parent of the check's, though it runs on another thread
        check = self._acheck(deadline, otel_context.get_current())
        return asyncio.run_coroutine_threadsafe(check, loop).result()

    def close(self) -> None:
        """Close the connections `check` pooled and stop its event loop (a later
        `check` starts another)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
            finally:
                loop.call_soon_threadsafe(loop.stop)

    async def acheck(self, deadline: float | None = None) -> Report:
        """Ping every dependency at once and report who is healthy.

        Each ping gets its timeout, cut short by ``deadline`` (a
        `time.monotonic` instant) when given. A ping that raises or does not
        answer in time is unhealthy: it is logged with the dependency's name
        and recorded on its span, and never raises out of here. A hanging ping
        is abandoned at its timeout: cancelled if async; a sync ping's thread
        is left to finish on its own, and later checks wait on that thread
        rather than start another, so a hung driver holds one thread at most.
        The check's span is a child of the current one (of the caller's, for
        `check`), and `HTTPPinger` and `GRPCPinger` send its trace context.
        """
        return await self._acheck(deadline, None)

    async def _acheck(self, deadline: float | None, parent: otel_context.Context | None) -> Report:
        budget = None if deadline is None else deadline - time.monotonic()
        with _tracer.start_as_current_span("health.check", context=parent):
            results = await asyncio.gather(
                *(
                    self._check_one(index, p, self._timeout_for(p, budget))
                    for index, p in enumerate(self.pingers)
                )
            )
        return Report({p.name: ok for p, ok in zip(self.pingers, results, strict=True)})

    async def aclose(self) -> None:
        """Close the connections pingers pooled for the running loop (those with
        ``aclose()``)."""
        for p in self.pingers:
            close = getattr(p, "aclose", None)
            if close is not None:
                await close()

    def _timeout_for(self, p: Pinger, budget: float | None) -> float:
        own = getattr(p, "timeout", None)
        timeout = own if isinstance(own, int | float) and own > 0 else self.timeout
        return timeout if budget is None else min(timeout, budget)

    async def _check_one(self, index: int, p: Pinger, timeout: float) -> bool:
        with _tracer.start_as_current_span(
            "health.ping",
            attributes={"clue.health.dependency": p.name, "clue.health.timeout": timeout},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            error = await _within(self._call(index, p), timeout)
            if error is None:
                return True
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.record_exception(error)
            log.error("health check failed", exc=error, dependency=p.name)
            return False

    async def _call(self, index: int, p: Pinger) -> None:
        """Ping: async ones on the loop, plain ones in a thread (one at a time)."""
        if inspect.iscoroutinefunction(p.ping) or self._makes_awaitables[index]:
            result = p.ping()
        else:
            running = self._threads[index]
            if running is None or running.done():
                running = self._threads[index] = _in_thread(p.ping, p.name)
            result = await asyncio.wrap_future(running)
            if inspect.isawaitable(result):
                # A plain function returning awaitables (redis.asyncio's ``client.ping``)
                # does not block: call it on the loop from now on.
                self._makes_awaitables[index] = True
                if inspect.iscoroutine(result) and _started(result):
                    result = p.ping()  # a concurrent check already awaits that one
        if inspect.isawaitable(result):
            await result


async def _within(ping: Coroutine[Any, Any, None], timeout: float) -> BaseException | None:
    """Run ``ping`` for at most ``timeout`` seconds; return its error if any."""
    if timeout <= 0:
        ping.close()
        return TimeoutError("the caller's deadline passed before the ping")
    task = asyncio.ensure_future(ping)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
        task.add_done_callback(_retrieve)  # also when the check itself was cancelled
    if not done:
        return TimeoutError(f"no answer within {timeout:g}s")
    if task.cancelled():
        return asyncio.CancelledError("the ping was cancelled")
    return task.exception()


def _started(coroutine: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coroutine) != inspect.CORO_CREATED


def _in_thread(fn: Callable[[], Any], name: str) -> Future[Any]:
    """Run ``fn`` in a new daemon thread, so no pool is exhausted by hung pings."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()  # a waiter giving up cannot cancel it
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(fn))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"clue-health-ping-{name}", daemon=True).start()
    return future


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned ping's outcome as seen (no 'never retrieved' warnings)."""
    if not task.cancelled():
        task.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()
