"""JetStream messages handled per second under clue's consume stack, against the same
handler bare, on a real NATS server (CLUE_TEST_NATS_URL, else a throwaway nats-server).

Goals (ratios measured in the same rounds, interleaved):
- messaging.nats_consume_adaptive: clue's stack (``clue.nats.instrument`` and
  ``PullSubscription.handle``, clue's default adaptive sampler) / bare nats-py
  (``fetch`` and the handler), at least 0.7;
- messaging.nats_consume_all_sampled: the same with every trace sampled, at least 0.5;
- messaging.rabbitmq_vs_official: messages handled per second by ``clue.rabbitmq.consume``
  over those of ``queue.consume`` with OpenTelemetry's aio-pika instrumentation alone,
  every trace sampled, at least 0.9 (CLUE_TEST_RABBITMQ_URL, default the local guest
  account; skipped when nothing answers there).

Both consume the same stream of messages published by an instrumented producer
(headers carry the trace context); the handler acks each message. The spans and
metrics go through the SDK's batch processor and periodic reader into exporters
that drop them. Also printed: the µs each message costs under each variant, and the
CPU each layer of the consume scope adds to one message (timed alone, in a loop).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import timeit
import uuid
from pathlib import Path

import aio_pika
import nats
from aio_pika.abc import AbstractIncomingMessage
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _goal import goal
from _null_telemetry import configure

import clue.nats
import clue.rabbitmq
from tests import servers

RABBITMQ_URL = os.environ.get("CLUE_TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/"

MESSAGES = 2000
BATCH = 100
ROUNDS = int(os.environ.get("CLUE_BENCH_ROUNDS", "7"))


async def handler(msg: Msg) -> None:
    await msg.ack()


async def bare_round(nc: nats.NATS, stream: str, subject: str) -> float:
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    started = time.perf_counter()
    handled = 0
    while handled < MESSAGES:
        for msg in await sub.fetch(BATCH, timeout=5):
            await handler(msg)
            handled += 1
    await nc.flush()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return elapsed


async def clue_round(nc: clue.nats.InstrumentedClient, stream: str, subject: str) -> float:
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    started = time.perf_counter()
    handled = 0
    while handled < MESSAGES:
        handled += await sub.handle(handler, BATCH, timeout=5)
    await nc.flush()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return elapsed


async def measure(url: str, sampler: str) -> tuple[float, float]:
    """Best seconds for MESSAGES messages, bare and under clue."""
    configure("bench-messaging", sampler)
    bare = await nats.connect(url)
    instrumented = clue.nats.instrument(await nats.connect(url))
    stream, subject = f"BENCH_{uuid.uuid4().hex[:8]}", f"bench.{uuid.uuid4().hex[:8]}"
    js = instrumented.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    best_bare = best_clue = float("inf")
    try:
        for n in range(MESSAGES):
            await js.publish_async(subject, b'{"order":"o-%d"}' % n)
        await js.publish_async_completed()
        for _ in range(ROUNDS):
            best_bare = min(best_bare, await bare_round(bare, stream, subject))
            best_clue = min(best_clue, await clue_round(instrumented, stream, subject))
    finally:
        await js.delete_stream(stream)
        await bare.close()
        await instrumented.close()
    return best_bare, best_clue


async def rabbitmq_round(channel: aio_pika.abc.AbstractChannel, with_clue: bool) -> float:
    """Seconds to handle MESSAGES messages published beforehand, with clue's scope or not."""
    queue = await channel.declare_queue(f"bench-{uuid.uuid4().hex[:8]}", auto_delete=True)
    for n in range(MESSAGES):
        await channel.default_exchange.publish(
            aio_pika.Message(b'{"order":"o-%d"}' % n), queue.name
        )
    done = asyncio.Event()
    handled = 0

    async def ack(message: AbstractIncomingMessage) -> None:
        nonlocal handled
        await message.ack()
        handled += 1
        if handled == MESSAGES:
            done.set()

    started = time.perf_counter()
    if with_clue:
        tag = await clue.rabbitmq.consume(queue, ack)
    else:
        tag = await queue.consume(ack)
    await done.wait()
    elapsed = time.perf_counter() - started
    await queue.cancel(tag)
    await queue.delete(if_unused=False, if_empty=False)
    return elapsed


async def measure_rabbitmq() -> tuple[float, float]:
    """Best seconds for MESSAGES messages: the official instrumentation alone, and clue's."""
    configure("bench-messaging", "always_on")
    clue.rabbitmq.instrument()
    best_official = best_clue = float("inf")
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=BATCH)
        for _ in range(ROUNDS):
            best_official = min(best_official, await rabbitmq_round(channel, False))
            best_clue = min(best_clue, await rabbitmq_round(channel, True))
    return best_official, best_clue


def layers(sampler: str) -> None:
    """Print the µs each layer of a NATS consume scope costs, each timed alone."""
    from opentelemetry import trace
    from opentelemetry.context import attach, detach, get_current
    from opentelemetry.trace import SpanKind

    from clue.log.scopes import RequestScope
    from clue.log.state import STATE
    from clue.messaging._headers import checked_request_id, extract_lowered, lowered, text_value

    configure("bench-messaging", sampler)
    instrumentation = clue.nats.Instrumentation()
    consumer = instrumentation.consumer
    flag = "01" if sampler == "always_on" else "00"
    headers = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{flag}", "Nats-Msg-Id": "evt-1"}
    reply = "$JS.ACK.ORDERS.notification.1.5.5.1700000000000000000.0"
    msg = clue.nats.TracedMsg(
        _client=None, subject="orders", reply=reply, data=b"{}", headers=headers
    )  # type: ignore[arg-type]
    names = lowered(headers)
    parent = extract_lowered(names, get_current())
    span = consumer.tracer.start_span("process orders", context=parent, kind=SpanKind.CONSUMER)

    def request_scope() -> None:
        fields = {"subject": "orders", "message_id": "evt-1", "attempt": 1, "request_id": "r"}
        scope = RequestScope(fields, STATE.buffer_size)
        scope.__enter__()
        scope.__exit__(None, None, None)

    def whole() -> None:
        with instrumentation.scope(msg, "notification"):
            pass

    parts = {
        "message read (headers, id, attempt)": lambda: instrumentation.scope(msg, "g"),
        "trace context extracted": lambda: extract_lowered(names, get_current()),
        "CONSUMER span started and ended": lambda: consumer.tracer.start_span(
            "process orders", context=parent, kind=SpanKind.CONSUMER
        ).end(),
        "span made current": lambda: detach(attach(trace.set_span_in_context(span, parent))),
        "request id": lambda: checked_request_id(text_value(names.get("x-request-id"))),
        "log request scope": request_scope,
        "duration recorded": lambda: consumer.record("orders", "notification", None, 0.001),
        "the whole scope": whole,
    }
    for name, part in parts.items():
        seconds = min(timeit.repeat(part, number=20_000, repeat=5)) / 20_000
        print(f"  {sampler}: {name}: {seconds * 1e6:.2f} µs")


def main() -> None:
    for sampler in ("adaptive", "always_on"):
        layers(sampler)
    with servers.serving(servers.NATS) as url:
        for sampler, name, target in (
            ("adaptive", "messaging.nats_consume_adaptive", 0.7),
            ("always_on", "messaging.nats_consume_all_sampled", 0.5),
        ):
            bare, instrumented = asyncio.run(measure(url, sampler))
            per_bare, per_clue = bare / MESSAGES * 1e6, instrumented / MESSAGES * 1e6
            print(
                f"{sampler}: bare {MESSAGES / bare:,.0f} msg/s ({per_bare:.1f} µs), "
                f"clue {MESSAGES / instrumented:,.0f} msg/s ({per_clue:.1f} µs, "
                f"+{per_clue - per_bare:.1f} µs)"
            )
            goal(name, bare / instrumented, ">=", target)
    if not servers.answers(RABBITMQ_URL):
        print(f"messaging.rabbitmq_vs_official skipped: no RabbitMQ at {RABBITMQ_URL}")
        return
    official, instrumented = asyncio.run(measure_rabbitmq())
    print(
        f"rabbitmq (all sampled): official {MESSAGES / official:,.0f} msg/s, "
        f"clue {MESSAGES / instrumented:,.0f} msg/s "
        f"(+{(instrumented - official) / MESSAGES * 1e6:.1f} µs a message)"
    )
    goal("messaging.rabbitmq_vs_official", official / instrumented, ">=", 0.9)


if __name__ == "__main__":
    main()
