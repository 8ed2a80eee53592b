"""One trace from a producer process to a consumer process through a real NATS JetStream.

The producer (service ``shop``) publishes an event with ``Nats-Msg-Id`` inside
its ``place order`` span and request scope; the consumer (service
``notification``) pulls it from a durable consumer, naks the first delivery
and acks the second. Both run ``clue.configure`` exporting over OTLP/gRPC to
the test's receiver. Expected: one trace ``place order -> publish (PRODUCER) ->
process (CONSUMER)`` twice (attempts 1 and 2), and the consumer's log records
in that trace with the producer's request id.

The two services are this module run as a script: ``python -m tests.test_nats_e2e``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
INTERNAL, PRODUCER, CONSUMER = 1, 4, 5  # opentelemetry.proto SpanKind values


# --- the two services (run in child processes) -------------------------------------------


async def _produce(url: str, subject: str) -> None:
    import clue
    import clue.nats
    import clue.telemetry
    from clue import log

    clue.configure("shop", "1.0.0")
    nc = clue.nats.instrument(await nats.connect(url))
    js = nc.jetstream()
    tracer = clue.telemetry.tracer("shop")
    with tracer.start_as_current_span("place order"), log.request_scope(request_id="order-req-1"):
        log.info("order placed")
        await js.publish(subject, b'{"order":"o-1"}', headers={"Nats-Msg-Id": "evt-o-1"})
    await nc.close()


async def _consume(url: str, stream: str, durable: str) -> None:
    from nats.aio.msg import Msg

    import clue
    import clue.nats
    from clue import log

    clue.configure("notification", "1.0.0")
    nc = clue.nats.instrument(await nats.connect(url))
    sub = await nc.jetstream().pull_subscribe_bind(durable, stream)
    acked: list[Msg] = []

    async def notify(msg: Msg) -> None:
        log.info("sending confirmation")
        if msg.metadata.num_delivered == 1:
            await msg.nak()
        else:
            await msg.ack()
            acked.append(msg)

    for _ in range(100):
        await sub.handle(notify, timeout=1.0)
        if acked:
            break
    await nc.close()


def _child_main(argv: list[str]) -> None:
    from clue import log

    log.configure(outputs=[log.Output(sys.stderr, format="json")])
    if argv[0] == "produce":
        asyncio.run(_produce(argv[1], argv[2]))
    else:
        asyncio.run(_consume(argv[1], argv[2], argv[3]))


# --- the test -----------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def run(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_nats_e2e", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


async def make_stream(url: str, stream: str, subject: str, durable: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        await js.add_consumer(stream, durable_name=durable, ack_policy="explicit")
    finally:
        await nc.close()


async def delete_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def test_one_trace_from_producer_to_consumer_process(nats_url: str, receiver: OTLPReceiver) -> None:
    suffix = uuid.uuid4().hex[:10]
    stream, subject, durable = f"CLUE_E2E_{suffix}", f"clue.e2e.{suffix}", "notification"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_METRICS_EXPORTER="none",
        PYTHONPATH=str(ROOT),
    )
    asyncio.run(make_stream(nats_url, stream, subject, durable))
    try:
        run(env, "produce", nats_url, subject)
        run(env, "consume", nats_url, stream, durable)
    finally:
        asyncio.run(delete_stream(nats_url, stream))

    spans = receiver.wait_for(lambda r: r.spans() if len(r.spans()) >= 4 else None)
    assert len(spans) == 4, [(s.service_name, s.name) for s in spans]
    [root] = [s for s in spans if s.kind == INTERNAL]
    [sent] = [s for s in spans if s.kind == PRODUCER]
    processed = sorted(
        (s for s in spans if s.kind == CONSUMER), key=lambda s: s.start_time_unix_nano
    )
    assert (root.service_name, root.name, root.parent_span_id) == ("shop", "place order", "")
    assert (sent.service_name, sent.name) == ("shop", f"publish {subject}")
    assert sent.parent_span_id == root.span_id
    assert sent.attributes["messaging.message.id"] == "evt-o-1"
    assert {s.trace_id for s in spans} == {root.trace_id}
    for attempt, span in enumerate(processed, start=1):
        assert (span.service_name, span.name) == ("notification", f"process {subject}")
        assert span.parent_span_id == sent.span_id
        assert span.attributes["messaging.nats.message.delivery_count"] == attempt
        assert span.attributes["messaging.consumer.group.name"] == durable
    assert [s.attributes["messaging.nats.message.settlement"] for s in processed] == ["nak", "ack"]

    logs = receiver.wait_for(
        lambda r: (
            r.logs()
            if len([g for g in r.logs() if g.service_name == "notification"]) >= 2
            else None
        )
    )
    confirmations = [g for g in logs if g.body == "sending confirmation"]
    assert [g.span_id for g in confirmations] == [s.span_id for s in processed]
    assert all(g.trace_id == root.trace_id for g in confirmations)
    assert [g.attributes.get("attempt") for g in confirmations] == [1, 2]
    assert {g.attributes.get("request_id") for g in confirmations} == {"order-req-1"}


if __name__ == "__main__":
    _child_main(sys.argv[1:])
