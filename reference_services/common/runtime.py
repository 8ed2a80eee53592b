"""Running a boutique gRPC service: clue wired in, health, admin port, graceful stop.

A service module provides an async ``build`` returning a `Wiring` and declares
its entry point, which its package's ``__main__.py`` runs::

    ENTRY = Entry("email", build)  # no settings of its own: build()
    ENTRY = Entry("cart", build, Config.from_env)  # build(Config.from_env())

`GrpcService` is the same server without the process concerns, for tests
and for embedding.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar, overload

import grpc
import grpc.aio
from starlette.routing import BaseRoute

import clue
import clue.grpc
from clue import health, log
from clue.admin import AdminServer
from reference_services.common.auth import Authorizer
from reference_services.common.config import ConfigError, env_host, env_port
from reference_services.common.faults import Faults

C = TypeVar("C")
LOOPBACK = "127.0.0.1"
AddServicer = Callable[[Any, grpc.aio.Server], None]
GRACE_SECONDS = 5.0
EXIT_CONFIG = 2
# Log lines below error wait up to this long to be written in batches (docs/logging.md,
# "When lines are written"): a busy service spends less per request; CLUE_LOG_WRITE_DELAY wins.
SERVICE_LOG_WRITE_DELAY = 0.1

try:
    VERSION = version("clue-observability")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0.0.0"


@dataclass
class Wiring:
    """What one service brings to the shared runtime."""

    servicers: Sequence[tuple[AddServicer, object]]
    pingers: Sequence[health.Pinger] = ()
    faults: Faults | None = None
    routes: Sequence[BaseRoute] = ()
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    authorizer: Authorizer | None = None
    """Checks the access token of the RPCs its rules name (reference_services/common/auth.py)."""
    grace: float = GRACE_SECONDS
    """Seconds a stop gives the calls in flight (and ``drain``) to finish."""
    drain: Callable[[float], Awaitable[Any]] | None = None
    """Waits, at most the seconds it is given, for work of the service's own that outlives
    its call (the checkout's sagas); run alongside the server's graceful stop."""


class GrpcService:
    """A gRPC server with clue's interceptors, grpc.health.v1 and an admin HTTP port.

    The gRPC server listens on ``host`` only (loopback unless told otherwise);
    the admin port always stays on loopback. grpc.health.v1 answers for the
    server as a whole ("") and for each service the servicers add, by its full
    name (``hipstershop.CartService``).
    """

    def __init__(
        self,
        name: str,
        wiring: Wiring,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        admin_port: int = 0,
        grace: float = GRACE_SECONDS,
    ) -> None:
        self.name = name
        self.wiring = wiring
        self.host = host
        self.port = port
        self.grace = grace
        self.checker = health.Checker(*wiring.pingers)
        self.health: health.AsyncHealthServicer | None = None  # made at start, knowing the services
        routes = [*(wiring.faults.routes() if wiring.faults else []), *wiring.routes]
        self.admin = AdminServer(
            checker=self.checker,
            version=VERSION,
            port=admin_port,
            routes=routes,
        )
        self.server: grpc.aio.Server | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        """``<host>:<port>`` where a local client reaches the server (loopback for a wildcard)."""
        host = {"0.0.0.0": LOOPBACK, "::": "::1"}.get(self.host, self.host)
        return _host_port(host, self.port)

    async def start(self) -> None:
        """Bind the gRPC and admin ports and start serving."""
        server = _Server(self.wiring.authorizer)
        for add, servicer in self.wiring.servicers:
            add(servicer, server)
        unguarded = self.wiring.authorizer.unguarded() if self.wiring.authorizer else []
        if unguarded:  # a misspelt rule would leave its RPC open
            raise ValueError(f"authorization rules match no RPC: {unguarded}")
        self.health = health.AsyncHealthServicer(self.checker, services=server.names)
        self.health.add_to_server(server.instrumented)
        listen = _host_port(self.host, self.port)
        try:
            bound = server.add_insecure_port(listen)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {listen}: {exc}") from exc
        if bound == 0:
            raise OSError(f"cannot listen on {listen}")
        self.port = bound
        await server.start()
        self.server = server
        try:
            await self.admin.astart()
        except BaseException:
            await server.stop(None)
            self.server = None
            raise
        log.print(f"{self.name} serving", grpc_port=self.port, admin_url=self.admin.url)

    async def stop(self) -> None:
        """Report NOT_SERVING, stop accepting, let in-flight calls finish, close resources.

        Stopping a stopped service does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        if self.server is not None:
            # the same deadline for the calls in flight and the service's own work
            drain = self.wiring.drain
            await asyncio.gather(
                self.server.stop(self.grace), *([drain(self.grace)] if drain else [])
            )
            self.server = None
        await self.admin.astop()
        for close in reversed(self.wiring.closers):
            try:
                await close()
            except Exception as exc:
                log.error(f"{self.name}: closing a resource failed", exc=exc)

    async def __aenter__(self) -> GrpcService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _Server(grpc.aio.Server):
    """A ``grpc.aio`` server whose handlers run clue's layers, noting the services added.

    With an authorizer, the handlers it guards check their token inside clue's layers
    (a refused call has its span and request line too).
    The generated ``add_..._to_server`` functions take it as the server they are typed for.
    """

    def __init__(self, authorizer: Authorizer | None = None) -> None:
        self.server = grpc.aio.server()
        self.instrumented = clue.grpc.instrument(self.server)
        self.authorizer = authorizer
        self.names: list[str] = []

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        handlers = list(generic_rpc_handlers)
        self.names += [h.service_name() for h in handlers if isinstance(h, grpc.ServiceRpcHandler)]
        if self.authorizer is not None:
            handlers = [self.authorizer.guard_generic(h) for h in handlers]
        self.instrumented.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.names.append(service_name)
        if self.authorizer is not None:
            guard = self.authorizer.guard
            method_handlers = {
                n: guard(f"/{service_name}/{n}", h) or h for n, h in method_handlers.items()
            }
        self.instrumented.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self.server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self.server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self.server.wait_for_termination(timeout)


class Entry:
    """How ``python -m reference_services.<name>`` runs a gRPC service.

    ``build`` makes the service's `Wiring`. A service with settings of its own
    passes ``settings`` too: it reads them from the environment, before anything
    starts, and ``build`` takes what it returns. One without calls ``build()``.
    """

    @overload
    def __init__(self, name: str, build: Callable[[], Awaitable[Wiring]]) -> None: ...

    @overload
    def __init__(
        self, name: str, build: Callable[[C], Awaitable[Wiring]], settings: Callable[[], C]
    ) -> None: ...

    def __init__(
        self,
        name: str,
        build: Callable[..., Awaitable[Wiring]],
        settings: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self.build = build
        self.settings = settings

    def run(self) -> int:
        """Run the service until SIGTERM or SIGINT; the process exit code.

        Reads ``HOST`` (the address to listen on, default 127.0.0.1: the deploy
        files set 0.0.0.0), ``PORT`` and ``ADMIN_PORT`` and the service's own settings; a
        missing or bad variable prints one line and returns 2 before anything
        starts. Telemetry is configured by clue from the standard ``OTEL_*`` and
        ``CLUE_*`` variables.
        """
        name = self.name
        try:
            host = env_host("HOST", LOOPBACK)
            port = env_port("PORT")
            admin_port = env_port("ADMIN_PORT")
            args = () if self.settings is None else (self.settings(),)
            log.configure(write_delay=SERVICE_LOG_WRITE_DELAY)
            clue.configure(service_name=name, service_version=VERSION, prometheus=True)
        except (ConfigError, ValueError) as exc:
            print(f"{name}: configuration error: {exc}", file=sys.stderr, flush=True)
            return EXIT_CONFIG
        try:
            asyncio.run(_serve(name, host, port, admin_port, lambda: self.build(*args)))
        except OSError as exc:
            log.fatal(f"{name} could not start", exc=exc)
            print(f"{name}: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            clue.shutdown()
        return 0


async def _serve(
    name: str, host: str, port: int, admin_port: int, build: Callable[[], Awaitable[Wiring]]
) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    wiring = await build()
    service = GrpcService(
        name, wiring, host=host, port=port, admin_port=admin_port, grace=wiring.grace
    )
    try:
        await service.start()
    except BaseException:
        for close in reversed(wiring.closers):
            await close()
        raise
    await stopping.wait()
    log.print(f"{name} stopping", grace_seconds=service.grace)
    await service.stop()
    log.print(f"{name} stopped")


def _host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
