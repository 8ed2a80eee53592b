"""clue.rabbitmq on a real RabbitMQ (CLUE_TEST_RABBITMQ_URL, default the local guest account).

OpenTelemetry's aio-pika instrumentation is turned on for this module with an
in-memory tracer provider whose sampler a test can switch off (for buffered
log entries), and turned off at its end. Each test uses its own queues.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

import clue.rabbitmq
from clue import log
from tests.conftest import Lines
from tests.servers import answers
from tests.test_messaging import Telemetry

URL = os.environ.get("CLUE_TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/"
DEADLINE = 10.0


class Switch(Sampler):
    """Samples everything while ``on``, nothing otherwise."""

    on = True

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        sampler = ALWAYS_ON if self.on else ALWAYS_OFF
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "Switch"


SWITCH = Switch()
SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    if not answers(URL):
        pytest.skip(f"no RabbitMQ at {URL} (set CLUE_TEST_RABBITMQ_URL)")
    provider = TracerProvider(sampler=SWITCH)
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    clue.rabbitmq.uninstrument()  # so that this module's provider is the one used
    clue.rabbitmq.instrument(tracer_provider=provider)
    yield
    clue.rabbitmq.uninstrument()


@pytest.fixture
async def channel() -> AsyncIterator[AbstractChannel]:
    SPANS.clear()
    SWITCH.on = True
    connection = await aio_pika.connect(URL)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def next_of(received: asyncio.Queue[AbstractIncomingMessage]) -> AbstractIncomingMessage:
    return await asyncio.wait_for(received.get(), DEADLINE)


def consumer_spans() -> list[ReadableSpan]:
    return [s for s in SPANS.get_finished_spans() if s.kind is SpanKind.CONSUMER]


async def wait_for_spans(count: int) -> list[ReadableSpan]:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while len(consumer_spans()) < count:
        assert asyncio.get_running_loop().time() < deadline, SPANS.get_finished_spans()
        await asyncio.sleep(0.01)
    return consumer_spans()


async def test_one_trace_and_the_consume_scope(channel: AbstractChannel, lines: Lines) -> None:
    telemetry = Telemetry()  # for the duration histogram
    queue = await channel.declare_queue(f"clue-{uuid.uuid4().hex[:10]}", auto_delete=True)
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def handler(message: AbstractIncomingMessage) -> None:
        log.info("confirming", size=len(message.body))
        await message.ack()
        await received.put(message)

    await clue.rabbitmq.consume(queue, handler, meter_provider=telemetry.meter_provider)
    provider = TracerProvider(sampler=SWITCH)
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("checkout"), log.request_scope(request_id="req-r1"):
        message = aio_pika.Message(b'{"order":"o-1"}', message_id="evt-r1")
        await clue.rabbitmq.publish(channel.default_exchange, message, queue.name)
    delivered = await next_of(received)
    assert delivered.headers["x-request-id"] == "req-r1"
    [processed] = await wait_for_spans(1)
    spans = {s.name: s for s in SPANS.get_finished_spans()}
    [sent] = [s for s in spans.values() if s.kind is SpanKind.PRODUCER]
    assert sent.parent is not None and sent.parent.span_id == spans["checkout"].context.span_id
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id
    assert dict(processed.attributes or {})["messaging.rabbitmq.message.delivery_count"] == 1
    [entry] = lines.entries("confirming")
    assert entry["subject"] == queue.name and entry["message_id"] == "evt-r1"
    assert entry["attempt"] == 1 and entry["request_id"] == "req-r1"
    [(point, count)] = telemetry.durations()
    assert count == 1 and point["messaging.system"] == "rabbitmq"


@pytest.mark.parametrize("quorum", [False, True], ids=["classic", "quorum"])
async def test_a_requeued_message_is_attempt_two(
    channel: AbstractChannel, lines: Lines, quorum: bool
) -> None:
    name = f"clue-{uuid.uuid4().hex[:10]}"
    if quorum:
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
    else:
        queue = await channel.declare_queue(name, auto_delete=True)
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def flaky(message: AbstractIncomingMessage) -> None:
        log.info("trying")
        if lines.entries("trying")[-1]["attempt"] == 1:
            await message.reject(requeue=True)
        else:
            await message.ack()
        await received.put(message)

    try:
        await clue.rabbitmq.consume(queue, flaky)
        await clue.rabbitmq.publish(channel.default_exchange, aio_pika.Message(b"x"), name)
        first, second = await next_of(received), await next_of(received)
        assert (first.redelivered, second.redelivered) == (False, True)
        if quorum:  # the count the attempt is read from (classic queues: the flag)
            assert second.headers.get("x-delivery-count") == 1
        spans = await wait_for_spans(2)
    finally:
        await queue.delete(if_unused=False, if_empty=False)
    assert [e["attempt"] for e in lines.entries("trying")] == [1, 2]
    counts = [dict(s.attributes or {})["messaging.rabbitmq.message.delivery_count"] for s in spans]
    assert counts == [1, 2]


async def test_unsampled_entries_dropped_on_success_written_on_failure(
    channel: AbstractChannel, lines: Lines
) -> None:
    SWITCH.on = False
    queue = await channel.declare_queue(f"clue-{uuid.uuid4().hex[:10]}", auto_delete=True)
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def handler(message: AbstractIncomingMessage) -> None:
        log.info("first")
        log.warn("second")
        await message.ack()
        await received.put(message)
        if message.body == b"fail":
            raise RuntimeError("mailer down")

    await clue.rabbitmq.consume(queue, handler)
    for body in (b"ok", b"fail"):
        message = aio_pika.Message(body, message_id=body.decode())
        await clue.rabbitmq.publish(channel.default_exchange, message, queue.name)
    await next_of(received)
    await next_of(received)
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not lines.entries("unhandled exception"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    scoped = [e for e in lines.entries() if "subject" in e]
    assert [e["msg"] for e in scoped] == ["first", "second", "unhandled exception"]
    assert {e["message_id"] for e in scoped} == {"fail"}
    assert scoped[2]["error_type"] == "RuntimeError"


async def test_bad_headers_never_break_the_handler(channel: AbstractChannel, lines: Lines) -> None:
    queue = await channel.declare_queue(f"clue-{uuid.uuid4().hex[:10]}", auto_delete=True)
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def handler(message: AbstractIncomingMessage) -> None:
        log.info("handled")
        await message.ack()
        await received.put(message)

    await clue.rabbitmq.consume(queue, handler)
    underlay = await channel.get_underlay_channel()  # no instrumentation: headers as given
    bad_headers: list[dict[str, Any]] = [
        {"traceparent": "garbage", "x-request-id": "has spaces <b>"},
        {"traceparent": "0" * 100_000},  # a frame holds 128 KiB of headers at most
        {"baggage": "k=" + "v" * 100_000},
        {"tracestate": bytearray(b"\xff\xfe"), "x-request-id": bytearray(b"\xc3\x28")},
        {"x-delivery-count": "two", "x-request-id": 42},
    ]
    for headers in bad_headers:
        properties = aiormq.spec.Basic.Properties(headers=headers)
        await underlay.basic_publish(b"payload", routing_key=queue.name, properties=properties)
    for _ in bad_headers:
        assert (await next_of(received)).body == b"payload"
    spans = await wait_for_spans(len(bad_headers))
    assert all(s.parent is None for s in spans)  # new traces
    entries = lines.entries("handled")
    assert len(entries) == len(bad_headers)
    assert all(len(e["request_id"]) == 16 and e["attempt"] == 1 for e in entries)
