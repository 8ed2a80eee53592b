"""gRPC integration: server interceptors, client interceptors and instrumented channels.

Wire a server in one line, and add its servicers through the result::

    server = clue.grpc.instrument(grpc.aio.server())

(or with interceptors: ``grpc.aio.server(interceptors=clue.grpc.async_server_interceptors())``)

and a client in one line::

    channel = clue.grpc.async_insecure_channel("localhost:50051")

The plain names serve ``grpc`` (thread pool, blocking calls), the ``async_`` ones
``grpc.aio``; :func:`instrument` serves both, by the type of the server it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from clue._status import is_grpc_error
from clue.grpc import _client
from clue.grpc._logging import Payloads, RequestLog
from clue.grpc._metrics import ServerMetrics
from clue.grpc._rpc import HEALTH_PREFIXES
from clue.grpc._server import (
    AsyncServerInterceptor,
    InstrumentedServer,
    Layer,
    ServerInterceptor,
)
from clue.grpc._tracing import ServerTracing

__all__ = [
    "InstrumentedServer",
    "async_client_interceptors",
    "async_insecure_channel",
    "async_server_interceptors",
    "client_interceptors",
    "insecure_channel",
    "instrument",
    "server_interceptors",
]


def instrument(
    server: Any,
    *,
    log_requests: bool = True,
    quiet_prefixes: Sequence[str] = HEALTH_PREFIXES,
    tracing: bool = True,
    logging: bool = True,
    payloads: bool = True,
    metrics: bool = True,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    is_error: Callable[[grpc.StatusCode], bool] = is_grpc_error,
) -> InstrumentedServer:
    """``server`` (``grpc.aio`` or ``grpc``) with clue's layers around every handler added
    through the returned object; the fastest way to wire a server.

    Add the servicers through it (``add_FooServicer_to_server(servicer,
    instrumented)``); ports, start and stop are the server's own. The layers
    and options are those of :func:`async_server_interceptors`, but the handlers are
    wrapped once, when they are added, instead of going through grpc's
    interceptor machinery on every call (what that saves: docs/performance.md).
    """
    return InstrumentedServer(
        server,
        *_layers(
            log_requests, quiet_prefixes, tracing, logging, payloads, metrics,
            tracer_provider, meter_provider, is_error,
        ),
    )  # fmt: skip


def server_interceptors(
    *,
    log_requests: bool = True,
    quiet_prefixes: Sequence[str] = HEALTH_PREFIXES,
    tracing: bool = True,
    logging: bool = True,
    payloads: bool = True,
    metrics: bool = True,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    is_error: Callable[[grpc.StatusCode], bool] = is_grpc_error,
) -> list[Any]:
    """The server interceptors to pass to ``grpc.server`` (thread pool).

    Same layers and options as :func:`async_server_interceptors`.
    """
    layers = _layers(
        log_requests, quiet_prefixes, tracing, logging, payloads, metrics,
        tracer_provider, meter_provider, is_error,
    )  # fmt: skip
    return [ServerInterceptor(*layers)] if layers else []


def async_server_interceptors(
    *,
    log_requests: bool = True,
    quiet_prefixes: Sequence[str] = HEALTH_PREFIXES,
    tracing: bool = True,
    logging: bool = True,
    payloads: bool = True,
    metrics: bool = True,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    is_error: Callable[[grpc.StatusCode], bool] = is_grpc_error,
) -> list[Any]:
    """The server interceptors to pass to ``grpc.aio.server``.

    The list holds one interceptor running clue's layers in order: tracing
    (SERVER span continuing the caller's trace), logging (request scope, request
    id, request line), debug payloads, RPC metrics. Handlers wrapped by
    interceptors listed after it run inside clue's span and log scope.
    :func:`instrument` runs the same layers without grpc's interceptor machinery.

    ``log_requests`` writes one unbuffered line per call with its code and
    duration, except for methods starting with one of ``quiet_prefixes`` (the
    gRPC health service by default). ``is_error`` decides which codes are errors:
    they flush the call's buffered entries and set its span's status to error
    (default: the server faults, ``UNKNOWN``, ``INTERNAL``, ``UNAVAILABLE``, ...,
    the rule of the HTTP middleware's 5xx). The other flags leave a layer out.
    Spans and metrics go to the global providers unless others are given.
    """
    layers = _layers(
        log_requests, quiet_prefixes, tracing, logging, payloads, metrics,
        tracer_provider, meter_provider, is_error,
    )  # fmt: skip
    return [AsyncServerInterceptor(*layers)] if layers else []


def _layers(
    log_requests: bool,
    quiet_prefixes: Sequence[str],
    tracing: bool,
    logging: bool,
    payloads: bool,
    metrics: bool,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    is_error: Callable[[grpc.StatusCode], bool],
) -> list[Layer]:
    if not callable(is_error):
        raise ValueError("is_error must be a callable of a grpc.StatusCode")
    layers: list[Layer] = []
    if tracing:
        layers.append(ServerTracing(tracer_provider, is_error))
    if logging:
        quiet = tuple(quiet_prefixes)
        layers.append(
            RequestLog(log_requests=log_requests, quiet_prefixes=quiet, is_error=is_error)
        )
    if payloads:
        layers.append(Payloads())
    if metrics:
        layers.append(ServerMetrics(meter_provider))
    return layers


def client_interceptors(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> list[Any]:
    """Interceptors for a ``grpc`` channel (``grpc.intercept_channel``): trace context
    propagation, CLIENT span, duration, log entry."""
    return [_client.ClientInterceptor(tracer_provider, meter_provider)]


def async_client_interceptors(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> list[Any]:
    """Interceptors for a ``grpc.aio`` channel: the same observation as
    :func:`client_interceptors`."""
    return _client.async_client_interceptors(tracer_provider, meter_provider)


def insecure_channel(
    target: str,
    *,
    options: Sequence[tuple[str, Any]] | None = None,
    compression: grpc.Compression | None = None,
) -> grpc.Channel:
    """An insecure ``grpc.Channel`` to ``target`` with :func:`client_interceptors` wired in."""
    channel = grpc.insecure_channel(target, options=options, compression=compression)
    return grpc.intercept_channel(channel, *client_interceptors())


def async_insecure_channel(
    target: str,
    *,
    options: Sequence[tuple[str, Any]] | None = None,
    compression: grpc.Compression | None = None,
) -> grpc.aio.Channel:
    """An insecure ``grpc.aio.Channel`` to ``target`` with :func:`async_client_interceptors`."""
    return grpc.aio.insecure_channel(
        target, options=options, compression=compression, interceptors=async_client_interceptors()
    )
