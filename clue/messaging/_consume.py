"""The consume scope: the handling of one message, observed like a request."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import attach, detach, get_current
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from clue import _semconv as sc
from clue import log
from clue._payload import body_payload
from clue.log import STATE, RequestScope, report_unhandled
from clue.messaging._headers import (
    REQUEST_ID_HEADER,
    Headers,
    checked_request_id,
    extract_lowered,
    lowered,
    text_value,
)
from clue.telemetry import bind

# Buckets in seconds, as for HTTP server durations (the conventions advise none).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_MAX_CACHED = 1000  # span names and bound histograms kept, per consumer
_MAX_PAYLOAD = 64 * 1024  # bytes of a body rendered for the debug log (logs truncate further)


class Consumer:
    """Makes the consume scopes of one messaging system (``"nats"``, ``"rabbitmq"``, ...).

    With ``trace=False`` a scope starts no span of its own: it adds the delivery
    count, the settlement and ``error.type`` to the current one (an
    instrumentation's consumer span, which records the exception itself).
    """

    def __init__(
        self,
        system: str,
        *,
        trace: bool = True,
        log_payloads: bool = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.system = system
        self.trace = trace
        self.log_payloads = log_payloads
        self.tracer = _tracer(tracer_provider)
        self.delivery_count = sc.delivery_count(system)
        self.settlement = sc.settlement(system)
        meter = metrics.get_meter("clue.messaging", meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            sc.MESSAGING_PROCESS_DURATION,
            unit="s",
            description="Duration of processing operation.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self._names: dict[str, str] = {}
        self._records: dict[tuple[str, str | None, str | None], Callable[[float], None]] = {}

    def scope(
        self,
        destination: str,
        headers: Headers | None = None,
        *,
        message_id: str | None = None,
        attempt: int | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        group: str | None = None,
    ) -> ConsumeScope:
        """The scope handling one message received from ``destination`` (see ConsumeScope)."""
        return ConsumeScope(
            self, destination, lowered(headers), message_id, attempt, body, content_type, group
        )

    def span_name(self, destination: str) -> str:
        name = self._names.get(destination)
        if name is None:
            name = f"{sc.PROCESS} {destination}"
            if len(self._names) < _MAX_CACHED:
                self._names[destination] = name
        return name

    def record(
        self, destination: str, group: str | None, error: str | None, seconds: float
    ) -> None:
        key = (destination, group, error)
        record = self._records.get(key)
        if record is None:
            attributes: dict[str, AttributeValue] = {
                sc.MESSAGING_SYSTEM: self.system,
                sc.MESSAGING_OPERATION_NAME: sc.PROCESS,
                sc.MESSAGING_DESTINATION_NAME: destination,
            }
            if group:
                attributes[sc.MESSAGING_CONSUMER_GROUP_NAME] = group
            if error:
                attributes[sc.ERROR_TYPE] = error
            record = bind(self._duration, attributes)
            if len(self._records) < _MAX_CACHED:
                self._records[key] = record
        record(seconds)


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer("clue.messaging", tracer_provider=provider)


class ConsumeScope:
    """The handling of one message, as a context manager (``with`` or ``async with``).

    Inside: a CONSUMER span ``process <destination>``, child of the producer's
    span when the headers carry its trace context (else a new trace); a log
    request scope whose entries carry ``subject``, ``message_id``, ``attempt``
    and ``request_id`` (the producer's, or a new one), with info and warn
    entries buffered unless the trace is sampled; the payload logged at debug
    level while debug is on. On the way out: an exception is logged with the
    buffered entries before it and marked on the span (``error.type``);
    the settlement (:meth:`settle`) goes on the span; the time taken goes to
    the ``messaging.process.duration`` histogram.
    """

    __slots__ = (
        "_consumer",
        "_log",
        "_started",
        "_token",
        "attempt",
        "body",
        "content_type",
        "destination",
        "group",
        "headers",
        "message_id",
        "outcome",
        "span",
    )

    def __init__(
        self,
        consumer: Consumer,
        destination: str,
        headers: dict[str, Any],
        message_id: str | None,
        attempt: int | None,
        body: bytes | None,
        content_type: str | None,
        group: str | None,
    ) -> None:
        self._consumer = consumer
        self.destination = destination
        self.headers = headers
        self.message_id = message_id
        self.attempt = attempt
        self.body = body
        self.content_type = content_type
        self.group = group
        self.outcome: str | None = None
        self.span: Span = trace.INVALID_SPAN
        self._token: object = None
        self._log: RequestScope | None = None
        self._started = 0.0

    def settle(self, outcome: str) -> None:
        """Note how the message was settled (``ack``, ``nak``, ``term``...): it goes on the span."""
        self.outcome = outcome

    def __enter__(self) -> ConsumeScope:
        self._started = time.perf_counter()
        consumer, destination = self._consumer, self.destination
        headers = self.headers
        if consumer.trace:
            parent = extract_lowered(headers, get_current())
            span = consumer.tracer.start_span(
                consumer.span_name(destination), context=parent, kind=SpanKind.CONSUMER
            )
            if span.is_recording():
                self._describe(span)
            self._token = attach(trace.set_span_in_context(span, parent))
            self.span = span
        else:  # annotate the instrumentation's span: what it lacks only
            span = self.span = trace.get_current_span()
            if self.attempt is not None and span.is_recording():
                span.set_attribute(consumer.delivery_count, self.attempt)
        fields: dict[str, Any] = {"subject": destination}
        if self.message_id is not None:
            fields["message_id"] = self.message_id
        if self.attempt is not None:
            fields["attempt"] = self.attempt
        fields["request_id"] = checked_request_id(text_value(headers.get(REQUEST_ID_HEADER)))
        scope = self._log = RequestScope(fields, STATE.buffer_size)
        scope.__enter__()
        if consumer.log_payloads and STATE.debug and self.body is not None:
            log.debug("message payload", payload=_payload(self.body, self.content_type))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        consumer, span = self._consumer, self.span
        error: str | None = None
        try:
            if exc is not None and isinstance(exc, Exception):  # not a cancellation
                error = error_type(exc)
                report_unhandled(exc)
                if span.is_recording():
                    if consumer.trace:  # an instrumentation records it on its own span
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, f"{error}: {exc}"))
                    span.set_attribute(sc.ERROR_TYPE, error)
            if self.outcome is not None and span.is_recording():
                span.set_attribute(consumer.settlement, self.outcome)
            if self._log is not None:
                self._log.__exit__(None, None, None)
                self._log = None
        finally:
            if self._token is not None:
                token, self._token = self._token, None
                detach(token)  # type: ignore[arg-type]
                span.end()
            elapsed = time.perf_counter() - self._started
            consumer.record(self.destination, self.group, error, elapsed)

    async def __aenter__(self) -> ConsumeScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _describe(self, span: Span) -> None:
        consumer = self._consumer
        attributes: dict[str, AttributeValue] = {  # one call: the SDK locks once per call
            sc.MESSAGING_SYSTEM: consumer.system,
            sc.MESSAGING_OPERATION_TYPE: sc.PROCESS,
            sc.MESSAGING_OPERATION_NAME: sc.PROCESS,
            sc.MESSAGING_DESTINATION_NAME: self.destination,
        }
        if self.message_id is not None:
            attributes[sc.MESSAGING_MESSAGE_ID] = self.message_id
        if self.attempt is not None:
            attributes[consumer.delivery_count] = self.attempt
        if self.group:
            attributes[sc.MESSAGING_CONSUMER_GROUP_NAME] = self.group
        if self.body is not None:
            attributes[sc.MESSAGING_MESSAGE_BODY_SIZE] = len(self.body)
        span.set_attributes(attributes)


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its class's qualified name."""
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _payload(body: bytes, content_type: str | None) -> str:
    """A message body for the debug log: text and JSON as such (masked), else its size."""
    kept = body[:_MAX_PAYLOAD]
    if content_type:
        text = body_payload(kept, content_type)
        if text is not None:
            return text
    else:
        try:
            kept.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:  # JSON when it parses, else the text
            text = body_payload(kept, "application/json")
            if text is not None:
                return text
    return f"<{len(body)} bytes>"


def handler(
    scope_of: Callable[[Any], ConsumeScope],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a message handler (``def`` or ``async def``) so that it runs in the scope
    ``scope_of(message)`` returns; the message is the handler's last positional argument."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with scope_of(args[-1]):
                    return await function(*args, **kwargs)

            return run_async

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with scope_of(args[-1]):
                return function(*args, **kwargs)

        return run

    return decorate
