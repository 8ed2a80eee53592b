"""clue.nats on a real NATS server with JetStream (the configured one, else a throwaway one).

Every test uses its own stream and subjects (a random suffix) and deletes the
streams it makes. Spans and metrics go to in-memory SDK providers given to
``clue.nats.instrument``; logs to the ``lines`` fixture.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client as NATSClient
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import clue.nats
from clue import log
from tests.conftest import Lines
from tests.test_messaging import PARENT_ID, TRACE_ID, Telemetry

DEADLINE = 10.0
T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def connected(
    nats_url: str, telemetry: Telemetry
) -> AsyncIterator[tuple[clue.nats.InstrumentedClient, NATSClient]]:
    """An instrumented connection and a plain one (to send what clue would not)."""
    plain = await nats.connect(nats_url)
    nc = clue.nats.instrument(
        await nats.connect(nats_url),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    try:
        yield nc, plain
    finally:
        await nc.close()
        await plain.close()


@asynccontextmanager
async def stream(nc: clue.nats.InstrumentedClient) -> AsyncIterator[tuple[str, str]]:
    """A fresh stream (deleted afterwards): its name and a subject in it."""
    name, subject = unique("CLUE_TEST_"), unique("clue.test.")
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{subject}.>", subject])
    try:
        yield name, subject
    finally:
        await js.delete_stream(name)


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def eventually(read: Callable[[], Awaitable[T]], holds: Callable[[T], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not holds(value := await read()):
        assert asyncio.get_running_loop().time() < deadline, f"still {value}"
        await asyncio.sleep(0.01)


def by_kind(spans: list[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_core_publish_and_callback_one_trace(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    subject = unique("clue.core.")
    received: list[Msg] = []

    async def on_message(msg: Msg) -> None:
        log.info("received", size=len(msg.data))
        received.append(msg)

    async with connected(nats_url, telemetry) as (nc, _):
        await nc.subscribe(subject, cb=on_message)
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("checkout"), log.request_scope(request_id="req-1"):
            await nc.publish(subject, b"hello", headers={"event-type": "Hello"})
        await wait_for(lambda: len(received) == 1)
        await wait_for(lambda: len(telemetry.finished()) == 3)
    [msg] = received
    assert msg.headers is not None and msg.headers["event-type"] == "Hello"
    assert msg.headers["x-request-id"] == "req-1"
    [root] = [s for s in telemetry.finished() if s.name == "checkout"]
    [sent] = by_kind(telemetry.finished(), SpanKind.PRODUCER)
    [processed] = by_kind(telemetry.finished(), SpanKind.CONSUMER)
    assert sent.name == f"publish {subject}" and processed.name == f"process {subject}"
    assert sent.parent is not None and sent.parent.span_id == root.context.span_id
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id
    assert processed.context.trace_id == root.context.trace_id
    assert attributes(sent)["messaging.operation.name"] == "publish"
    assert attributes(processed)["messaging.system"] == "nats"
    assert "messaging.nats.message.delivery_count" not in attributes(processed)  # core NATS
    [entry] = lines.entries("received")
    assert entry["subject"] == subject and entry["request_id"] == "req-1"


async def test_jetstream_pull_ack_with_message_id(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        ack = await js.publish(subject, b'{"order":"o-1"}', headers={"Nats-Msg-Id": "evt-1"})
        duplicate = await js.publish(subject, b'{"order":"o-1"}', headers={"Nats-Msg-Id": "evt-1"})
        assert ack.seq == 1 and duplicate.duplicate
        sub = await js.pull_subscribe(subject, durable="notification", stream=name)

        async def notify(msg: Msg) -> None:
            log.info("notifying")
            await msg.ack()

        assert await sub.handle(notify, batch=10, timeout=5) == 1
        assert await sub.handle(notify, batch=10, timeout=0.2) == 0  # de-duplicated
    sent, _, processed = sorted(telemetry.finished(), key=lambda s: s.start_time or 0)
    assert attributes(sent)["messaging.message.id"] == "evt-1"
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id
    assert attributes(processed) == {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": subject,
        "messaging.message.id": "evt-1",
        "messaging.nats.message.delivery_count": 1,
        "messaging.consumer.group.name": "notification",
        "messaging.message.body.size": 15,
        "messaging.nats.message.settlement": "ack",
    }
    [entry] = lines.entries("notifying")
    assert (entry["subject"], entry["message_id"], entry["attempt"]) == (subject, "evt-1", 1)
    [(point, count)] = telemetry.durations()
    assert count == 1 and point["messaging.consumer.group.name"] == "notification"


async def test_nak_then_redelivery_is_attempt_two(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        await js.publish(subject, b"x", headers={"Nats-Msg-Id": "evt-2"})
        sub = await js.pull_subscribe(subject, durable="flaky", stream=name)

        async def flaky(msg: Msg) -> None:
            log.info("trying")
            if msg.metadata.num_delivered == 1:
                await msg.nak()
            else:
                await msg.ack()

        assert await sub.handle(flaky, timeout=5) == 1
        assert await sub.handle(flaky, timeout=5) == 1
    first, second = by_kind(telemetry.finished(), SpanKind.CONSUMER)
    assert attributes(first)["messaging.nats.message.delivery_count"] == 1
    assert attributes(first)["messaging.nats.message.settlement"] == "nak"
    assert attributes(second)["messaging.nats.message.delivery_count"] == 2
    assert attributes(second)["messaging.nats.message.settlement"] == "ack"
    assert first.parent == second.parent  # both continue the producer's span
    assert [e["attempt"] for e in lines.entries("trying")] == [1, 2]


async def test_term_and_failure_outcomes(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry(sampled=False)  # unsampled: info entries are buffered
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        for n in range(3):
            await js.publish(subject, b"x", headers={"Nats-Msg-Id": f"evt-{n}"})
        config = api.ConsumerConfig(ack_wait=30)
        sub = await js.pull_subscribe(subject, durable="strict", stream=name, config=config)
        seen: list[str | None] = []

        async def strict(msg: Msg) -> None:
            message_id = (msg.headers or {}).get("Nats-Msg-Id")
            seen.append(message_id)
            log.info("step one")
            log.warn("step two")
            if message_id == "evt-0":
                await msg.term()
            elif message_id == "evt-1":
                raise RuntimeError("mailer down")
            else:
                await msg.ack()

        assert await sub.handle(strict, batch=3, timeout=5) == 3  # a failure stops nothing
        assert seen == ["evt-0", "evt-1", "evt-2"]
        await nc.flush()  # the acks go out; evt-1 is left unacknowledged, for redelivery
        await eventually(lambda: sub.consumer_info(), lambda info: info.num_ack_pending == 1)
    written = lines.entries()
    assert [e["msg"] for e in written] == ["step one", "step two", "unhandled exception"]
    assert all(e["message_id"] == "evt-1" for e in written)
    assert written[2]["error_type"] == "RuntimeError"
    errors = {p.get("error.type"): n for p, n in telemetry.durations()}
    assert errors == {None: 2, "RuntimeError": 1}


async def test_failure_and_settlement_on_sampled_spans(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        await js.publish(subject, b"a")
        await js.publish(subject, b"b")
        sub = await js.pull_subscribe(subject, durable="c", stream=name)

        async def handle(msg: Msg) -> None:
            if msg.data == b"a":
                await msg.term()
            else:
                raise ValueError("bad body")

        assert await sub.handle(handle, batch=2, timeout=5) == 2
    termed, failed = by_kind(telemetry.finished(), SpanKind.CONSUMER)
    assert attributes(termed)["messaging.nats.message.settlement"] == "term"
    assert termed.status.status_code is StatusCode.UNSET
    assert "messaging.nats.message.settlement" not in attributes(failed)
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(failed)["error.type"] == "ValueError"


async def test_push_subscription_acks_in_the_scope(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        handled: list[int] = []

        async def on_event(msg: Msg) -> None:
            handled.append(msg.metadata.num_delivered)

        await js.subscribe(subject, cb=on_event, durable="pushed", stream=name)
        await js.publish(subject, b"x")
        await wait_for(lambda: len(by_kind(telemetry.finished(), SpanKind.CONSUMER)) == 1)
    [processed] = by_kind(telemetry.finished(), SpanKind.CONSUMER)
    assert handled == [1]
    assert attributes(processed)["messaging.nats.message.settlement"] == "ack"
    assert attributes(processed)["messaging.consumer.group.name"] == "pushed"


async def test_fetched_messages_in_scope_and_decorator(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        await js.publish(subject, b"one")
        await js.publish(subject, b"two")
        sub = await js.pull_subscribe(subject, durable="manual", stream=name)
        [first] = await sub.fetch(1, timeout=5)
        with sub.scope(first):
            log.info("in scope")
            await first.ack()
        [second] = await sub.fetch(1, timeout=5)

        @clue.nats.handler
        async def decorated(msg: Msg) -> None:
            log.info("decorated")
            await msg.ack()

        await decorated(second)
    [scoped] = by_kind(telemetry.finished(), SpanKind.CONSUMER)  # the decorator's is global
    assert attributes(scoped)["messaging.nats.message.settlement"] == "ack"
    assert attributes(scoped)["messaging.consumer.group.name"] == "manual"
    assert lines.entries("in scope")[0]["attempt"] == 1
    assert lines.entries("decorated")[0]["subject"] == subject


async def raw_publish(nats_url: str, subject: str, header_lines: list[bytes]) -> None:
    """Send one message with exactly these header lines, over a plain socket (nats-py
    encodes header values as UTF-8 and rejects odd names: a peer need not)."""
    parts = urlsplit(nats_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n')
        header = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in header_lines) + b"\r\n"
        payload = b"payload"
        command = f"HPUB {subject} {len(header)} {len(header) + len(payload)}\r\n".encode()
        writer.write(command + header + payload + b"\r\nPING\r\n")
        await writer.drain()
        while (line := await asyncio.wait_for(reader.readline(), DEADLINE)) != b"PONG\r\n":
            assert not line.startswith(b"-ERR"), line
    finally:
        writer.close()
        await writer.wait_closed()


BAD_HEADERS: list[list[bytes]] = [
    [b"traceparent: garbage"],
    [b"traceparent: 00-" + b"\xff" * 32 + b"-" + b"\xfe" * 16 + b"-01"],  # not UTF-8
    [b"traceparent: " + b"0" * 1_000_000],  # 1 MB
    [b"baggage: " + b"k=v," * 250_000],
    [b"x-request-id: \xc3\x28\xa0\xa1", b"Nats-Msg-Id: \xff\xff"],
    [b"x-request-id: " + b"r" * 1_000_000],
    [b"\xff\xfe: bad name", b"no colon at all", b"with space: x", b"traceparent:"],
]


@pytest.mark.parametrize(
    "header_lines",
    BAD_HEADERS,
    ids=["garbage", "non-utf8", "1MB", "1MB-baggage", "non-utf8-id", "1MB-id", "malformed"],
)
async def test_bad_headers_never_break_the_handler(
    nats_url: str, lines: Lines, header_lines: list[bytes]
) -> None:
    telemetry = Telemetry()
    subject = unique("clue.bad.")
    handled: list[Msg] = []

    async def on_message(msg: Msg) -> None:
        log.info("handled")
        handled.append(msg)

    async with connected(nats_url, telemetry) as (nc, _):
        await nc.subscribe(subject, cb=on_message)
        await nc.flush()
        await raw_publish(nats_url, subject, header_lines)
        await wait_for(lambda: len(telemetry.finished()) == 1)
    assert [m.data for m in handled] == [b"payload"]
    [span] = telemetry.finished()
    assert span.parent is None  # a new trace
    assert span.status.status_code is StatusCode.UNSET
    [entry] = lines.entries("handled")
    assert len(entry["request_id"]) == 16
    assert len(entry.get("message_id", "")) <= clue.nats.MAX_MESSAGE_ID


async def test_a_good_traceparent_from_another_client_is_continued(
    nats_url: str, lines: Lines
) -> None:
    telemetry = Telemetry()
    subject = unique("clue.peer.")
    async with connected(nats_url, telemetry) as (nc, plain):
        await nc.subscribe(subject, cb=_ignore)
        await nc.flush()
        headers = {"Traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "X-Request-ID": "peer-1"}
        await plain.publish(subject, b"x", headers=headers)
        await wait_for(lambda: len(telemetry.finished()) == 1)
    [span] = telemetry.finished()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID


async def _ignore(msg: Msg) -> None:
    log.info("ignored")


async def test_request_reply_carries_the_trace(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    subject = unique("clue.rpc.")

    async def respond(msg: Msg) -> None:
        await msg.respond(b"pong")

    async with connected(nats_url, telemetry) as (nc, _):
        await nc.subscribe(subject, cb=respond)
        reply = await nc.request(subject, b"ping", timeout=DEADLINE)
        assert reply.data == b"pong"
        await wait_for(lambda: len(by_kind(telemetry.finished(), SpanKind.CONSUMER)) == 1)
    [sent] = by_kind(telemetry.finished(), SpanKind.PRODUCER)
    [processed] = by_kind(telemetry.finished(), SpanKind.CONSUMER)
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id


async def test_publish_failures_and_async_publishes_are_spans(nats_url: str, lines: Lines) -> None:
    telemetry = Telemetry()
    async with connected(nats_url, telemetry) as (nc, _), stream(nc) as (name, subject):
        js = nc.jetstream()
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await js.publish(unique("clue.nowhere."), b"x", timeout=2)
        future = await js.publish_async(subject, b"x", headers={"Nats-Msg-Id": "evt-a"})
        assert (await asyncio.wait_for(future, DEADLINE)).stream == name
    failed, sent = by_kind(telemetry.finished(), SpanKind.PRODUCER)
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(failed)["error.type"] == "nats.js.errors.NoStreamResponseError"
    assert sent.status.status_code is StatusCode.UNSET
    assert attributes(sent)["messaging.message.id"] == "evt-a"
