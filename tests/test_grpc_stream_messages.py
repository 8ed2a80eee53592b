"""The messages of streaming RPCs on their spans: an ``rpc.message`` event a message (type,
number in the stream, uncompressed size) and the counts, on the server's span and the
client's, through real calls on loopback (``grpc.aio`` and ``grpc.server``, either
wiring, clue's client interceptors on the channel); each streamed payload logged only
while debug logs are on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.wrappers_pb2 import StringValue as S
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import clue.grpc
from clue import log
from tests.conftest import Lines
from tests.test_grpc import Telemetry

SERVICE = "clue.test.Messages"
WORDS = ["a", "bb", "ccc"]
KINDS = pytest.mark.parametrize(
    "kind", ["aio-interceptors", "aio-instrument", "sync-interceptors", "sync-instrument"]
)


async def aio_spell(request: S, context: Any) -> AsyncIterator[S]:
    for letter in request.value:
        yield S(value=letter)


async def aio_join(requests: AsyncIterator[S], context: Any) -> S:
    return S(value="".join([r.value async for r in requests]))


async def aio_echo(requests: AsyncIterator[S], context: Any) -> AsyncIterator[S]:
    async for request in requests:
        yield request
        yield request


def sync_spell(request: S, context: Any) -> Iterator[S]:
    for letter in request.value:
        yield S(value=letter)


def sync_join(requests: Iterator[S], context: Any) -> S:
    return S(value="".join(r.value for r in requests))


def sync_echo(requests: Iterator[S], context: Any) -> Iterator[S]:
    for request in requests:
        yield request
        yield request


def handlers(aio: bool) -> Any:
    ser: dict[str, Any] = {
        "request_deserializer": S.FromString,
        "response_serializer": S.SerializeToString,
    }
    spell, join, echo = (
        (aio_spell, aio_join, aio_echo) if aio else (sync_spell, sync_join, sync_echo)
    )
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Spell": grpc.unary_stream_rpc_method_handler(spell, **ser),
            "Join": grpc.stream_unary_rpc_method_handler(join, **ser),
            "Echo": grpc.stream_stream_rpc_method_handler(echo, **ser),
        },
    )


class Server:
    """A server of ``kind`` (``aio`` or ``sync``, then ``interceptors`` or ``instrument``)."""

    def __init__(self, kind: str, telemetry: Telemetry) -> None:
        server_kind, wiring = kind.split("-")
        self.aio = server_kind == "aio"
        providers = telemetry.providers()
        interceptors: list[Any] = []
        if wiring == "interceptors":
            make = (
                clue.grpc.async_server_interceptors if self.aio else clue.grpc.server_interceptors
            )
            interceptors = make(**providers)
        if self.aio:
            self.server: Any = grpc.aio.server(interceptors=interceptors)
        else:
            pool = futures.ThreadPoolExecutor(max_workers=4)
            self.server = grpc.server(pool, interceptors=interceptors)
        if wiring == "instrument":
            self.server = clue.grpc.instrument(self.server, **providers)
        self.server.add_generic_rpc_handlers([handlers(self.aio)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def __aenter__(self) -> Server:
        started = self.server.start()
        if started is not None:
            await started
        return self

    def channel(self, telemetry: Telemetry) -> grpc.aio.Channel:
        """A ``grpc.aio`` channel to it, with clue's client interceptors."""
        interceptors = clue.grpc.async_client_interceptors(**telemetry.providers())
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.port}", interceptors=interceptors)

    async def __aexit__(self, *_: object) -> None:
        stopped = self.server.stop(None)
        if self.aio:
            await stopped


def method(channel: Any, name: str, kind: str) -> Any:
    return getattr(channel, kind)(
        f"/{SERVICE}/{name}",
        request_serializer=S.SerializeToString,
        response_deserializer=S.FromString,
    )


async def three_calls(channel: grpc.aio.Channel) -> list[list[str]]:
    """Spell "abc", Join WORDS and Echo WORDS through a ``grpc.aio`` channel."""

    async def words() -> AsyncIterator[S]:
        for word in WORDS:
            yield S(value=word)

    spelled = [r.value async for r in method(channel, "Spell", "unary_stream")(S(value="abc"))]
    joined = await method(channel, "Join", "stream_unary")(words())
    echoed = [r.value async for r in method(channel, "Echo", "stream_stream")(words())]
    return [spelled, [joined.value], echoed]


def three_sync_calls(channel: grpc.Channel) -> list[list[str]]:
    """The same through a ``grpc`` channel, from lists."""
    words = [S(value=word) for word in WORDS]
    spelled = [r.value for r in method(channel, "Spell", "unary_stream")(S(value="abc"))]
    joined = method(channel, "Join", "stream_unary")(iter(words))
    echoed = [r.value for r in method(channel, "Echo", "stream_stream")(iter(words))]
    return [spelled, [joined.value], echoed]


EXPECTED = [["a", "b", "c"], ["abbccc"], ["a", "a", "bb", "bb", "ccc", "ccc"]]


def messages(span: ReadableSpan) -> list[tuple[str, int, int]]:
    """(type, number, size) of each ``rpc.message`` event of ``span``, in order."""
    found = []
    for event in span.events:
        assert event.name == "rpc.message"
        a = event.attributes or {}
        found.append(
            (a["rpc.message.type"], a["rpc.message.id"], a["rpc.message.uncompressed_size"])
        )
    return found  # type: ignore[return-value]


def counts(span: ReadableSpan) -> tuple[Any, Any]:
    a = span.attributes or {}
    return a.get("rpc.grpc.message.sent_count"), a.get("rpc.grpc.message.received_count")


def size(value: str) -> int:
    return S(value=value).ByteSize()


def by_method(telemetry: Telemetry, kind: SpanKind) -> dict[str, ReadableSpan]:
    return {s.name.rpartition("/")[2]: s for s in telemetry.finished() if s.kind is kind}


async def all_ended(telemetry: Telemetry) -> None:
    """Wait for both sides' spans of the three calls: a server's span ends after the last
    message its client reads (in a worker thread for a sync server), so it can be late."""
    deadline = asyncio.get_running_loop().time() + 10
    wanted = {"Spell", "Join", "Echo"}
    while not (
        wanted <= by_method(telemetry, SpanKind.SERVER).keys()
        and wanted <= by_method(telemetry, SpanKind.CLIENT).keys()
    ):
        assert asyncio.get_running_loop().time() < deadline, "a call's span never ended"
        await asyncio.sleep(0.01)


def assert_stream_spans(telemetry: Telemetry) -> None:
    """Each message once, on both sides, in order: the server sends what the client receives."""
    server, client = by_method(telemetry, SpanKind.SERVER), by_method(telemetry, SpanKind.CLIENT)
    spelled = [(i, size(v)) for i, v in enumerate("abc", 1)]
    words = [(i, size(v)) for i, v in enumerate(WORDS, 1)]
    echoed = [(i, size(v)) for i, v in enumerate(EXPECTED[2], 1)]

    def typed(kind: str, numbered: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
        return [(kind, number, length) for number, length in numbered]

    # Spell: one request (no stream, no event), three responses
    assert messages(server["Spell"]) == typed("SENT", spelled) and counts(server["Spell"]) == (
        3,
        None,
    )
    assert messages(client["Spell"]) == typed("RECEIVED", spelled)
    assert counts(client["Spell"]) == (None, 3)
    # Join: three requests, one response
    assert messages(server["Join"]) == typed("RECEIVED", words) and counts(server["Join"]) == (
        None,
        3,
    )
    assert messages(client["Join"]) == typed("SENT", words) and counts(client["Join"]) == (3, None)
    # Echo: both ways, each request sent back twice
    for span, mine, theirs in (
        (server["Echo"], "SENT", "RECEIVED"),
        (client["Echo"], "RECEIVED", "SENT"),
    ):
        events = messages(span)
        assert [e for e in events if e[0] == theirs] == typed(theirs, words)
        assert [e for e in events if e[0] == mine] == typed(mine, echoed)
        assert counts(span) == ((6, 3) if mine == "SENT" else (3, 6))


@KINDS
async def test_aio_client_streams_carry_an_event_a_message(kind: str) -> None:
    telemetry = Telemetry()
    async with Server(kind, telemetry) as server, server.channel(telemetry) as channel:
        assert await three_calls(channel) == EXPECTED
        await all_ended(telemetry)
    assert_stream_spans(telemetry)


@KINDS
async def test_sync_client_streams_carry_an_event_a_message(kind: str) -> None:
    telemetry = Telemetry()
    async with Server(kind, telemetry) as server:
        plain = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        channel = grpc.intercept_channel(
            plain, *clue.grpc.client_interceptors(**telemetry.providers())
        )
        try:
            # a sync channel blocks: an aio server must keep serving meanwhile
            calls = await asyncio.to_thread(three_sync_calls, channel)
            await all_ended(telemetry)
        finally:
            plain.close()
    assert calls == EXPECTED
    assert_stream_spans(telemetry)


async def test_a_streamed_call_keeps_the_methods_of_a_call() -> None:
    """What clue hands back for a streaming call still reads, and tells its code."""
    telemetry = Telemetry()
    async with Server("aio-instrument", telemetry) as server:
        async with server.channel(telemetry) as channel:
            call = method(channel, "Spell", "unary_stream")(S(value="ab"))
            assert (await call.read()).value == "a"
            assert [r.value async for r in call] == ["b"]
            assert await call.code() is grpc.StatusCode.OK
        plain = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        sync_channel = grpc.intercept_channel(
            plain, *clue.grpc.client_interceptors(**telemetry.providers())
        )
        try:
            responses = method(sync_channel, "Spell", "unary_stream")(S(value="ab"))
            assert await asyncio.to_thread(lambda: [r.value for r in responses]) == ["a", "b"]
            assert responses.code() is grpc.StatusCode.OK
        finally:
            plain.close()


@pytest.mark.parametrize("kind", ["aio-instrument", "sync-interceptors"])
async def test_streamed_payloads_are_logged_only_under_debug(lines: Lines, kind: str) -> None:
    telemetry = Telemetry()
    async with (
        Server(kind, telemetry) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        await three_calls(channel)
        assert lines.entries("request payload") == lines.entries("response payload") == []
        log.set_debug(True)
        await three_calls(channel)
    requests = [(e["method"].rpartition("/")[2], e.get("message_id"), json.loads(e["payload"]))
                for e in lines.entries("request payload")]  # fmt: skip
    responses = [(e["method"].rpartition("/")[2], e.get("message_id"), json.loads(e["payload"]))
                 for e in lines.entries("response payload")]  # fmt: skip
    assert all(e["level"] == "debug" for e in lines.entries("request payload"))
    assert requests == [
        ("Spell", None, "abc"),  # the single request, as for a unary call
        *(("Join", i, w) for i, w in enumerate(WORDS, 1)),
        *(("Echo", i, w) for i, w in enumerate(WORDS, 1)),
    ]
    assert responses == [
        *(("Spell", i, w) for i, w in enumerate("abc", 1)),
        ("Join", None, "abbccc"),
        *(("Echo", i, w) for i, w in enumerate(EXPECTED[2], 1)),
    ]


async def test_a_long_stream_records_its_first_messages_and_counts_them_all() -> None:
    telemetry = Telemetry()
    async with Server("aio-instrument", telemetry) as server, server.channel(telemetry) as ch:
        call = method(ch, "Spell", "unary_stream")(S(value="x" * 100))
        assert len([r async for r in call]) == 100
    served, called = by_method(telemetry, SpanKind.SERVER), by_method(telemetry, SpanKind.CLIENT)
    for span, counted in ((served["Spell"], (100, None)), (called["Spell"], (None, 100))):
        assert [number for _, number, _ in messages(span)] == list(range(1, 65))
        assert counts(span) == counted
