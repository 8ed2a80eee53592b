"""The request id travels on gRPC calls: a client sends its scope's id in the
``x-request-id`` metadata and the server's log entries carry it (real calls on loopback)."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.wrappers_pb2 import StringValue

import clue.grpc
from clue import log
from tests.conftest import Lines
from tests.test_grpc import SERVICE, S, SyncServer, Telemetry, start_aio, stub

FORWARDER = "clue.test.Forwarder"


def server_ids(lines: Lines) -> list[str]:
    """The request ids of the servers' access lines, in the order they were written."""
    return [entry["request_id"] for entry in lines.entries("request")]


async def test_a_server_logs_under_the_request_id_of_its_callers_scope(lines: Lines) -> None:
    server = await start_aio(Telemetry())
    try:
        async with server.channel() as channel:
            # INTERNAL flushes the handler's buffered "handling" entry
            with log.request_scope(request_id="shop-7f3a"), pytest.raises(grpc.aio.AioRpcError):
                await stub(channel, "Unary")(S(value="abort:INTERNAL"))
    finally:
        await server.server.stop(None)
    assert server_ids(lines) == ["shop-7f3a"]
    [handled] = lines.entries("handling")
    assert handled["request_id"] == "shop-7f3a" and handled["method"] == f"/{SERVICE}/Unary"


async def test_the_id_goes_on_through_a_server_that_calls_another(lines: Lines) -> None:
    """shop → forwarder → echo: both servers log under the shop's id, as the boutique's
    frontend → checkout → e-mail chain does."""
    telemetry = Telemetry()
    echo = await start_aio(telemetry)
    async with echo.channel() as to_echo:

        async def forward(request: StringValue, context: Any) -> StringValue:
            reply: StringValue = await stub(to_echo, "Unary")(request)
            return reply

        forwarder = clue.grpc.instrument(grpc.aio.server(), **telemetry.providers())
        handler = grpc.unary_unary_rpc_method_handler(
            forward, request_deserializer=S.FromString, response_serializer=S.SerializeToString
        )
        forwarder.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(FORWARDER, {"Forward": handler})]
        )
        port = forwarder.add_insecure_port("127.0.0.1:0")
        await forwarder.start()
        try:
            async with clue.grpc.async_insecure_channel(f"127.0.0.1:{port}") as channel:
                with log.request_scope(request_id="shop-1"):
                    call = channel.unary_unary(
                        f"/{FORWARDER}/Forward",
                        request_serializer=S.SerializeToString,
                        response_deserializer=S.FromString,
                    )
                    assert (await call(S(value="hop"))).value == "hop"
        finally:
            await forwarder.stop(None)
            await echo.server.stop(None)
    methods = [(e["method"], e["request_id"]) for e in lines.entries("request")]
    assert methods == [(f"/{SERVICE}/Unary", "shop-1"), (f"/{FORWARDER}/Forward", "shop-1")]


def test_a_sync_client_sends_its_scopes_id(lines: Lines) -> None:
    server = SyncServer(Telemetry())
    try:
        with server.channel() as channel, log.request_scope(request_id="sync-9"):
            assert stub(channel, "Unary")(S(value="x")).value == "x"
            streamed = stub(channel, "ServerStream", "unary_stream")(S(value="s"))
            assert [r.value for r in streamed] == ["s-0", "s-1", "s-2"]
    finally:
        server.stop()
    assert server_ids(lines) == ["sync-9", "sync-9"]


async def test_metadata_the_caller_names_wins_over_the_scope(lines: Lines) -> None:
    server = await start_aio(Telemetry())
    try:
        async with server.channel() as channel:
            with log.request_scope(request_id="scope-id"):
                await stub(channel, "Unary")(S(value="x"), metadata=(("x-request-id", "explicit"),))
    finally:
        await server.server.stop(None)
    assert server_ids(lines) == ["explicit"]


@pytest.mark.parametrize("scope_id", ["r" * 65, "a b", "<b>", "é", ""])
async def test_a_malformed_or_oversized_scope_id_is_not_adopted(
    lines: Lines, scope_id: str
) -> None:
    """Not sent (the client applies the callee's rule), so the server mints its own."""
    seen: list[tuple[str, str]] = []

    async def unary(request: StringValue, context: Any) -> StringValue:
        seen.extend(
            (key, value) for key, value in context.invocation_metadata() if key == "x-request-id"
        )
        return request

    telemetry = Telemetry()
    server = clue.grpc.instrument(grpc.aio.server(), **telemetry.providers())
    handler = grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=S.FromString, response_serializer=S.SerializeToString
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Unary": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with clue.grpc.async_insecure_channel(f"127.0.0.1:{port}") as channel:
            with log.request_scope(request_id=scope_id):
                await stub(channel, "Unary")(S(value="x"))
    finally:
        await server.stop(None)
    assert seen == []
    [minted] = server_ids(lines)
    assert minted != scope_id and len(minted) == 16 and int(minted, 16) >= 0
