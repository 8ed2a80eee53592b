"""Traced and logged httpx clients.

``clue.httpx.AsyncClient`` and ``clue.httpx.Client`` are ``httpx`` clients whose
transport is wrapped twice: by the official OpenTelemetry HTTPX instrumentation
(CLIENT span, ``traceparent`` header, ``http.client.request.duration``) and by
clue's own layer, which names the current request id in ``x-request-id`` and writes
one entry per call: ``http call`` (info, buffered in a
request scope) or ``http call failed`` (warn) for statuses of 400 and more and
for transport errors, with the response's body when ``log_body_on_error`` is on
(at most ``MAX_ERROR_BODY`` bytes read, textual bodies only, JSON masked)::

    async with clue.httpx.AsyncClient(base_url="http://catalog:8080") as client:
        response = await client.get("/products")
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    SyncOpenTelemetryTransport,
)
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from clue import log
from clue._payload import body_payload
from clue._request_id import HEADER

__all__ = ["MAX_ERROR_BODY", "AsyncClient", "AsyncTransport", "Client", "Transport"]

MAX_ERROR_BODY = 8192
"""Bytes of a failed response's body read for its log entry (the rest is never read by clue)."""

# Client arguments that shape the default transport httpx would have built.
_TRANSPORT_ARGS = ("verify", "cert", "http1", "http2", "limits", "trust_env")


def _log_call(
    request: httpx.Request,
    started: float,
    status: int | None,
    exc: Any,
    body: dict[str, Any] | None = None,
) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
    fields = {"http_method": request.method, "url": str(request.url), "duration_ms": duration_ms}
    if exc is not None:
        log.warn("http call failed", error=f"{type(exc).__name__}: {exc}", **fields)
    elif status is not None and status >= 400:
        log.warn("http call failed", status=status, **fields, **(body or {}))
    else:
        log.info("http call", status=status, **fields)


def _send_request_id(request: httpx.Request) -> None:
    """Name the current scope's request id in the call's ``x-request-id`` (unless the call
    names one), so the callee logs under its caller's id."""
    request_id = log.outgoing_request_id()
    if request_id is not None and HEADER not in request.headers:
        request.headers[HEADER] = request_id


def _body_fields(response: httpx.Response, head: bytes, whole: bool) -> dict[str, Any]:
    """The log fields of a failed response's first bytes ``head`` (``whole``: all of it)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "deflate", "x-gzip"):
        inflate = zlib.decompressobj(47)  # zlib or gzip header, detected
        try:
            head = inflate.decompress(head, MAX_ERROR_BODY)
        except zlib.error:
            return {"body_skipped": f"undecodable {encoding} body"}
        whole = whole and inflate.eof and not inflate.unconsumed_tail
    elif encoding != "identity":
        return {"body_skipped": f"{encoding}-encoded body"}
    content_type = response.headers.get("content-type", "")
    if not whole and "json" in content_type.lower():  # a cut document cannot be masked
        return {"body_skipped": f"JSON body over {MAX_ERROR_BODY} bytes"}
    text = body_payload(head, content_type)
    if text is None:
        return {"body_skipped": f"binary body ({content_type or 'no content type'})"}
    return {"body": text} if whole else {"body": text, "body_truncated": True}


def _peek(response: httpx.Response) -> dict[str, Any]:
    """Read up to ``MAX_ERROR_BODY`` bytes of ``response``'s body for the log, leaving the
    whole body to the caller."""
    stream = response.stream
    chunks: list[bytes] = []
    size = 0
    rest = iter(stream)  # type: ignore[arg-type]
    for chunk in rest:
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ERROR_BODY:
            break
    response.stream = _Replay(chunks, rest, stream)
    return _body_fields(response, b"".join(chunks)[:MAX_ERROR_BODY], size <= MAX_ERROR_BODY)


async def _apeek(response: httpx.Response) -> dict[str, Any]:
    """:func:`_peek` for an async response."""
    stream = response.stream
    chunks: list[bytes] = []
    size = 0
    rest = aiter(stream)  # type: ignore[arg-type]
    async for chunk in rest:
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ERROR_BODY:
            break
    response.stream = _AsyncReplay(chunks, rest, stream)
    return _body_fields(response, b"".join(chunks)[:MAX_ERROR_BODY], size <= MAX_ERROR_BODY)


class _Replay(httpx.SyncByteStream):
    """A body whose first chunks were read already: those, then the rest of the original."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], original: Any) -> None:
        self._head, self._rest, self._original = head, rest, original

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head, []
        yield from head
        yield from self._rest

    def close(self) -> None:
        self._original.close()


class _AsyncReplay(httpx.AsyncByteStream):
    """:class:`_Replay` for an async body."""

    def __init__(self, head: list[bytes], rest: AsyncIterator[bytes], original: Any) -> None:
        self._head, self._rest, self._original = head, rest, original

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._original.aclose()


class Transport(httpx.BaseTransport):
    """A sync transport adding the official OpenTelemetry span and a log entry per call."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        log_body_on_error: bool = False,
    ) -> None:
        self._log_body = log_body_on_error
        self._inner = SyncOpenTelemetryTransport(
            transport or httpx.HTTPTransport(),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _send_request_id(request)
        started = time.perf_counter()
        try:
            response: httpx.Response = self._inner.handle_request(request)
            body = _peek(response) if self._log_body and response.status_code >= 400 else None
        except Exception as exc:
            _log_call(request, started, None, exc)
            raise
        _log_call(request, started, response.status_code, None, body)
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
        log_body_on_error: bool = False,
    ) -> None:
        self._log_body = log_body_on_error
        self._inner = AsyncOpenTelemetryTransport(
            transport or httpx.AsyncHTTPTransport(),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _send_request_id(request)
        started = time.perf_counter()
        try:
            response: httpx.Response = await self._inner.handle_async_request(request)
            failed = self._log_body and response.status_code >= 400
            body = await _apeek(response) if failed else None
        except Exception as exc:
            _log_call(request, started, None, exc)
            raise
        _log_call(request, started, response.status_code, None, body)
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
        log_body_on_error: bool = False,
        **kwargs: Any,
    ) -> None:
        inner = kwargs.pop("transport", None) or httpx.HTTPTransport(
            **{k: kwargs[k] for k in _TRANSPORT_ARGS if k in kwargs}
        )
        transport = Transport(
            inner,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            log_body_on_error=log_body_on_error,
        )
        super().__init__(transport=transport, **kwargs)


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` with an :class:`AsyncTransport` (same arguments as httpx's)."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        log_body_on_error: bool = False,
        **kwargs: Any,
    ) -> None:
        inner = kwargs.pop("transport", None) or httpx.AsyncHTTPTransport(
            **{k: kwargs[k] for k in _TRANSPORT_ARGS if k in kwargs}
        )
        transport = AsyncTransport(
            inner,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            log_body_on_error=log_body_on_error,
        )
        super().__init__(transport=transport, **kwargs)
