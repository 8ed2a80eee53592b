"""The examples of docs/integrations.md (gRPC, ASGI, httpx), run as written.

The ASGI example is served by uvicorn on a real port and the gRPC example by a
real ``grpc.aio`` server on loopback; the client examples call them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind

import clue
from clue import log, telemetry
from clue.telemetry.bootstrap import METER_PROVIDER, TRACER_PROVIDER
from tests.conftest import Lines, free_port
from tests.test_telemetry_configure import force_globals

PAGE = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


def examples(page: Path) -> dict[str, str]:
    """The ``<!-- example: name -->`` Python blocks of a docs page, by name."""
    found = re.findall(r"<!-- example: (\w+) -->\n```python\n(.*?)```", page.read_text(), re.S)
    return dict(found)


EXAMPLES = examples(PAGE)


def install_clue_globals() -> None:
    """Make clue's providers the OpenTelemetry globals (another test may have set its own).

    They are left in place afterwards: putting the API's proxy providers back as
    globals would make them their own delegate (and deadlock the next meter lookup).
    """
    if (trace.get_tracer_provider(), metrics.get_meter_provider()) != (
        TRACER_PROVIDER,
        METER_PROVIDER,
    ):
        force_globals(TRACER_PROVIDER, METER_PROVIDER)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "CLUE_")):
            monkeypatch.delenv(key)
    install_clue_globals()
    yield
    clue.shutdown()


def run(name: str, page: Path = PAGE) -> dict[str, Any]:
    """Run the example ``name`` of ``page`` in a fresh namespace; return the namespace."""
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}_{name}"}
    exec(compile(examples(page)[name], f"docs/{page.name}:{name}", "exec"), namespace)
    return namespace


def configure(sampler: Sampler) -> InMemorySpanExporter:
    spans = InMemorySpanExporter()
    clue.configure("docs", span_exporter=spans, sampler=sampler, exporter="none")
    return spans


def finished(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    telemetry.force_flush()
    return list(spans.get_finished_spans())


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def serve_grpc() -> AsyncIterator[str]:
    """The grpc_server example's server on a free loopback port; yield its address."""
    address = f"127.0.0.1:{free_port()}"
    server = await run("grpc_server")["serve"](address)
    try:
        yield address
    finally:
        await server.stop(None)


def test_the_page_has_the_examples_this_test_runs() -> None:
    wsgi = {"flask", "django_settings", "django_wsgi"}  # run by tests/test_wsgi_docs.py
    error_body = {"error_body"}  # run by tests/test_httpx_error_body.py
    assert set(EXAMPLES) == {"asgi", "grpc_server", "clients", *wsgi, *error_body}


async def test_asgi_example_request_line_buffering_and_request_id(lines: Lines) -> None:
    configure(ALWAYS_OFF)  # unsampled: info entries are buffered in the request scope
    app = run("asgi")["app"]
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/products/7")
        failing = await client.get("/products/0", headers={"X-Request-ID": "req-42"})
        skipped = await client.get("/healthz")  # a skip path: no line, even for a 404
    assert ok.json() == {"id": "7", "name": "mug"}
    assert (failing.status_code, failing.headers["x-request-id"]) == (503, "req-42")
    assert skipped.status_code == 404 and "x-request-id" not in skipped.headers

    ok_line, failing_line = lines.entries("request")
    assert ok_line["request_id"] == ok.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", ok_line["request_id"])
    assert (ok_line["method"], ok_line["path"], ok_line["route"], ok_line["status"]) == (
        "GET",
        "/products/7",
        "/products/{id}",
        200,
    )
    assert ok_line["peer"].startswith("127.0.0.1:") and ok_line["duration_ms"] >= 0
    assert len(ok_line["trace_id"]) == 32
    # The successful request's buffered entry was dropped; the 503 flushed its own.
    [flushed] = lines.entries("loading product")
    assert (flushed["product_id"], flushed["request_id"]) == ("0", "req-42")
    assert (failing_line["status"], failing_line["request_id"]) == (503, "req-42")


async def test_asgi_example_logs_payloads_when_debug_is_on(lines: Lines) -> None:
    app = run("asgi")["app"]
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        await client.get("/products/1")
        assert lines.entries("response payload") == []
        log.set_debug(True)
        await client.get("/products/2")
    [payload] = lines.entries("response payload")
    assert json.loads(payload["payload"]) == {"id": "2", "name": "mug"}
    assert payload["level"] == "debug" and payload["path"] == "/products/2"


async def test_httpx_client_example_continues_the_trace_into_the_asgi_app(lines: Lines) -> None:
    spans = configure(ALWAYS_ON)
    namespace = run("clients")
    app = run("asgi")["app"]
    async with serve_asgi(app) as url:
        assert await namespace["product"](url, "9") == {"id": "9", "name": "mug"}
        transport = httpx.AsyncHTTPTransport()
        async with namespace["wrap"](transport) as client:
            assert (await client.get(f"{url}/products/0")).status_code == 503

    by_kind = [(s.kind, s.name) for s in finished(spans)]
    assert by_kind.count((SpanKind.SERVER, "GET /products/{id}")) == 2
    server, client_span = (
        next(s for s in finished(spans) if s.kind is kind)
        for kind in (SpanKind.SERVER, SpanKind.CLIENT)
    )
    assert server.parent is not None and client_span.context is not None
    assert server.parent.span_id == client_span.context.span_id
    assert server.context is not None
    assert server.context.trace_id == client_span.context.trace_id
    [call] = lines.entries("http call")
    assert (call["http_method"], call["status"]) == ("GET", 200)
    assert call["url"] == f"{url}/products/9"
    [failed] = lines.entries("http call failed")
    assert failed["status"] == 503 and failed["level"] == "warn"


async def test_grpc_examples_trace_log_and_flush(lines: Lines) -> None:
    spans = configure(ALWAYS_ON)
    namespace = run("clients")
    async with serve_grpc() as address:
        assert await namespace["greet"](address, "ana") == "hello ana"
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await namespace["greet"](address, "")
        assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        reply = await asyncio.to_thread(namespace["greet_sync"], address, "bo")
        assert reply == "hello bo"

    request_lines = lines.entries("request")
    assert [(e["method"], e["code"]) for e in request_lines] == [
        ("/demo.Greeter/Greet", "OK"),
        ("/demo.Greeter/Greet", "INVALID_ARGUMENT"),
        ("/demo.Greeter/Greet", "OK"),
    ]
    assert all(re.fullmatch(r"[0-9a-f]{16}", e["request_id"]) for e in request_lines)
    assert request_lines[0]["peer"].startswith("ipv4:127.0.0.1:")
    [call_ok, call_sync] = lines.entries("grpc call")
    assert (call_ok["code"], call_sync["code"]) == ("OK", "OK")
    [failed] = lines.entries("grpc call failed")
    assert (failed["code"], failed["details"]) == ("INVALID_ARGUMENT", "name is required")

    done = finished(spans)
    servers = [s for s in done if s.kind is SpanKind.SERVER]
    clients = [s for s in done if s.kind is SpanKind.CLIENT]
    assert len(servers) == len(clients) == 3
    client_ids = {c.context.span_id for c in clients if c.context is not None}
    assert {s.parent.span_id for s in servers if s.parent is not None} == client_ids
    assert {s.name for s in done} == {"demo.Greeter/Greet"}


async def test_grpc_caller_fault_drops_the_buffered_entry_when_unsampled(lines: Lines) -> None:
    configure(ALWAYS_OFF)
    namespace = run("clients")
    async with serve_grpc() as address:
        assert await namespace["greet"](address, "ana") == "hello ana"
        with pytest.raises(grpc.aio.AioRpcError):
            await namespace["greet"](address, "")
    # INVALID_ARGUMENT is an answer, not an error (the rule of HTTP's 4xx): nothing flushed
    assert lines.entries("greeting") == []
    assert [e["code"] for e in lines.entries("request")] == ["OK", "INVALID_ARGUMENT"]
