"""clue.asgi.ClueMiddleware on a Starlette app served by uvicorn on a real port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clue import log
from clue.asgi import ClueMiddleware
from tests.conftest import Lines, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def item(request: Request) -> Response:
    log.info("handling", item=request.path_params["item_id"])
    return JSONResponse({"id": request.path_params["item_id"]})


async def unavailable(request: Request) -> Response:
    log.info("about to fail")
    return JSONResponse({"error": "try later"}, status_code=503)


async def boom(request: Request) -> Response:
    log.info("about to raise")
    raise RuntimeError("kaboom")


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "text/plain"))


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/unavailable", unavailable),
            Route("/boom", boom),
            Route("/echo", echo, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


class Telemetry:
    def __init__(self, sampled: bool = True) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(**({} if sampled else {"sampler": ALWAYS_OFF}))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self) -> list[tuple[dict[str, Any], int]]:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "http.server.request.duration":
                        assert metric.unit == "s"
                        found += [(dict(p.attributes), p.count) for p in metric.data.data_points]
        return found


@asynccontextmanager
async def serve(telemetry: Telemetry, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Serve the app wrapped in ClueMiddleware with uvicorn; yield a client for it."""
    app = ClueMiddleware(
        starlette_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **options,
    )
    async with serve_app(app) as client:
        yield client


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` with uvicorn on a free loopback port; yield a client for it."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_ok_request_traced_logged_measured(lines: Lines) -> None:
    telemetry = Telemetry()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    async with serve(telemetry) as client:
        response = await client.get("/items/42?full=1", headers={"traceparent": traceparent})
    assert response.status_code == 200 and response.json() == {"id": "42"}
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 16

    [span] = telemetry.finished()
    assert span.name == "GET /items/{item_id}"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/items/42"
    assert attributes["url.query"] == "full=1"
    assert attributes["http.route"] == "/items/{item_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["client.address"] == "127.0.0.1"
    assert span.status.status_code is StatusCode.UNSET

    [line] = lines.entries("request")
    assert (line["status"], line["route"], line["method"]) == (200, "/items/{item_id}", "GET")
    assert line["request_id"] == request_id and line["path"] == "/items/42"
    assert line["trace_id"] == TRACE_ID
    assert isinstance(line["duration_ms"], float)
    assert telemetry.points() == [
        (
            {
                "http.request.method": "GET",
                "http.route": "/items/{item_id}",
                "http.response.status_code": 200,
                "url.scheme": "http",
            },
            1,
        )
    ]


async def test_request_id_header_is_honoured(lines: Lines) -> None:
    async with serve(Telemetry()) as client:
        response = await client.get("/items/1", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert lines.entries("request")[0]["request_id"] == "abc-123"


@pytest.mark.parametrize(
    "caller", ["r" * 5000, "<script>alert(1)</script>", "id with spaces", "é" * 8]
)
async def test_a_long_or_odd_request_id_is_replaced(lines: Lines, caller: str) -> None:
    async with serve(Telemetry()) as client:
        response = await client.get("/items/1", headers={b"X-Request-ID": caller.encode("utf-8")})
    fresh = response.headers["x-request-id"]
    assert len(fresh) == 16 and int(fresh, 16) >= 0
    assert lines.entries("request")[0]["request_id"] == fresh


async def test_a_uuid_request_id_is_kept(lines: Lines) -> None:
    caller = "3f2b1c9e-4d5a-4e8b-9c7d-1a2b3c4d5e6f"
    async with serve(Telemetry()) as client:
        response = await client.get("/items/1", headers={"X-Request-ID": caller})
    assert response.headers["x-request-id"] == caller


async def test_5xx_flushes_buffer_success_drops_it(lines: Lines) -> None:
    async with serve(Telemetry(sampled=False)) as client:
        assert (await client.get("/items/7")).status_code == 200
        assert (await client.get("/unavailable")).status_code == 503
    assert lines.entries("handling") == []
    [flushed] = lines.entries("about to fail")
    assert flushed["path"] == "/unavailable"
    assert [e["status"] for e in lines.entries("request")] == [200, 503]


async def test_exception_is_500_error_span_and_error_log(lines: Lines) -> None:
    telemetry = Telemetry()
    async with serve(telemetry) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    [span] = telemetry.finished()
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    [error] = lines.entries("unhandled exception")
    assert error["level"] == "error" and "kaboom" in json.dumps(error)
    assert error["path"] == "/boom" and error["trace_id"]
    # uvicorn's own "Exception in ASGI application" record is not written a second time
    assert [e["msg"] for e in lines.entries() if "traceback" in e] == ["unhandled exception"]
    assert lines.entries("request")[0]["status"] == 500


async def test_unknown_route_and_bad_method(lines: Lines) -> None:
    telemetry = Telemetry()
    async with serve(telemetry) as client:
        assert (await client.get("/nope")).status_code == 404
        assert (await client.get("/echo")).status_code == 405
    names = sorted(s.name for s in telemetry.finished())
    assert names == ["GET", "GET /echo"]
    assert [(e["status"], e["route"]) for e in lines.entries("request")] == [
        (404, ""),
        (405, "/echo"),
    ]


async def test_skip_paths_and_switchable_request_line(lines: Lines) -> None:
    telemetry = Telemetry()
    async with serve(telemetry) as client:
        assert (await client.get("/healthz")).text == "ok"
    assert lines.entries("request") == [] and telemetry.finished() == []
    async with serve(telemetry, log_requests=False) as client:
        assert (await client.get("/items/1")).status_code == 200
    assert lines.entries("request") == []
    assert len(telemetry.finished()) == 1


async def test_debug_payloads_text_and_json_only(lines: Lines) -> None:
    async with serve(Telemetry()) as client:
        await client.post("/echo", json={"user": "ana", "password": "hunter2"})
        assert lines.entries("request payload") == []
        log.set_debug(True)
        await client.post("/echo", json={"user": "ana", "password": "hunter2"})
        await client.post(
            "/echo", content=b"\x00\x01", headers={"content-type": "application/octet-stream"}
        )
        await client.post("/echo", content="y" * 5000, headers={"content-type": "text/plain"})
    requests = lines.entries("request payload")
    responses = lines.entries("response payload")
    assert len(requests) == len(responses) == 2  # the binary body is not logged
    for entry in (requests[0], responses[0]):
        assert entry["level"] == "debug" and entry["path"] == "/echo"
        assert json.loads(entry["payload"]) == {"user": "ana", "password": "[REDACTED]"}
    assert "truncated" in requests[1]["payload"] and len(requests[1]["payload"]) < 1100


def mounted_app(files: Path) -> Starlette:
    """Static files and a sub-router, each under a mount, one of them with a parameter."""
    (files / "style.css").write_text("body {}")
    return Starlette(
        routes=[
            Mount("/static", StaticFiles(directory=files)),
            Mount("/assets/{version}", StaticFiles(directory=files)),
            Mount("/api", routes=[Route("/items/{item_id}", item)]),
        ]
    )


async def test_a_mount_names_its_route_once(tmp_path: Path, lines: Lines) -> None:
    telemetry = Telemetry()
    app = ClueMiddleware(
        mounted_app(tmp_path),
        skip_paths=(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    async with serve_app(app) as client:
        for path in ("/static/style.css", "/assets/v2/style.css", "/api/items/7"):
            assert (await client.get(path)).status_code == 200, path
    # a span ends after its response is sent, so the next request may finish first
    names = sorted(span.name for span in telemetry.finished())
    assert names == [
        "GET /api/items/{item_id}",
        "GET /assets/{version}/{path}",
        "GET /static/{path}",
    ]
    assert sorted(line["route"] for line in lines.entries("request")) == [
        "/api/items/{item_id}",
        "/assets/{version}/{path}",
        "/static/{path}",
    ]


async def test_static_assets_are_not_observed_by_default(tmp_path: Path, lines: Lines) -> None:
    telemetry = Telemetry()
    app = ClueMiddleware(
        mounted_app(tmp_path),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    async with serve_app(app) as client:
        static = await client.get("/static/style.css")
        missing = await client.get("/static/nothing.css")
        assert (static.status_code, missing.status_code) == (200, 404)
        assert "x-request-id" not in static.headers
        assert (await client.get("/assets/v2/style.css")).status_code == 200
    # no root trace per asset, no request line, no duration point; other mounts are observed
    assert [span.name for span in telemetry.finished()] == ["GET /assets/{version}/{path}"]
    assert [line["path"] for line in lines.entries("request")] == ["/assets/v2/style.css"]
    assert [attributes["http.route"] for attributes, _ in telemetry.points()] == [
        "/assets/{version}/{path}"
    ]


def test_skip_paths_entries_ending_in_a_slash_are_prefixes() -> None:
    middleware = ClueMiddleware(starlette_app(), skip_paths=("/ping", "/public/"))
    assert middleware.skips("/ping") and middleware.skips("/public/a/b.js")
    assert not middleware.skips("/ping/x") and not middleware.skips("/public")
    default = ClueMiddleware(starlette_app())
    assert default.skips("/healthz") and default.skips("/static/img/logo.svg")
    assert default.skips("/favicon.ico") and not default.skips("/items/1")
