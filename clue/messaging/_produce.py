"""The send scope: a PRODUCER span around sending one message, its headers injected."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import attach, detach
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from clue import _semconv as sc
from clue.messaging._consume import error_type
from clue.messaging._headers import Headers, extract, inject

_MAX_CACHED = 1000


class Producer:
    """Makes the send scopes of one messaging system; ``operation`` is its name for sending."""

    def __init__(
        self,
        system: str,
        *,
        operation: str = sc.SEND,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.system = system
        self.operation = operation
        self.tracer = trace.get_tracer("clue.messaging", tracer_provider=tracer_provider)
        self._names: dict[str, str] = {}

    def send(
        self,
        destination: str,
        headers: Headers | None = None,
        *,
        message_id: str | None = None,
        body_size: int | None = None,
    ) -> SendScope:
        """The scope sending one message to ``destination`` (see SendScope)."""
        return SendScope(self, destination, headers, message_id, body_size)

    def span_name(self, destination: str) -> str:
        name = self._names.get(destination)
        if name is None:
            name = f"{self.operation} {destination}"
            if len(self._names) < _MAX_CACHED:
                self._names[destination] = name
        return name


class SendScope:
    """Sending one message, as a context manager (``with`` or ``async with``).

    It starts a PRODUCER span ``<operation> <destination>``: a child of the
    trace context already in ``headers`` when there is one (an event written
    to an outbox with :func:`clue.messaging.inject` and sent later stays in
    the trace that caused it), else of the current span. ``headers`` (a new
    dict; the given mapping is not changed) are those given plus the span's
    trace context, the baggage and the request id: send them with the message.
    An exception leaving the block is marked on the span.
    """

    __slots__ = ("_producer", "_token", "body_size", "destination", "headers", "message_id", "span")

    def __init__(
        self,
        producer: Producer,
        destination: str,
        headers: Headers | None,
        message_id: str | None,
        body_size: int | None,
    ) -> None:
        self._producer = producer
        self.destination = destination
        self.headers: dict[str, Any] = dict(headers) if headers else {}
        self.message_id = message_id
        self.body_size = body_size
        self.span: Span = trace.INVALID_SPAN
        self._token: object = None

    def __enter__(self) -> SendScope:
        producer, headers = self._producer, self.headers
        parent = extract(headers)
        span = self.span = producer.tracer.start_span(
            producer.span_name(self.destination), context=parent, kind=SpanKind.PRODUCER
        )
        if span.is_recording():
            attributes: dict[str, AttributeValue] = {  # one call: the SDK locks once per call
                sc.MESSAGING_SYSTEM: producer.system,
                sc.MESSAGING_OPERATION_TYPE: sc.SEND,
                sc.MESSAGING_OPERATION_NAME: producer.operation,
                sc.MESSAGING_DESTINATION_NAME: self.destination,
            }
            if self.message_id is not None:
                attributes[sc.MESSAGING_MESSAGE_ID] = self.message_id
            if self.body_size is not None:
                attributes[sc.MESSAGING_MESSAGE_BODY_SIZE] = self.body_size
            span.set_attributes(attributes)
        context = trace.set_span_in_context(span, parent)
        self._token = attach(context)
        inject(headers)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        try:
            if exc is not None and span.is_recording():
                error = error_type(exc)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{error}: {exc}"))
                span.set_attribute(sc.ERROR_TYPE, error)
        finally:
            if self._token is not None:
                token, self._token = self._token, None
                detach(token)  # type: ignore[arg-type]
            span.end()

    async def __aenter__(self) -> SendScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
