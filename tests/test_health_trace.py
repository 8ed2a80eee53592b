"""Health pingers carry the check's trace context (Go clue #586): the dependency's SERVER
span, over a real HTTP request and a real gRPC call, is a child of the check's ping span,
whether the check is awaited or run by the blocking ``check()`` from another thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from grpc_health.v1.health_pb2_grpc import add_HealthServicer_to_server
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import clue.grpc
from clue import health
from clue.asgi import ClueMiddleware
from clue.testing import CapturedSpans
from tests.conftest import free_port
from tests.test_middleware_docs import install_clue_globals, serve_asgi

TRACEPARENTS: list[str] = []


async def ready(request: Request) -> PlainTextResponse:
    TRACEPARENTS.append(request.headers.get("traceparent", ""))
    return PlainTextResponse("ok")


@asynccontextmanager
async def dependencies() -> AsyncIterator[tuple[str, str]]:
    """An HTTP service and a gRPC server, both wired with clue; yield their addresses."""
    install_clue_globals()
    servicer = HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server = clue.grpc.instrument(grpc.aio.server())
    add_HealthServicer_to_server(servicer, server)
    target = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(target)
    await server.start()
    try:
        app = ClueMiddleware(Starlette(routes=[Route("/ready", ready)]))
        async with serve_asgi(app) as url:
            yield url, target
    finally:
        await server.stop(None)


def assert_children_of_the_pings(spans: CapturedSpans, caller: ReadableSpan) -> None:
    assert caller.context is not None
    check = spans.one("health.check")
    assert check.parent is not None and check.parent.span_id == caller.context.span_id
    pings = {s.context.span_id: s for s in spans.where(name="health.ping") if s.context}
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert sorted(s.name for s in servers) == ["GET /ready", "grpc.health.v1.Health/Check"]
    for server in servers:
        assert server.context is not None and server.parent is not None
        assert server.context.trace_id == caller.context.trace_id
        ping = pings[server.parent.span_id]  # the ping of that dependency
        assert ping.attributes is not None
        assert ping.attributes["clue.health.dependency"] in ("web", "grpc")
    trace_hex = format(caller.context.trace_id, "032x")
    assert TRACEPARENTS and TRACEPARENTS[-1].split("-")[1] == trace_hex


async def test_an_awaited_check_propagates_its_trace(clue_spans: CapturedSpans) -> None:
    async with dependencies() as (url, target):
        checker = health.Checker(
            health.HTTPPinger("web", url, path="/ready"), health.GRPCPinger("grpc", target)
        )
        try:
            with trace.get_tracer("test").start_as_current_span("probe"):
                report = await checker.acheck()
        finally:
            await checker.aclose()
    assert report.ok
    assert_children_of_the_pings(clue_spans, clue_spans.one("probe"))


async def test_a_blocking_check_from_another_thread_propagates_its_trace(
    clue_spans: CapturedSpans,
) -> None:
    async with dependencies() as (url, target):
        checker = health.Checker(
            health.HTTPPinger("web", url, path="/ready"), health.GRPCPinger("grpc", target)
        )

        def probe() -> bool:
            try:
                with trace.get_tracer("test").start_as_current_span("sync probe"):
                    return checker.check().ok
            finally:
                checker.close()

        assert await asyncio.to_thread(probe)
    assert_children_of_the_pings(clue_spans, clue_spans.one("sync probe"))
