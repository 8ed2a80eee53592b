"""The collector process: OTLP receivers, the store, the forwarder and the web UI."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from clue.collector import api, otlp, ui
from clue.collector.config import Config
from clue.collector.forwarder import Forwarder
from clue.collector.ingest import Ingest
from clue.collector.receiver_grpc import grpc_server
from clue.collector.receiver_http import http_app
from clue.collector.store import Store
from clue.collector.tail import Tail


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says so; without it every response waits ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class Collector:
    """A local OTLP collector and trace viewer.

    Ports given as 0 are chosen by the system; read the bound ones from
    ``grpc_port``, ``http_port`` and ``ui_port``. Use :meth:`start`/:meth:`stop`
    (or ``with``) to run it in a background thread, or ``await aserve()`` in your
    own loop.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config = config or Config()
        self._http_socket = _listen(config.otlp_host, config.http_port)
        try:
            self._ui_socket = _listen(config.ui_host, config.ui_port)
        except OSError:
            self._http_socket.close()
            raise
        self.http_port = int(self._http_socket.getsockname()[1])
        self.ui_port = int(self._ui_socket.getsockname()[1])
        self.store = Store(
            config.db,
            max_spans=config.max_spans,
            max_logs=config.max_logs,
            max_points=config.max_points,
            max_age_ns=config.max_age_ns,
        )
        self.forwarder = (
            Forwarder(config.forward, max_queue=config.forward_queue) if config.forward else None
        )
        self.ingest = Ingest(self.store, self.forwarder)
        self.tail = Tail(self.store)
        try:
            self._grpc, self.grpc_port = grpc_server(
                self.ingest, config.otlp_host, config.grpc_port, config.max_request_bytes
            )
        except OSError:
            self._http_socket.close()
            self._ui_socket.close()
            if self.forwarder is not None:
                self.forwarder.close(grace=0)
            self.store.close()
            raise
        self._servers: list[uvicorn.Server] = []
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._began = time.time()
        self._failed = False

    @property
    def ui_url(self) -> str:
        host = self.config.ui_host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{self.ui_port}/"

    def status(self) -> dict[str, Any]:
        """Counters and limits, as served by ``/api/status``."""
        c = self.config
        return {
            "stored": self.store.counts(),
            "limits": {
                "spans": c.max_spans,
                "logs": c.max_logs,
                "points": c.max_points,
                "max_age_s": c.max_age_ns / 1e9,
                "max_request_bytes": c.max_request_bytes,
                "name_characters": otlp.NAME_LIMIT,
                "value_characters": otlp.VALUE_LIMIT,
                "log_body_characters": otlp.BODY_LIMIT,
            },
            "received": dict(self.ingest.received),
            "rejected": dict(self.ingest.rejected),
            "truncated": dict(self.ingest.truncated),
            "forward": self.forwarder.stats() if self.forwarder else None,
            "ports": {"grpc": self.grpc_port, "http": self.http_port, "ui": self.ui_port},
            "uptime_s": time.time() - self._began,
        }

    def ui_app(self) -> Starlette:
        """The web UI and JSON API application."""
        static = StaticFiles(packages=[("clue.collector", "static")])
        return Starlette(
            routes=[
                *api.routes(self.store, self.status),
                *self.tail.routes(),
                *ui.routes(self.store),
                Mount("/static", static, name="static"),
            ]
        )

    async def aserve(self) -> None:
        """Run until :meth:`stop` is called (or the task is cancelled)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._grpc.start()
        self._servers = [
            self._uvicorn(http_app(self.ingest, self.config.max_request_bytes)),
            self._uvicorn(self.ui_app()),
        ]
        tasks = [
            asyncio.create_task(self._servers[0].serve(sockets=[self._http_socket])),
            asyncio.create_task(self._servers[1].serve(sockets=[self._ui_socket])),
            asyncio.create_task(self._sweep()),
        ]
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                self._stop.set()  # a server could not start: shut the rest down
                break
            await asyncio.sleep(0.01)
        self._failed = not all(s.started for s in self._servers)
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            self.tail.close()
            for server in self._servers:
                server.should_exit = True
            tasks[2].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.get_running_loop().run_in_executor(None, self._close)

    def _close(self) -> None:
        self._grpc.stop(grace=2).wait()
        if self.forwarder is not None:
            self.forwarder.close()
        self.store.close()

    @staticmethod
    def _uvicorn(app: Any) -> uvicorn.Server:
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        return uvicorn.Server(config)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await asyncio.get_running_loop().run_in_executor(None, self.store.evict_old)

    def start(self, timeout: float = 10.0) -> Collector:
        """Serve in a background thread; return once every listener is up."""
        self._thread = threading.Thread(
            target=asyncio.run, args=(self.aserve(),), name="clue-collector", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the collector did not start in time")
        if self._failed:
            self.stop()
            raise RuntimeError("the collector's HTTP servers did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, finish in-flight requests, flush the forwarder, close the store."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
