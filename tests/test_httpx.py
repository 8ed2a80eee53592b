"""clue.httpx clients against a ClueMiddleware app on uvicorn: spans, propagation, logs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import clue.httpx
from clue import log
from tests.conftest import Lines, free_port
from tests.test_asgi import Telemetry, serve


async def test_async_client_traces_propagates_and_logs(lines: Lines) -> None:
    telemetry = Telemetry()
    providers = {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
    }
    async with serve(telemetry) as server:
        base = str(server.base_url)
        async with clue.httpx.AsyncClient(base_url=base, **providers) as client:
            assert (await client.get("/items/5")).json() == {"id": "5"}
            assert (await client.get("/unavailable")).status_code == 503
    spans = telemetry.finished()
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in clients] == ["GET", "GET"]
    assert [s.name for s in servers] == ["GET /items/{item_id}", "GET /unavailable"]
    for client_span, server_span in zip(clients, servers, strict=True):
        assert server_span.parent is not None
        assert server_span.parent.span_id == client_span.context.span_id
    assert clients[1].status.status_code is StatusCode.ERROR

    [ok] = lines.entries("http call")
    assert (ok["level"], ok["status"], ok["http_method"]) == ("info", 200, "GET")
    assert ok["url"] == f"{base}/items/5"
    [failed] = lines.entries("http call failed")
    assert (failed["level"], failed["status"]) == ("warn", 503)


async def test_transport_error_is_logged_and_raised(lines: Lines) -> None:
    telemetry = Telemetry()
    async with clue.httpx.AsyncClient(tracer_provider=telemetry.tracer_provider) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")
    [failed] = lines.entries("http call failed")
    assert "ConnectError" in failed["error"]
    [span] = telemetry.finished()
    assert span.status.status_code is StatusCode.ERROR


async def test_sync_client(lines: Lines) -> None:
    telemetry = Telemetry()
    async with serve(telemetry) as server:
        base = str(server.base_url)

        def call() -> int:
            with clue.httpx.Client(base_url=base, tracer_provider=telemetry.tracer_provider) as c:
                return c.get("/items/9").status_code

        assert await asyncio.to_thread(call) == 200
    kinds = sorted(s.kind.name for s in telemetry.finished())
    assert kinds == ["CLIENT", "SERVER"]
    assert lines.entries("http call")[0]["status"] == 200


async def test_the_request_id_travels_to_the_server(lines: Lines) -> None:
    telemetry = Telemetry()
    async with serve(telemetry) as server:
        base = str(server.base_url)
        async with clue.httpx.AsyncClient(base_url=base) as client:
            with log.request_scope(request_id="shop-42"):
                assert (await client.get("/items/1")).status_code == 200
                named = {"x-request-id": "named-by-the-call"}
                assert (await client.get("/items/2", headers=named)).status_code == 200
            with log.request_scope(request_id="not one a server takes on"):
                assert (await client.get("/items/3")).status_code == 200

        def call() -> int:
            with clue.httpx.Client(base_url=base) as c, log.request_scope(request_id="sync-7"):
                return c.get("/items/4").status_code

        assert await asyncio.to_thread(call) == 200
    ids = {e["path"]: e["request_id"] for e in lines.entries("request")}
    assert ids["/items/1"] == "shop-42"
    assert ids["/items/2"] == "named-by-the-call"
    assert ids["/items/3"] != "not one a server takes on" and len(ids["/items/3"]) == 16
    assert ids["/items/4"] == "sync-7"
