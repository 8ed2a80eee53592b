"""grpc.health.v1 servicer backed by a Checker, for Kubernetes gRPC probes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clue.health.checker import Checker

if TYPE_CHECKING:
    from clue.grpc import InstrumentedServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

_MARGIN = 0.05
"""Seconds kept from the caller's deadline to send the answer in time."""
_QUOTED = 64
"""Characters of an unknown service name quoted back (the whole could exceed metadata limits)."""


class _Servicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """What both servicers are given: the checker, the services, the watch interval."""

    def __init__(
        self,
        checker: Checker | None = None,
        services: Iterable[str] = (),
        *,
        watch_interval: float = 5.0,
    ) -> None:
        if not watch_interval > 0:
            raise ValueError(f"watch_interval must be > 0 seconds, got {watch_interval}")
        self.checker = checker or Checker()
        self.services = frozenset(("", *services))
        self.watch_interval = watch_interval


class AsyncHealthServicer(_Servicer):
    """``grpc.health.v1.Health`` for a ``grpc.aio`` server.

    ``Check`` runs the checker within the caller's deadline and answers
    SERVING when every dependency is OK, NOT_SERVING otherwise. ``services``
    names the services it answers for besides "" (the whole server); any
    other name is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, as the
    protocol says. ``Watch`` sends the status now and again whenever it
    changes, checking every ``watch_interval`` seconds.
    """

    def __init__(
        self,
        checker: Checker | None = None,
        services: Iterable[str] = (),
        *,
        watch_interval: float = 5.0,
    ) -> None:
        super().__init__(checker, services, watch_interval=watch_interval)
        self._shutting_down = False
        self._wakeups: set[asyncio.Event] = set()

    def add_to_server(self, server: grpc.aio.Server | InstrumentedServer) -> None:
        """Register this servicer with ``server`` (or a server clue instruments)."""
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    def enter_graceful_shutdown(self) -> None:
        """Answer NOT_SERVING from now on (and tell watchers), e.g. on SIGTERM."""
        self._shutting_down = True
        for wakeup in self._wakeups:
            wakeup.set()

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Answer the current status of ``request.service``."""
        if request.service not in self.services:
            await context.abort(grpc.StatusCode.NOT_FOUND, _unknown(request.service))
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining - _MARGIN
        return health_pb2.HealthCheckResponse(status=await self._status(deadline))

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Stream the status of ``request.service``: now, then on every change."""
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            last = None
            while True:
                if request.service in self.services:
                    status = await self._status(None)
                else:
                    status = SERVICE_UNKNOWN
                if status != last:
                    yield health_pb2.HealthCheckResponse(status=status)
                    last = status
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self.watch_interval)
                wakeup.clear()
        finally:
            self._wakeups.discard(wakeup)

    async def _status(self, deadline: float | None) -> int:
        """SERVING or NOT_SERVING, from the checker unless shutting down."""
        if self._shutting_down:
            return int(NOT_SERVING)
        report = await self.checker.acheck(deadline)
        return int(SERVING if report.ok and not self._shutting_down else NOT_SERVING)


class HealthServicer(_Servicer):
    """``grpc.health.v1.Health`` for a thread-pool ``grpc.server``.

    Same answers as `AsyncHealthServicer`, from the checker's blocking
    `Checker.check` (its own event loop, in a daemon thread, so pingers keep
    their pooled connections between checks). `close` closes them and stops
    that loop.
    """

    def __init__(
        self,
        checker: Checker | None = None,
        services: Iterable[str] = (),
        *,
        watch_interval: float = 5.0,
    ) -> None:
        super().__init__(checker, services, watch_interval=watch_interval)
        self._shutdown = threading.Event()

    def add_to_server(self, server: grpc.Server | InstrumentedServer) -> None:
        """Register this servicer with ``server`` (or a server clue instruments)."""
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    def enter_graceful_shutdown(self) -> None:
        """Answer NOT_SERVING from now on (and tell watchers), e.g. on SIGTERM."""
        self._shutdown.set()

    def close(self) -> None:
        """Close the checker's pooled connections and stop its event loop (`Checker.close`)."""
        self.checker.close()

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Answer the current status of ``request.service``."""
        if request.service not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, _unknown(request.service))
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining - _MARGIN
        return health_pb2.HealthCheckResponse(status=self._status(deadline))

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """Stream the status of ``request.service``: now, then on every change."""
        last = None
        while context.is_active():
            status = self._status(None) if request.service in self.services else SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if self._shutdown.is_set():
                time.sleep(self.watch_interval)
            else:
                self._shutdown.wait(self.watch_interval)

    def _status(self, deadline: float | None) -> int:
        """SERVING or NOT_SERVING, from the checker unless shutting down."""
        if self._shutdown.is_set():
            return int(NOT_SERVING)
        report = self.checker.check(deadline)
        return int(SERVING if report.ok and not self._shutdown.is_set() else NOT_SERVING)


def _unknown(service: str) -> str:
    shown = repr(service[:_QUOTED]) + ("..." if len(service) > _QUOTED else "")
    return f"unknown service {shown}"
