"""Which request outcomes are errors (buffer flushed, span status error): one default rule for
HTTP and gRPC, and a gRPC server's own rule, through real calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import clue.grpc
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
