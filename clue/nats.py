"""NATS and JetStream (nats-py) with clue: producer spans, consume scopes, settlements.

One call instruments a connection::

    nc = clue.nats.instrument(await nats.connect(url))
    js = nc.jetstream()
    await js.publish("orders.placed", data, headers={"Nats-Msg-Id": event_id})

Every publish (core, JetStream, request) is a PRODUCER span whose trace
context, baggage and request id go in the message's headers. Every message a
subscription callback receives, and every message :meth:`PullSubscription.handle`
fetches, is handled in a consume scope (:class:`clue.messaging.ConsumeScope`):
a CONSUMER span continuing the producer's trace, a request log scope, the
delivery attempt (JetStream's ``num_delivered``) and the settlement (``ack``,
``nak``, ``term``, ``in_progress``) on the span. The nats library itself is
not changed: only the instrumented connection makes its messages
:class:`TracedMsg` (its ``msg_class``). See docs/messaging.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from nats.aio.client import Client as NATSClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from clue.messaging import Consumer, ConsumeScope, Producer, header, lowered, text_value
from clue.messaging import handler as _scoped_handler

SYSTEM = "nats"
MESSAGE_ID_HEADER = "nats-msg-id"
"""JetStream's de-duplication id, read as the message id (``messaging.message.id``)."""
MAX_MESSAGE_ID = 256
"""Longer message ids are cut to this many characters in logs and spans."""
_ACK_PREFIX = "$JS.ACK."
_NO_AUTO_ACK = (api.AckPolicy.NONE, api.AckPolicy.FLOW_CONTROL)

Handler = Callable[[Msg], Awaitable[None]]


class TracedMsg(Msg):
    """A NATS message that remembers how it was settled (``outcome``) for its consume scope."""

    outcome: str | None = None

    async def ack(self) -> None:
        await super().ack()
        self.outcome = "ack"

    async def ack_sync(self, timeout: float = 1.0) -> Msg:
        reply = await super().ack_sync(timeout)
        self.outcome = "ack"
        return reply

    async def nak(self, delay: float | None = None) -> None:
        await super().nak(delay)
        self.outcome = "nak"

    async def term(self) -> None:
        await super().term()
        self.outcome = "term"

    async def in_progress(self) -> None:
        await super().in_progress()
        if self.outcome is None:
            self.outcome = "in_progress"


class MessageScope(ConsumeScope):
    """The consume scope of one NATS message; its settlement goes on the span at the end."""

    __slots__ = ("message",)
    message: Msg

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        outcome = getattr(self.message, "outcome", None)
        if outcome is not None and self.outcome is None:
            self.outcome = outcome
        super().__exit__(exc_type, exc, tb)


class Instrumentation:
    """The producer and consumer of one instrumented connection (see :func:`instrument`)."""

    def __init__(
        self,
        *,
        log_payloads: bool = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.producer = Producer(SYSTEM, operation="publish", tracer_provider=tracer_provider)
        self.consumer = Consumer(
            SYSTEM,
            log_payloads=log_payloads,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    def scope(self, msg: Msg, group: str | None = None) -> MessageScope:
        """The consume scope of ``msg``."""
        headers = lowered(msg.headers)
        message_id = text_value(headers.get(MESSAGE_ID_HEADER))
        if message_id is not None and len(message_id) > MAX_MESSAGE_ID:
            message_id = message_id[:MAX_MESSAGE_ID]
        scope = MessageScope(
            self.consumer,
            msg.subject,
            headers,
            message_id,
            _attempt(msg.reply),
            msg.data,
            text_value(headers.get("content-type")),
            group,
        )
        scope.message = msg
        return scope

    def wrap(self, handler: Handler, group: str | None = None, ack: bool = False) -> Handler:
        """``handler`` run in each message's consume scope (acking it on success if ``ack``)."""

        async def handle(msg: Msg) -> None:
            with self.scope(msg, group):
                await handler(msg)
                if ack and not msg.is_acked:
                    await msg.ack()

        return handle


def _attempt(reply: str) -> int | None:
    """The delivery count in a JetStream message's reply subject (1 for the first delivery),
    None for core NATS: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>``,
    or with a domain and account hash before the stream (nats-py's ``Msg.Metadata`` reads
    the same tokens, and parses the rest too)."""
    if not reply.startswith(_ACK_PREFIX):
        return None
    tokens = reply.split(".")
    if len(tokens) == 9:
        delivered = tokens[4]
    elif len(tokens) >= 11:
        delivered = tokens[6]
    else:
        return None
    return int(delivered) if delivered.isascii() and delivered.isdigit() else None


def instrument(
    nc: NATSClient,
    *,
    log_payloads: bool = True,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> InstrumentedClient:
    """``nc`` instrumented (see the module doc): use the returned client in its place.

    ``log_payloads``: log each message's body at debug level while debug is on.
    """
    if nc.msg_class is Msg:
        nc.msg_class = TracedMsg
    instrumentation = Instrumentation(
        log_payloads=log_payloads, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return InstrumentedClient(nc, instrumentation)


class InstrumentedClient:
    """A NATS connection whose publishes and subscription callbacks are observed.

    Every other attribute is the connection's own; ``nc`` is the connection.
    """

    def __init__(self, nc: NATSClient, instrumentation: Instrumentation) -> None:
        self.nc = nc
        self.instrumentation = instrumentation

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish in a PRODUCER span, the trace context added to ``headers``."""
        send = self.instrumentation.producer.send(
            subject, headers, message_id=_message_id(headers), body_size=len(payload)
        )
        with send:
            await self.nc.publish(subject, payload, reply, send.headers)

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,
        old_style: bool = False,
        headers: dict[str, Any] | None = None,
    ) -> Msg:
        """Send a request in a PRODUCER span, the trace context added to ``headers``."""
        send = self.instrumentation.producer.send(subject, headers, body_size=len(payload))
        with send:
            return await self.nc.request(subject, payload, timeout, old_style, send.headers)

    async def subscribe(
        self, subject: str, queue: str = "", cb: Handler | None = None, **options: Any
    ) -> Subscription:
        """Subscribe; ``cb`` handles each message in its consume scope."""
        if cb is not None:
            cb = self.instrumentation.wrap(cb, queue or None)
        return await self.nc.subscribe(subject, queue, cb, **options)

    def jetstream(self, **options: Any) -> InstrumentedJetStream:
        """The connection's JetStream context, instrumented."""
        return InstrumentedJetStream(self.nc.jetstream(**options), self.instrumentation)

    async def __aenter__(self) -> InstrumentedClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.nc.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nc, name)


class InstrumentedJetStream:
    """A JetStream context whose publishes and consumers are observed.

    Every other attribute (stream and consumer management, key-value, ...) is
    the context's own; ``js`` is the context.
    """

    def __init__(self, js: JetStreamContext, instrumentation: Instrumentation) -> None:
        self.js = js
        self.instrumentation = instrumentation

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
        **options: Any,
    ) -> api.PubAck:
        """Publish and wait for the stream's acknowledgement, in a PRODUCER span; a
        ``Nats-Msg-Id`` header is the span's message id."""
        send = self.instrumentation.producer.send(
            subject, headers, message_id=_message_id(headers), body_size=len(payload)
        )
        with send:
            return await self.js.publish(subject, payload, timeout, stream, send.headers, **options)

    async def publish_async(
        self,
        subject: str,
        payload: bytes = b"",
        *,
        headers: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Publish without waiting for the acknowledgement (returned as a future), in a
        PRODUCER span that ends once the message is sent."""
        send = self.instrumentation.producer.send(
            subject, headers, message_id=_message_id(headers), body_size=len(payload)
        )
        with send:
            return await self.js.publish_async(subject, payload, headers=send.headers, **options)

    async def subscribe(
        self,
        subject: str,
        queue: str | None = None,
        cb: Handler | None = None,
        durable: str | None = None,
        *,
        config: api.ConsumerConfig | None = None,
        manual_ack: bool = False,
        ordered_consumer: bool = False,
        **options: Any,
    ) -> JetStreamContext.PushSubscription:
        """Push-subscribe; ``cb`` handles each message in its consume scope, acknowledged
        in the scope after ``cb`` returns unless ``manual_ack`` (as nats-py does)."""
        if cb is not None:
            auto_ack = not (manual_ack or ordered_consumer) and (
                config is None or config.ack_policy not in _NO_AUTO_ACK
            )
            cb = self.instrumentation.wrap(cb, durable or queue, ack=auto_ack)
            manual_ack = True
        return await self.js.subscribe(
            subject,
            queue,
            cb,
            durable,
            config=config,
            manual_ack=manual_ack,
            ordered_consumer=ordered_consumer,
            **options,
        )

    async def pull_subscribe(
        self, subject: str, durable: str | None = None, stream: str | None = None, **options: Any
    ) -> PullSubscription:
        """A pull subscription (see :class:`PullSubscription`)."""
        sub = await self.js.pull_subscribe(subject, durable, stream, **options)
        return PullSubscription(sub, self.instrumentation, durable)

    async def pull_subscribe_bind(
        self, consumer: str | None = None, stream: str | None = None, **options: Any
    ) -> PullSubscription:
        """A pull subscription bound to an existing consumer (see :class:`PullSubscription`)."""
        sub = await self.js.pull_subscribe_bind(consumer, stream, **options)
        return PullSubscription(sub, self.instrumentation, consumer or options.get("durable"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)


class PullSubscription:
    """A JetStream pull subscription whose fetched messages are handled in consume scopes.

    :meth:`handle` fetches a batch and runs a handler on each message in its
    scope. ``fetch`` and every other attribute are the subscription's own;
    messages fetched that way can be handled in :meth:`scope`.
    """

    def __init__(
        self,
        sub: JetStreamContext.PullSubscription,
        instrumentation: Instrumentation,
        group: str | None,
    ) -> None:
        self.sub = sub
        self.instrumentation = instrumentation
        self.group = group

    async def handle(
        self,
        handler: Handler,
        batch: int = 1,
        timeout: float | None = 5.0,
        heartbeat: float | None = None,
    ) -> int:
        """Fetch up to ``batch`` messages (waiting up to ``timeout`` seconds for the first)
        and await ``handler(msg)`` for each in its consume scope; return how many were
        fetched (0 when none came in time).

        A handler that raises has its error logged and marked on its span, and the next
        message is handled: its message, left unacknowledged, is redelivered by JetStream
        after the consumer's ack wait (or settle it in the handler: ``nak``, ``term``).
        """
        try:
            messages = await self.sub.fetch(batch, timeout, heartbeat)
        except TimeoutError:  # nats' own timeout error subclasses it; fetch raises either
            return 0
        for msg in messages:
            try:
                with self.scope(msg):
                    await handler(msg)
            except Exception:  # logged and on the span by the scope
                continue
        return len(messages)

    def scope(self, msg: Msg) -> MessageScope:
        """The consume scope of a message of this subscription (``with sub.scope(msg):``)."""
        return self.instrumentation.scope(msg, self.group)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sub, name)


_default: Instrumentation | None = None


def scope(msg: Msg) -> MessageScope:
    """The consume scope of any NATS message (global tracer and meter providers)."""
    global _default
    if _default is None:
        _default = Instrumentation()
    return _default.scope(msg)


def handler(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a message handler so that it runs in the consume scope of its message (the
    last positional argument): ``@clue.nats.handler async def on_order(msg): ...``."""
    return _scoped_handler(scope)(function)


def _message_id(headers: dict[str, Any] | None) -> str | None:
    return header(headers, MESSAGE_ID_HEADER) if headers else None
