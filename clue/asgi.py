"""ASGI middleware: tracing, request log scope, access line, debug payloads, HTTP metrics.

Wrap any ASGI application (Starlette, FastAPI, ...)::

    app = clue.asgi.ClueMiddleware(app)

or, with Starlette, ``Starlette(middleware=[Middleware(ClueMiddleware)])``.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from clue import log
from clue._http_server import DEFAULT_SKIP_PATHS as DEFAULT_SKIP_PATHS
from clue._http_server import ServerMiddleware
from clue._payload import body_payload
from clue._request_id import HEADER, request_id_or_new
from clue.log import report_unhandled
from clue.telemetry import flush_at_stop

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = HEADER.encode()


class ClueMiddleware(ServerMiddleware[ASGIApp]):
    """Observe every HTTP request of an ASGI app.

    Per request: a SERVER span continuing the caller's trace (``traceparent``)
    named ``"GET /route"`` with the HTTP semantic-convention attributes; a log
    request scope with method, path, peer and request id (``X-Request-ID``
    honoured or minted, and returned in the response); one unbuffered
    ``request`` line with status, route and duration (``log_requests``); a
    buffer flush and an error span when ``is_error`` holds for the status (by
    default 500 or more, the rule of the gRPC layers); request and response bodies
    logged at debug level when debug is on (text and JSON only, masked,
    truncated); and the ``http.server.request.duration`` histogram.

    Requests for paths in ``skip_paths`` are passed through untouched: no span,
    scope, line or metric. An entry ending in ``/`` covers every path under it;
    the default covers health probes, ``/metrics`` and static assets
    (``/static/``, ``/favicon.ico``), which would otherwise each be a trace of
    their own.
    """

    SCOPE = "clue.asgi"
    _fields: frozenset[bytes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, functools.partial(_flush_at_shutdown, send))
            return
        if scope["type"] != "http" or self.skips(scope["path"]):
            await self.app(scope, receive, send)
            return
        await _Request(self, scope).run(receive, send)

    def propagation_fields(self) -> frozenset[bytes]:
        """Header names the global propagator reads, as ASGI header names."""
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            self._fields = frozenset(f.lower().encode("latin-1") for f in propagator.fields)
            self._propagator = propagator
        return self._fields


class _Request:
    """The observation of one HTTP request."""

    __slots__ = (
        "content_type",
        "debug",
        "middleware",
        "request_body",
        "request_id",
        "response_body",
        "response_type",
        "scope",
        "status",
    )

    def __init__(self, middleware: ClueMiddleware, scope: Scope) -> None:
        self.middleware = middleware
        self.scope = scope
        self.status = 500
        self.request_id = ""
        self.content_type = ""
        self.response_type = ""
        self.debug = middleware._log_payloads and log.debug_enabled()
        self.request_body = bytearray()
        self.response_body = bytearray()

    async def run(self, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope, middleware = self.scope, self.middleware
        method: str = scope["method"]
        fields = middleware.propagation_fields()
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                self.request_id = value.decode("latin-1")
            elif name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name in fields:
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        self.request_id = request_id_or_new(self.request_id)
        parent = otel_context.get_current()  # read once, for the span and its context
        if carrier:
            parent = propagate.extract(carrier, parent)
        span = middleware._tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        if span.is_recording():
            _set_request_attributes(span, scope, method)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else ""
        error: BaseException | None = None
        try:
            with log.request_scope(
                method=method, path=scope["path"], peer=peer, request_id=self.request_id
            ):
                try:
                    await middleware.app(scope, self._receive(receive), self._send(send))
                except BaseException as exc:
                    error = exc
                    report_unhandled(exc)
                    raise
                finally:
                    self._finish(span, method, started, error)
        finally:
            otel_context.detach(token)

    def _receive(self, receive: Receive) -> Receive:
        if not self.debug:
            return receive

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                _keep(self.request_body, message.get("body", b""))
            return message

        return receive_and_keep

    def _send(self, send: Send) -> Send:
        request_id = self.request_id.encode("latin-1")

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
                message = {**message, "headers": headers}
                if self.debug:
                    for name, value in headers:
                        if name.lower() == b"content-type":
                            self.response_type = value.decode("latin-1")
            elif self.debug and message["type"] == "http.response.body":
                _keep(self.response_body, message.get("body", b""))
            await send(message)

        return send_with_request_id

    def _finish(
        self, span: trace.Span, method: str, started: float, error: BaseException | None
    ) -> None:
        middleware, status = self.middleware, self.status
        route = _route(self.scope)
        failed = middleware._is_error(status)  # by default the rule shared with gRPC
        if failed and error is None:
            log.flush()
        if self.debug:
            self._log_payloads()
        elapsed = time.perf_counter() - started
        if middleware._log_requests:
            log.print(
                "request",
                status=status,
                route=route or "",
                duration_ms=int(elapsed * 1e6) / 1000,  # to the µs; round() costs more
            )
        if span.is_recording():
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if failed:
                span.set_status(Status(StatusCode.ERROR, str(status)))
            if error is not None:
                span.record_exception(error)
        span.end()
        middleware.record(method, route, status, self.scope.get("scheme", "http"), elapsed)

    def _log_payloads(self) -> None:
        body = body_payload(bytes(self.request_body), self.content_type)
        if body:
            log.debug("request payload", payload=body)
        body = body_payload(bytes(self.response_body), self.response_type)
        if body:
            log.debug("response payload", payload=body)


_MAX_KEPT = 64 * 1024


async def _flush_at_shutdown(send: Send, message: MutableMapping[str, Any]) -> None:
    """Send a lifespan message; before telling the server the app has stopped, export what
    is queued: the server may end the process without exit handlers (a uvicorn worker
    re-raises SIGTERM with its default action)."""
    if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
        await asyncio.to_thread(flush_at_stop)
    await send(message)


def _keep(buffer: bytearray, chunk: bytes) -> None:
    """Keep the first bytes of a body for payload logging (logs truncate further)."""
    room = _MAX_KEPT - len(buffer)
    if room > 0:
        buffer += chunk[:room]


def _route(scope: Scope) -> str | None:
    """The matched route template (Starlette puts the route object in the scope).

    A route's template is relative to the ``root_path`` it was matched under.
    That is the scope's for a route, but a mount serving an application (such
    as static files) appends its own path to ``root_path`` as it matches, and
    its template starts with that path too: the mount's part is taken off
    ``root_path`` so that it is not counted twice.
    """
    route = scope.get("route")
    if isinstance(route, str):
        return route
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    root_path = str(scope.get("root_path", ""))
    mount_path = getattr(route, "path", None)
    if root_path and isinstance(mount_path, str) and hasattr(route, "routes"):
        mounted = _mount_prefix(mount_path).search(root_path)
        if mounted:
            root_path = root_path[: mounted.start()]
    return root_path + path_format


@functools.lru_cache(maxsize=256)
def _mount_prefix(path: str) -> re.Pattern[str]:
    """What a mount at template ``path`` (``/users/{id}``) adds to the end of ``root_path``."""
    pattern = "".join(
        "[^/]+" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{[^}]*\})", path)
    )
    return re.compile(pattern + r"\Z")


def _set_request_attributes(span: trace.Span, scope: Scope, method: str) -> None:
    span.set_attribute("http.request.method", method)
    span.set_attribute("url.path", scope["path"])
    span.set_attribute("url.scheme", scope.get("scheme", "http"))
    query = scope.get("query_string")
    if query:
        span.set_attribute("url.query", query.decode("latin-1"))
    client = scope.get("client")
    if client:
        span.set_attribute("client.address", client[0])
        span.set_attribute("network.peer.port", client[1])
    server = scope.get("server")
    if server:
        span.set_attribute("server.address", server[0])
        if server[1] is not None:
            span.set_attribute("server.port", server[1])
