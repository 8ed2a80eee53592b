"""RabbitMQ (aio-pika) with clue: OpenTelemetry's aio-pika instrumentation, plus the consume
scope around each message.

::

    await clue.rabbitmq.consume(queue, handler)        # handler(message) in its scope
    await clue.rabbitmq.publish(exchange, message, routing_key="orders.placed")

The official instrumentation (``opentelemetry-instrumentation-aio-pika``,
turned on once by :func:`instrument`) makes each publish a PRODUCER span
with the trace context in the message's headers, and each consumed message a
CONSUMER span continuing it. clue adds, inside that span, what it adds to a
request: the request log scope, the request id, the delivery attempt, the
payload at debug level and ``messaging.process.duration``. See
docs/messaging.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractMessage,
    AbstractQueue,
    ConsumerTag,
)
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from clue.messaging import Consumer, ConsumeScope, inject, lowered, text_value

SYSTEM = "rabbitmq"
DELIVERY_COUNT_HEADER = "x-delivery-count"
"""Failed deliveries before this one, set by RabbitMQ on quorum queues' redeliveries."""

Handler = Callable[[AbstractIncomingMessage], Awaitable[Any]]


def instrument(*, tracer_provider: TracerProvider | None = None) -> None:
    """Turn OpenTelemetry's aio-pika instrumentation on for the process (once; later calls
    change nothing): publishes and consumers' callbacks get their spans."""
    instrumentor = AioPikaInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider)


def uninstrument() -> None:
    """Turn OpenTelemetry's aio-pika instrumentation off again."""
    instrumentor = AioPikaInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def consumer(*, log_payloads: bool = True, meter_provider: MeterProvider | None = None) -> Consumer:
    """A consumer of RabbitMQ messages whose scopes annotate the instrumentation's span."""
    return Consumer(SYSTEM, trace=False, log_payloads=log_payloads, meter_provider=meter_provider)


def scope(message: AbstractIncomingMessage, by: Consumer | None = None) -> ConsumeScope:
    """The consume scope of ``message`` (the routing key is its subject)."""
    headers = lowered(message.headers)
    return ConsumeScope(
        by or _default(),
        message.routing_key or "",
        headers,
        text_value(message.message_id),
        _attempt(headers.get(DELIVERY_COUNT_HEADER), message.redelivered),
        message.body,
        message.content_type,
        None,
    )


def _attempt(count: Any, redelivered: bool | None) -> int:
    """The delivery attempt: quorum queues count failed deliveries; other queues only say
    whether a message was delivered before (then it is at least the second attempt)."""
    if type(count) is int and count >= 0:
        return count + 1
    return 2 if redelivered else 1


async def consume(
    queue: AbstractQueue,
    handler: Handler,
    *,
    log_payloads: bool = True,
    meter_provider: MeterProvider | None = None,
    **options: Any,
) -> ConsumerTag:
    """:func:`instrument`, then ``queue.consume`` with ``handler`` run in each message's
    consume scope; ``options`` are ``queue.consume``'s (``no_ack``, ``exclusive``...)."""
    instrument()
    by = consumer(log_payloads=log_payloads, meter_provider=meter_provider)

    async def handle(message: AbstractIncomingMessage) -> Any:
        with scope(message, by):
            return await handler(message)

    return await queue.consume(handle, **options)


async def publish(
    exchange: AbstractExchange, message: AbstractMessage, routing_key: str, **options: Any
) -> Any:
    """``exchange.publish`` with clue's request id and the baggage added to the message's
    headers (the instrumentation adds the trace context of its PRODUCER span)."""
    inject(message.headers)
    return await exchange.publish(message, routing_key, **options)


_consumer: Consumer | None = None


def _default() -> Consumer:
    global _consumer
    if _consumer is None:
        _consumer = consumer()
    return _consumer
