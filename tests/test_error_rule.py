"""Which request outcomes are errors (buffer flushed, span status error): one default rule for
HTTP and gRPC, and a gRPC server's own rule, through real calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import clue.grpc
from clue import log
from clue.asgi import ClueMiddleware
from tests import test_asgi, test_wsgi
from tests.conftest import Lines
from tests.test_grpc import S, SyncServer, Telemetry, start_aio, stub

CODES = ("NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED", "INTERNAL", "UNAVAILABLE")


async def outcomes(lines: Lines, **options: Any) -> tuple[list[str], dict[str, StatusCode]]:
    """(the calls whose buffered entry was flushed, the span status of each call): an
    unsampled server for the buffers, a sampled one (which buffers nothing) for the spans."""
    flushed: list[str] = []
    statuses: dict[str, StatusCode] = {}
    for sampled in (False, True):
        telemetry = Telemetry(sampled=sampled)
        server = await start_aio(telemetry, **options)
        try:
            async with server.channel() as channel:
                for code in CODES:
                    with pytest.raises(grpc.aio.AioRpcError) as failure:
                        await stub(channel, "Unary")(S(value=f"abort:{code}"))
                    assert failure.value.code().name == code
        finally:
            await server.server.stop(None)
        if not sampled:
            flushed = [e["value"].removeprefix("abort:") for e in lines.entries("handling")]
        for span in telemetry.finished():
            if span.kind is SpanKind.SERVER:
                number = (span.attributes or {})["rpc.grpc.status_code"]
                name = next(c.name for c in grpc.StatusCode if c.value[0] == number)
                statuses[name] = span.status.status_code
    return flushed, statuses


async def test_by_default_only_server_faults_are_errors(lines: Lines) -> None:
    flushed, statuses = await outcomes(lines)
    assert flushed == ["INTERNAL", "UNAVAILABLE"]
    assert statuses == {
        "NOT_FOUND": StatusCode.UNSET,
        "INVALID_ARGUMENT": StatusCode.UNSET,
        "PERMISSION_DENIED": StatusCode.UNSET,
        "INTERNAL": StatusCode.ERROR,
        "UNAVAILABLE": StatusCode.ERROR,
    }


@pytest.mark.parametrize("wiring", ["interceptors", "instrument"])
async def test_a_servers_own_rule_decides_flush_and_span_status(lines: Lines, wiring: str) -> None:
    def caller_faults_too(code: grpc.StatusCode) -> bool:
        return code is not grpc.StatusCode.OK and code is not grpc.StatusCode.UNAVAILABLE

    flushed, statuses = await outcomes(lines, wiring=wiring, is_error=caller_faults_too)
    assert flushed == ["NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED", "INTERNAL"]
    assert [c for c, status in statuses.items() if status is StatusCode.ERROR] == flushed


def test_a_sync_servers_rule(lines: Lines) -> None:
    server = SyncServer(Telemetry(sampled=False), is_error=lambda code: code.name == "NOT_FOUND")
    try:
        with server.channel() as channel:
            for code in ("NOT_FOUND", "INTERNAL"):
                with pytest.raises(grpc.RpcError):
                    stub(channel, "Unary")(S(value=f"abort:{code}"))
    finally:
        server.stop()
    assert [e["value"] for e in lines.entries("handling")] == ["abort:NOT_FOUND"]


@pytest.mark.parametrize(
    "make", [clue.grpc.server_interceptors, clue.grpc.async_server_interceptors]
)
def test_a_rule_that_is_not_callable_is_a_clear_error(make: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="is_error must be a callable"):
        make(is_error="INTERNAL")


def test_every_grpc_code_has_its_http_status() -> None:
    from clue._status import HTTP_STATUS_OF_GRPC, is_grpc_error

    assert {c.value[0] for c in grpc.StatusCode} == set(HTTP_STATUS_OF_GRPC)
    errors = {c.name for c in grpc.StatusCode if is_grpc_error(c)}
    assert errors == {
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    }


def only_4xx(status: int) -> bool:
    return 400 <= status < 500


async def answer(request: Request) -> Response:
    status = int(request.path_params["status"])
    log.info("answering", status=status)
    return PlainTextResponse("", status_code=status)


async def test_an_asgi_apps_own_rule(lines: Lines) -> None:
    app = Starlette(routes=[Route("/answer/{status}", answer)])
    for sampled in (False, True):
        telemetry = test_asgi.Telemetry(sampled=sampled)
        middleware = ClueMiddleware(
            app, tracer_provider=telemetry.tracer_provider, is_error=only_4xx
        )
        async with test_asgi.serve_app(middleware) as client:
            assert (await client.get("/answer/404")).status_code == 404
            assert (await client.get("/answer/503")).status_code == 503
        if not sampled:  # the 404's entry flushed, the 503's dropped
            assert [e["status"] for e in lines.entries("answering")] == [404]
    assert [s.status.status_code for s in telemetry.finished()] == [
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]


def test_a_wsgi_apps_own_rule(lines: Lines) -> None:
    telemetry = test_wsgi.Telemetry(sampled=True)
    with test_wsgi.serve(test_wsgi.middleware(telemetry, is_error=only_4xx)) as client:
        assert client.get("/nowhere").status_code == 404
        assert client.get("/unavailable").status_code == 503
    statuses = [(s.attributes or {}).get("http.response.status_code") for s in telemetry.finished()]
    errors = [s.status.status_code for s in telemetry.finished()]
    assert list(zip(statuses, errors, strict=True)) == [
        (404, StatusCode.ERROR),
        (503, StatusCode.UNSET),
    ]


def test_an_http_rule_that_is_not_callable_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="is_error must be a callable of an HTTP status"):
        ClueMiddleware(test_asgi.starlette_app(), is_error=500)  # type: ignore[arg-type]
