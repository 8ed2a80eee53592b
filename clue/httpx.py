"""Traced and logged httpx clients.

``clue.httpx.AsyncClient`` and ``clue.httpx.Client`` are ``httpx`` clients whose
transport is wrapped twice: by the official OpenTelemetry HTTPX instrumentation
(CLIENT span, ``traceparent`` header, ``http.client.request.duration``) and by
a logging layer writing one entry per call: ``http call`` (info, buffered in a
request scope) or ``http call failed`` (warn) for statuses of 400 and more and
for transport errors::

    async with clue.httpx.AsyncClient(base_url="http://catalog:8080") as client:
        response = await client.get("/products")
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    SyncOpenTelemetryTransport,
)
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from clue import log

__all__ = ["AsyncClient", "AsyncTransport", "Client", "Transport"]

# Client arguments that shape the default transport httpx would have built.
_TRANSPORT_ARGS = ("verify", "cert", "http1", "http2", "limits", "trust_env")


def _log_call(request: httpx.Request, started: float, status: int | None, exc: Any) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
    fields = {"http_method": request.method, "url": str(request.url), "duration_ms": duration_ms}
    if exc is not None:
        log.warn("http call failed", error=f"{type(exc).__name__}: {exc}", **fields)
    elif status is not None and status >= 400:
        log.warn("http call failed", status=status, **fields)
    else:
        log.info("http call", status=status, **fields)


class Transport(httpx.BaseTransport):
    """A sync transport adding the official OpenTelemetry span and a log entry per call."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._inner = SyncOpenTelemetryTransport(
            transport or httpx.HTTPTransport(),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response: httpx.Response = self._inner.handle_request(request)
        except Exception as exc:
            _log_call(request, started, None, exc)
            raise
        _log_call(request, started, response.status_code, None)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncTransport(httpx.AsyncBaseTransport):
    """An async transport adding the official OpenTelemetry span and a log entry per call."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._inner = AsyncOpenTelemetryTransport(
            transport or httpx.AsyncHTTPTransport(),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response: httpx.Response = await self._inner.handle_async_request(request)
        except Exception as exc:
            _log_call(request, started, None, exc)
            raise
        _log_call(request, started, response.status_code, None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Client(httpx.Client):
    """``httpx.Client`` with a :class:`Transport` (same arguments as httpx's client)."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        **kwargs: Any,
    ) -> None:
        inner = kwargs.pop("transport", None) or httpx.HTTPTransport(
            **{k: kwargs[k] for k in _TRANSPORT_ARGS if k in kwargs}
        )
        transport = Transport(inner, tracer_provider=tracer_provider, meter_provider=meter_provider)
        super().__init__(transport=transport, **kwargs)


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` with an :class:`AsyncTransport` (same arguments as httpx's)."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        **kwargs: Any,
    ) -> None:
        inner = kwargs.pop("transport", None) or httpx.AsyncHTTPTransport(
            **{k: kwargs[k] for k in _TRANSPORT_ARGS if k in kwargs}
        )
        transport = AsyncTransport(
            inner, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        super().__init__(transport=transport, **kwargs)
