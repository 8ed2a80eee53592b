"""WSGI middleware: tracing, request log scope, access line, debug payloads, HTTP metrics.

Wrap any WSGI application (Flask, Django, a plain callable)::

    app.wsgi_app = clue.wsgi.ClueMiddleware(app.wsgi_app)  # Flask
    application = clue.wsgi.ClueMiddleware(get_wsgi_application())  # Django

Routes are named by the framework through the ``clue.route`` environ key
(:data:`ROUTE_KEY`): ``clue.django.ClueMiddleware`` in ``settings.MIDDLEWARE``
for Django, a ``before_request`` function for Flask (docs/integrations.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import Context, Token, copy_context
from types import TracebackType
from typing import Any, BinaryIO

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from clue import log
from clue._http_server import ServerMiddleware
from clue._payload import body_payload
from clue._request_id import request_id_or_new
from clue.log import report_unhandled

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: The environ key where a framework integration puts the matched route template,
#: relative to the application's root (``SCRIPT_NAME``), e.g. ``"/items/<id>"``.
#: ``clue.django.ClueMiddleware`` sets it; a Flask app sets it from ``request.url_rule``
#: in a ``before_request`` function (docs/integrations.md).
ROUTE_KEY = "clue.route"
_MAX_KEPT = 64 * 1024
_ERROR_BODY = b"Internal Server Error\n"


class ClueMiddleware(ServerMiddleware[WSGIApp]):
    """Observe every HTTP request of a WSGI app, as ``clue.asgi.ClueMiddleware`` does.

    Per request: a SERVER span continuing the caller's trace (``traceparent``)
    named ``"GET /route"`` (``"GET"`` when no route is known: the framework
    puts it in the environ under :data:`ROUTE_KEY`, ``"clue.route"``); a log
    request scope with method, path, peer and request id (``X-Request-ID``
    honoured when short and plain, else minted, and returned in the response);
    one unbuffered ``request`` line with status, route and duration
    (``log_requests``); a buffer flush and an error span when ``is_error`` holds
    for the status (by default 500 or more, the rule of the gRPC layers); request
    and response bodies logged at debug level when debug is on (text and JSON
    only, masked, truncated); and the ``http.server.request.duration`` histogram.
    An exception from the app is logged with its traceback and answered 500.

    The observation ends when the server closes the response iterable (PEP
    3333), so a streamed body is inside the span, scope and duration. Paths (the
    ``PATH_INFO`` under the app's root) in ``skip_paths`` are passed through
    untouched; an entry ending in ``/`` covers every path under it.
    """

    SCOPE = "clue.wsgi"
    _fields: tuple[tuple[str, str], ...]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.skips(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        # The request runs in a context of its own, entered again for each chunk of the
        # body and for close(): its span and log scope last until the server closes it.
        context = copy_context()
        return context.run(_Request(self, environ).start, start_response, context)

    def propagation_fields(self) -> tuple[tuple[str, str], ...]:
        """(environ key, header name) of each header the global propagator reads."""
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            self._fields = tuple(
                ("HTTP_" + f.upper().replace("-", "_"), f.lower()) for f in propagator.fields
            )
            self._propagator = propagator
        return self._fields


class _Request:
    """The observation of one HTTP request, from the app's call to the body's close()."""

    __slots__ = (
        "chunks",
        "debug",
        "environ",
        "error",
        "method",
        "middleware",
        "request_body",
        "response_body",
        "response_type",
        "scope",
        "span",
        "started",
        "status",
        "token",
    )

    def __init__(self, middleware: ClueMiddleware, environ: Environ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET")
        self.status = 500
        self.error: BaseException | None = None
        self.debug = middleware._log_payloads and log.debug_enabled()
        self.request_body = bytearray()
        self.response_body = bytearray()
        self.response_type = ""
        self.started = 0.0
        self.chunks: Iterable[bytes] = ()
        self.span: trace.Span = trace.INVALID_SPAN
        self.scope: log.RequestScope | None = None
        self.token: Token[otel_context.Context] | None = None

    def start(self, start_response: StartResponse, context: Context) -> _Body:
        self.started = time.perf_counter()
        environ, middleware, method = self.environ, self.middleware, self.method
        fields = middleware.propagation_fields()
        carrier = {header: environ[key] for key, header in fields if key in environ}
        request_id = request_id_or_new(environ.get("HTTP_X_REQUEST_ID"))
        parent = otel_context.get_current()
        if carrier:
            parent = propagate.extract(carrier, parent)
        span = self.span = middleware._tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER
        )
        path = _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        if span.is_recording():
            _set_request_attributes(span, environ, method, path)
        self.token = otel_context.attach(trace.set_span_in_context(span, parent))
        address, port = environ.get("REMOTE_ADDR", ""), environ.get("REMOTE_PORT")
        peer = f"{address}:{port}" if port else address
        self.scope = log.request_scope(method=method, path=path, peer=peer, request_id=request_id)
        self.scope.__enter__()
        if self.debug:
            environ["wsgi.input"] = _KeptInput(environ["wsgi.input"], self.request_body)
        try:
            self.chunks = middleware.app(environ, self._start_response(start_response, request_id))
        except Exception as exc:
            self.chunks = self._fail(exc, start_response, request_id)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the server's to handle
            self.error = exc
            self.close()
            raise
        return _Body(self, context)

    def _start_response(self, start_response: StartResponse, request_id: str) -> StartResponse:
        def start_with_request_id(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            self.status = int(status[:3])
            headers = [*headers, ("X-Request-ID", request_id)]
            if self.debug:
                for name, value in headers:
                    if name.lower() == "content-type":
                        self.response_type = value
            write = start_response(status, headers, exc_info)
            if not self.debug:
                return write

            def write_and_keep(data: bytes) -> object:
                _keep(self.response_body, data)
                return write(data)

            return write_and_keep

        return start_with_request_id

    def _fail(self, exc: Exception, start_response: StartResponse, request_id: str) -> list[bytes]:
        """Log an exception raised by the app's call, and answer 500 in its place."""
        self.error = exc
        report_unhandled(exc)
        self.status = 500
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Request-ID", request_id)]
        try:
            start_response("500 Internal Server Error", headers, sys.exc_info())
        except BaseException:  # the response had begun: the server aborts it
            self.close()
            raise
        return [_ERROR_BODY]

    def next_chunk(self, chunks: Iterator[bytes]) -> bytes:
        try:
            chunk = next(chunks)
        except StopIteration:
            raise
        except Exception as exc:  # the headers may be out: the server aborts the response
            self.error = exc
            report_unhandled(exc)
            raise
        if self.debug:
            _keep(self.response_body, chunk)
        return chunk

    def close(self) -> None:
        """Close the app's iterable (PEP 3333), then end the span, line, metric and scope."""
        try:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        except Exception as exc:
            self.error = exc
            report_unhandled(exc)
            raise
        finally:
            try:
                self._finish()
            finally:
                if self.scope is not None:
                    self.scope.__exit__(None, None, None)
                    self.scope = None
                if self.token is not None:
                    otel_context.detach(self.token)
                    self.token = None

    def _finish(self) -> None:
        middleware, status, span, error = self.middleware, self.status, self.span, self.error
        route = _route(self.environ)
        failed = middleware._is_error(status)  # by default the rule shared with gRPC
        if failed and error is None:
            log.flush()
        if self.debug:
            self._log_payloads()
        elapsed = time.perf_counter() - self.started
        if middleware._log_requests:
            log.print(
                "request",
                status=status,
                route=route or "",
                duration_ms=int(elapsed * 1e6) / 1000,  # to the µs; round() costs more
            )
        if span.is_recording():
            if route:
                span.update_name(f"{self.method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if failed:
                span.set_status(Status(StatusCode.ERROR, str(status)))
            if error is not None:
                span.record_exception(error)
        span.end()
        scheme = self.environ.get("wsgi.url_scheme", "http")
        middleware.record(self.method, route, status, scheme, elapsed)

    def _log_payloads(self) -> None:
        body = body_payload(bytes(self.request_body), self.environ.get("CONTENT_TYPE", ""))
        if body:
            log.debug("request payload", payload=body)
        body = body_payload(bytes(self.response_body), self.response_type)
        if body:
            log.debug("response payload", payload=body)


class _Body:
    """The response iterable handed to the server: each chunk and close() run in the
    request's context, and close() ends the observation."""

    __slots__ = ("_chunks", "_closed", "_context", "_request")

    def __init__(self, request: _Request, context: Context) -> None:
        self._request = request
        self._context = context
        self._chunks = iter(request.chunks)
        self._closed = False

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        return self._context.run(self._request.next_chunk, self._chunks)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._context.run(self._request.close)


class _KeptInput:
    """``wsgi.input`` keeping the first bytes the app reads, for payload logging."""

    def __init__(self, stream: BinaryIO, kept: bytearray) -> None:
        self._stream = stream
        self._kept = kept

    def read(self, size: int = -1) -> bytes:
        return self._keep(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._keep(self._stream.readline(size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._keep(line) for line in self._stream.readlines(hint)]

    def __iter__(self) -> Iterator[bytes]:
        return (self._keep(line) for line in self._stream)

    def _keep(self, data: bytes) -> bytes:
        _keep(self._kept, data)
        return data


def _keep(buffer: bytearray, chunk: bytes) -> None:
    """Keep the first bytes of a body for payload logging (logs truncate further)."""
    room = _MAX_KEPT - len(buffer)
    if room > 0:
        buffer += chunk[:room]


def _text(wsgi_string: str) -> str:
    """A WSGI "bytes as latin-1" string (a path) as the UTF-8 text it encodes."""
    if wsgi_string.isascii():
        return wsgi_string
    return wsgi_string.encode("latin-1").decode("utf-8", "replace")


def _route(environ: Environ) -> str | None:
    """The matched route template (:data:`ROUTE_KEY`), with the app's root before it."""
    route = environ.get(ROUTE_KEY)
    if not isinstance(route, str):
        return None
    return _text(environ.get("SCRIPT_NAME", "")) + route


def _set_request_attributes(span: trace.Span, environ: Environ, method: str, path: str) -> None:
    span.set_attribute("http.request.method", method)
    span.set_attribute("url.path", path)
    span.set_attribute("url.scheme", environ.get("wsgi.url_scheme", "http"))
    query = environ.get("QUERY_STRING")
    if query:
        span.set_attribute("url.query", _text(query))
    address = environ.get("REMOTE_ADDR")
    if address:
        span.set_attribute("client.address", address)
    port = environ.get("REMOTE_PORT")
    if port and str(port).isdigit():
        span.set_attribute("network.peer.port", int(port))
    server = environ.get("SERVER_NAME")
    if server:
        span.set_attribute("server.address", server)
    server_port = environ.get("SERVER_PORT")
    if server_port and str(server_port).isdigit():
        span.set_attribute("server.port", int(server_port))
