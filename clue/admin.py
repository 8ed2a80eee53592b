"""AdminServer: health, metrics, debug and profiling on their own port, in-process."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from clue import health, log, telemetry
from clue.debug import Guard, unguarded_routes

PORT_ENV = "CLUE_ADMIN_PORT"
PROBE_ROUTES = ("/livez", "/healthz", "/readyz")
"""The paths a kubelet or load balancer probes: open to every caller by default."""

_IN_ADMIN: contextvars.ContextVar[bool] = contextvars.ContextVar("clue_admin", default=False)


class AdminServer:
    """An HTTP server for the operator: ``/livez /healthz /readyz /metrics /debug /debug/pprof/``.

    It runs with uvicorn inside the service's process, either on a thread of
    its own (``start()`` / ``stop()``, or ``with admin:``) or on the service's
    event loop (``await astart()`` / ``await astop()``, or ``async with
    admin:``). It binds
    127.0.0.1 unless told otherwise; the port comes from ``port``, else
    ``CLUE_ADMIN_PORT``, else any free port (see ``.port`` once started).
    ``routes`` are served too; ``app`` is the guarded ASGI app, to mount
    elsewhere. One `clue.debug.Guard` (``token``, ``allow_from``) stands in
    front of every path but ``open_routes``: by default the health probes;
    add ``"/metrics"`` for a scraper that carries no token.
    """

    def __init__(
        self,
        *,
        checker: health.Checker | None = None,
        version: str = "",
        host: str = "127.0.0.1",
        port: int | None = None,
        routes: Sequence[BaseRoute] = (),
        metrics: bool = True,
        debug: bool = True,
        token: str | None = None,
        allow_from: Iterable[str] = (),
        open_routes: Iterable[str] = PROBE_ROUTES,
    ) -> None:
        self.host = host
        self.port = _port(port)
        self.app: Guard = Guard(
            Starlette(routes=_routes(checker, version, routes, metrics, debug)),
            token=token,
            allow_from=allow_from,
            open_paths=open_routes,
        )
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL (meaningful once started, when a free port was picked)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve from a daemon thread with its own event loop; return once listening.

        For a service without an event loop of its own (a ``grpc.server``, a
        WSGI app); `astart` serves on the running loop instead.
        """
        if self._thread is not None or self._server is not None:
            raise RuntimeError("the admin server is already running")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            async def serve() -> None:
                try:
                    await self.astart()
                except BaseException as exc:
                    failure.append(exc)
                    raise
                finally:
                    started.set()
                assert self._task is not None
                await self._task

            try:
                asyncio.run(serve())
            except BaseException as exc:
                if not failure:
                    log.error("admin server stopped", exc=exc)

        self._thread = threading.Thread(target=run, name="clue-admin", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started by `start`: finish in-flight requests, wait for its thread."""
        thread, server = self._thread, self._server
        if thread is None:
            if server is not None:
                raise RuntimeError("the admin server was started by astart(): await astop()")
            return
        if server is not None:
            server.should_exit = True  # uvicorn polls it every 0.1 s
        thread.join(timeout)
        self._thread = self._server = self._task = None

    async def astart(self) -> None:
        """Bind and start serving on the running event loop."""
        if self._server is not None:
            raise RuntimeError("the admin server is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        self._server = server = _Server(config)
        _quiet_uvicorn()
        context = contextvars.copy_context()
        context.run(_IN_ADMIN.set, True)
        self._task = task = asyncio.create_task(
            server.serve(sockets=[sock]), name="clue-admin", context=context
        )
        while not server.started:
            if task.done():
                self._server = self._task = None
                sock.close()
                task.result()  # raises what stopped the start
                raise RuntimeError("the admin server stopped while starting")
            await asyncio.sleep(0.005)
        log.print("admin server listening", url=self.url)

    async def astop(self) -> None:
        """Stop a server started by `astart`: stop accepting, finish in-flight requests,
        and return once closed."""
        if self._thread is not None:
            raise RuntimeError("the admin server was started by start(): call stop()")
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        await task
        self._server = self._task = None

    def __enter__(self) -> AdminServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> AdminServer:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the host service owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _QuietAdmin(logging.Filter):
    """Drop uvicorn's info lines ("Started server process"...) when an admin server logs them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not _IN_ADMIN.get()


_QUIET = _QuietAdmin()


def _quiet_uvicorn() -> None:
    """Filter uvicorn's own logger; the service's other uvicorn servers are untouched."""
    uvicorn_logger = logging.getLogger("uvicorn.error")
    if _QUIET not in uvicorn_logger.filters:
        uvicorn_logger.addFilter(_QUIET)


class _AsgiEndpoint:
    """An ASGI app that Starlette's Route serves as such (it calls plain functions as handlers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _routes(
    checker: health.Checker | None,
    version: str,
    extra: Sequence[BaseRoute],
    metrics: bool,
    with_debug: bool,
) -> list[BaseRoute]:
    found: list[BaseRoute] = [*health.routes(checker, version)]
    if metrics:
        from clue.telemetry import metrics_app

        found.append(Route("/metrics", _AsgiEndpoint(metrics_app()), name="metrics"))
    if with_debug:
        found += unguarded_routes()
    return found + list(extra)


def _port(port: int | None) -> int:
    if port is None:
        text = os.environ.get(PORT_ENV, "").strip()
        if not text:
            return 0
        if not text.isdigit() or not 0 <= int(text) <= 65535:
            raise ValueError(f"{PORT_ENV} must be a port number between 0 and 65535, got {text!r}")
        return int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return port


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if port and telemetry.workers_dir() is not None and hasattr(socket, "SO_REUSEPORT"):
            # the workers of a pre-fork server share the port; any of them answers for all
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"admin server cannot listen on {host}:{port}: {exc}") from exc
    return sock
