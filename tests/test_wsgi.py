"""clue.wsgi.ClueMiddleware on plain WSGI apps served by wsgiref on a real port.

The gunicorn, Flask and Django runs are tests/test_wsgi_gunicorn.py; here the
cases a framework would hide: an app that raises, a streamed body, close(),
payloads, a mount under SCRIPT_NAME, skip paths.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from opentelemetry import trace

from clue import log
from clue.wsgi import ROUTE_KEY, ClueMiddleware, StartResponse
from tests.conftest import Lines, free_port
from tests.test_asgi import PARENT_ID, TRACE_ID, Telemetry

CLOSED: list[str] = []


def current_trace_id() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


def stream(environ: dict[str, Any]) -> Iterator[bytes]:
    """A body made while the server sends it, logging as it goes."""
    try:
        for i in range(3):
            time.sleep(0.05)
            log.info("chunk", i=i, trace_id_seen=current_trace_id())
            yield f"{i}\n".encode()
    finally:
        CLOSED.append(environ["PATH_INFO"])


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A plain WSGI app: no framework, routes named through ROUTE_KEY."""
    path = environ["PATH_INFO"]
    if path.startswith("/items/"):
        environ[ROUTE_KEY] = "/items/{id}"
        log.info("handling", item=path.rsplit("/", 1)[1])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"id": path.rsplit("/", 1)[1]}).encode()]
    if path == "/unavailable":
        log.info("about to fail")
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"try later"]
    if path == "/boom":
        log.info("about to raise")
        raise RuntimeError("kaboom")
    if path == "/stream":
        environ[ROUTE_KEY] = "/stream"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream(environ)
    if path == "/broken-stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return broken_stream()
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE", "text/plain"))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def broken_stream() -> Iterator[bytes]:
    yield b"first\n"
    raise RuntimeError("stream broke")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # wsgiref's access log on stderr
        pass


@contextmanager
def serve(wsgi_app: Any) -> Iterator[httpx.Client]:
    """Serve ``wsgi_app`` with wsgiref on a free loopback port; yield a client for it."""
    server = make_server("127.0.0.1", free_port(), wsgi_app, WSGIServer, QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def middleware(telemetry: Telemetry, inner: Any = app, **options: Any) -> ClueMiddleware:
    return ClueMiddleware(
        inner,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **options,
    )


def test_ok_request_traced_logged_measured(lines: Lines) -> None:
    telemetry = Telemetry()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    with serve(middleware(telemetry)) as client:
        response = client.get("/items/42?full=1", headers={"traceparent": traceparent})
        second = client.get("/items/43")
    assert response.json() == {"id": "42"}
    request_id = response.headers["x-request-id"]
    first_span, second_span = telemetry.finished()
    assert first_span.name == "GET /items/{id}"
    assert format(first_span.context.trace_id, "032x") == TRACE_ID
    assert first_span.parent is not None
    assert format(first_span.parent.span_id, "016x") == PARENT_ID
    attributes = dict(first_span.attributes or {})
    assert attributes["url.path"] == "/items/42" and attributes["url.query"] == "full=1"
    assert attributes["http.route"] == "/items/{id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["client.address"] == "127.0.0.1"
    # the next request on the same server thread starts a trace of its own
    assert second_span.parent is None
    assert second_span.context.trace_id != first_span.context.trace_id
    assert second.headers["x-request-id"] != request_id

    line = lines.entries("request")[0]
    assert (line["status"], line["route"], line["path"]) == (200, "/items/{id}", "/items/42")
    assert line["request_id"] == request_id and line["trace_id"] == TRACE_ID
    assert telemetry.points() == [
        (
            {
                "http.request.method": "GET",
                "http.route": "/items/{id}",
                "http.response.status_code": 200,
                "url.scheme": "http",
            },
            2,
        )
    ]


@pytest.mark.parametrize("caller", ["r" * 5000, "<script>alert(1)</script>", "id with spaces"])
def test_a_long_or_odd_request_id_is_replaced(lines: Lines, caller: str) -> None:
    with serve(middleware(Telemetry())) as client:
        response = client.get("/items/1", headers={"X-Request-ID": caller})
        kept = client.get("/items/1", headers={"X-Request-ID": "abc-123"})
    fresh = response.headers["x-request-id"]
    assert len(fresh) == 16 and int(fresh, 16) >= 0
    assert kept.headers["x-request-id"] == "abc-123"
    assert [e["request_id"] for e in lines.entries("request")] == [fresh, "abc-123"]


def test_5xx_flushes_the_buffer_success_drops_it(lines: Lines) -> None:
    with serve(middleware(Telemetry(sampled=False))) as client:
        assert client.get("/items/7").status_code == 200
        assert client.get("/unavailable").status_code == 503
    assert lines.entries("handling") == []
    [flushed] = lines.entries("about to fail")
    assert flushed["path"] == "/unavailable"
    assert [e["status"] for e in lines.entries("request")] == [200, 503]


def test_an_exception_is_logged_with_its_traceback_and_answered_500(lines: Lines) -> None:
    telemetry = Telemetry(sampled=False)
    with serve(middleware(telemetry)) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert (response.status_code, response.text) == (500, "Internal Server Error\n")
    assert response.headers["x-request-id"] == "req-boom"
    before, error = lines.entries()[:2]
    assert before["msg"] == "about to raise" and before["request_id"] == "req-boom"
    assert error["msg"] == "unhandled exception" and error["level"] == "error"
    assert "kaboom" in error["traceback"] and error["request_id"] == "req-boom"
    assert lines.entries("request")[0]["status"] == 500


def test_the_exception_is_on_the_span() -> None:
    telemetry = Telemetry()
    with serve(middleware(telemetry)) as client:
        assert client.get("/boom").status_code == 500
    [span] = telemetry.finished()
    assert span.name == "GET" and span.status.is_ok is False
    assert [e.name for e in span.events] == ["exception"]


def test_a_streamed_body_is_inside_the_span_scope_and_duration(lines: Lines) -> None:
    telemetry = Telemetry()
    CLOSED.clear()
    with serve(middleware(telemetry)) as client:
        response = client.get("/stream", headers={"X-Request-ID": "req-stream"})
    assert response.text == "0\n1\n2\n"
    assert CLOSED == ["/stream"]  # the app's generator was closed through the middleware
    [span] = telemetry.finished()
    assert span.name == "GET /stream"
    chunks = lines.entries("chunk")
    assert [c["i"] for c in chunks] == [0, 1, 2]
    # logged while the server iterated the body: in the request's scope and trace
    assert {c["request_id"] for c in chunks} == {"req-stream"}
    assert {c["trace_id_seen"] for c in chunks} == {format(span.context.trace_id, "032x")}
    [line] = lines.entries("request")
    assert line["duration_ms"] >= 150  # three chunks 50 ms apart
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time >= 150_000_000


def test_an_exception_while_streaming_is_logged_and_recorded(lines: Lines) -> None:
    telemetry = Telemetry()
    with serve(middleware(telemetry)) as client:
        # the status was sent with the first chunk; wsgiref then closes the connection
        assert client.get("/broken-stream").text.startswith("first")
    [error] = lines.entries("unhandled exception")
    assert "stream broke" in error["traceback"]
    [span] = telemetry.finished()
    assert [e.name for e in span.events] == ["exception"]


def test_debug_payloads_text_and_json_only(lines: Lines) -> None:
    with serve(middleware(Telemetry())) as client:
        client.post("/echo", json={"user": "ana", "password": "hunter2"})
        assert lines.entries("request payload") == []
        log.set_debug(True)
        client.post("/echo", json={"user": "ana", "password": "hunter2"})
        client.post(
            "/echo", content=b"\x00\x01", headers={"content-type": "application/octet-stream"}
        )
    requests = lines.entries("request payload")
    responses = lines.entries("response payload")
    assert len(requests) == len(responses) == 1  # the binary body is not logged
    for entry in (requests[0], responses[0]):
        assert entry["level"] == "debug" and entry["path"] == "/echo"
        assert json.loads(entry["payload"]) == {"user": "ana", "password": "[REDACTED]"}


def test_a_mounted_app_routes_under_its_script_name(lines: Lines) -> None:
    telemetry = Telemetry()

    def mounted(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["SCRIPT_NAME"] = "/api"
        environ["PATH_INFO"] = environ["PATH_INFO"].removeprefix("/api")
        return app(environ, start_response)

    with serve(middleware(telemetry, mounted)) as client:
        assert client.get("/api/items/5").json() == {"id": "5"}
    [span] = telemetry.finished()
    assert span.name == "GET /api/items/{id}"
    assert lines.entries("request")[0]["route"] == "/api/items/{id}"


def test_skip_paths_and_switchable_request_line(lines: Lines) -> None:
    telemetry = Telemetry()
    with serve(middleware(telemetry, skip_paths=("/items/", "/unavailable"))) as client:
        assert "x-request-id" not in client.get("/items/1").headers
        assert client.get("/unavailable").status_code == 503
    assert lines.entries("request") == [] and telemetry.finished() == []
    with serve(middleware(telemetry, log_requests=False)) as client:
        assert client.get("/items/1").status_code == 200
    assert lines.entries("request") == [] and len(telemetry.finished()) == 1
    default = ClueMiddleware(app)
    assert default.skips("/healthz") and default.skips("/static/a.css")
    assert not default.skips("/items/1")
