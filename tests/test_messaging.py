"""clue.messaging, the broker-neutral core, through its own door: headers a producer writes
with ``inject`` handled in ``Consumer.scope`` (sync and async, context manager and decorator).

The brokers' own doors (a real NATS, RabbitMQ) are in tests/test_nats*.py and
tests/test_rabbitmq.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import attach, detach
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from clue import log, messaging
from tests.conftest import Lines

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Telemetry:
    """In-memory spans and metrics, sampling everything or nothing."""

    def __init__(self, sampled: bool = True) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(**({} if sampled else {"sampler": ALWAYS_OFF}))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def durations(self) -> list[tuple[dict[str, Any], int]]:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "messaging.process.duration":
                        assert metric.unit == "s"
                        found += [(dict(p.attributes), p.count) for p in metric.data.data_points]
        return found

    def consumer(self, **options: Any) -> messaging.Consumer:
        return messaging.Consumer(
            "kafka",
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )

    def producer(self) -> messaging.Producer:
        return messaging.Producer("kafka", tracer_provider=self.tracer_provider)


def test_inject_writes_trace_context_baggage_and_request_id() -> None:
    telemetry = Telemetry()
    tracer = telemetry.tracer_provider.get_tracer("test")
    token = attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("order"), log.request_scope(request_id="r-42"):
            headers = messaging.inject({"event-type": "OrderPlaced"})
            span_id = trace.get_current_span().get_span_context().span_id
    finally:
        detach(token)
    assert headers["event-type"] == "OrderPlaced"
    assert headers["traceparent"].split("-")[2] == format(span_id, "016x")
    assert headers["baggage"] == "tenant=acme"
    assert headers["x-request-id"] == "r-42"
    # a request id already in the headers (an outbox's) is kept
    with log.request_scope(request_id="r-43"):
        assert messaging.inject({"x-request-id": "r-1"})["x-request-id"] == "r-1"


def test_send_and_consume_one_trace_parent_and_child(lines: Lines) -> None:
    telemetry = Telemetry()
    producer, consumer = telemetry.producer(), telemetry.consumer()
    with log.request_scope(request_id="req-7"), producer.send("orders", message_id="e-1") as send:
        headers = send.headers
    assert headers["x-request-id"] == "req-7"
    with consumer.scope("orders", headers, message_id="e-1", attempt=1, group="mailer") as scope:
        log.info("handling")
        scope.settle("ack")
    sent, processed = telemetry.finished()
    assert (sent.name, sent.kind) == ("send orders", SpanKind.PRODUCER)
    assert (processed.name, processed.kind) == ("process orders", SpanKind.CONSUMER)
    assert processed.context.trace_id == sent.context.trace_id
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id
    attributes = dict(processed.attributes or {})
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == "orders"
    assert attributes["messaging.message.id"] == "e-1"
    assert attributes["messaging.consumer.group.name"] == "mailer"
    assert attributes["messaging.kafka.message.delivery_count"] == 1
    assert attributes["messaging.kafka.message.settlement"] == "ack"
    [entry] = lines.entries("handling")  # sampled: written at once
    assert entry["subject"] == "orders" and entry["message_id"] == "e-1"
    assert entry["attempt"] == 1 and entry["request_id"] == "req-7"
    [(point, count)] = telemetry.durations()
    assert count == 1
    assert point == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "mailer",
    }


def test_headers_with_a_trace_context_make_the_producer_span_continue_it() -> None:
    """An event written to an outbox with its trace context is sent in that trace later."""
    telemetry = Telemetry()
    outbox_row = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "r-9"}
    with telemetry.producer().send("orders", outbox_row) as send:
        pass
    [span] = telemetry.finished()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert send.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
    assert send.headers["x-request-id"] == "r-9"
    assert outbox_row["traceparent"].endswith(f"{PARENT_ID}-01")  # the caller's dict unchanged


def test_unsampled_info_entries_dropped_on_success_written_in_order_on_failure(
    lines: Lines,
) -> None:
    telemetry = Telemetry(sampled=False)
    consumer = telemetry.consumer()
    with consumer.scope("orders", {}, message_id="ok", attempt=1):
        log.info("first")
        log.warn("second")
    assert lines.entries() == []

    with pytest.raises(LookupError), consumer.scope("orders", {}, message_id="bad", attempt=3):
        log.info("first")
        log.warn("second")
        raise LookupError("no such order")
    entries = lines.entries()
    assert [e["msg"] for e in entries] == ["first", "second", "unhandled exception"]
    assert all(e["message_id"] == "bad" and e["attempt"] == 3 for e in entries)
    assert entries[2]["level"] == "error" and entries[2]["error_type"] == "LookupError"
    points = dict((p.get("error.type"), n) for p, n in telemetry.durations())
    assert points == {None: 1, "LookupError": 1}


def test_failure_marked_on_the_span(lines: Lines) -> None:
    telemetry = Telemetry()
    with pytest.raises(ValueError), telemetry.consumer().scope("orders"):
        raise ValueError("bad total")
    [span] = telemetry.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad total"
    assert dict(span.attributes or {})["error.type"] == "ValueError"
    assert [e.name for e in span.events] == ["exception"]


async def test_async_scope_and_decorators(lines: Lines) -> None:
    telemetry = Telemetry()
    consumer = telemetry.consumer()
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}

    def scope_of(event: dict[str, Any]) -> messaging.ConsumeScope:
        return consumer.scope(event["topic"], event["headers"])

    @messaging.handler(scope_of)
    async def handle_async(event: dict[str, Any]) -> str:
        log.info("async handler")
        return "done"

    class Mailer:
        @messaging.handler(scope_of)
        def handle(self, event: dict[str, Any]) -> str:
            log.info("sync method")
            return "sent"

    async with consumer.scope("orders", headers):
        log.info("async with")
    assert await handle_async({"topic": "a", "headers": headers}) == "done"
    assert Mailer().handle({"topic": "b", "headers": headers}) == "sent"
    assert [s.name for s in telemetry.finished()] == ["process orders", "process a", "process b"]
    assert all(format(s.context.trace_id, "032x") == TRACE_ID for s in telemetry.finished())
    assert [e["subject"] for e in lines.entries()] == ["orders", "a", "b"]


def test_debug_logs_the_payload_masked(lines: Lines) -> None:
    consumer = Telemetry().consumer()
    log.set_debug(True)
    body = b'{"order":"o-1","card":{"number":"4111","password":"hunter2"}}'
    with consumer.scope("orders", body=body):
        pass
    with consumer.scope("orders", body=b"\x00\xff binary"):
        pass
    with consumer.scope("orders", body=b"<p>hi</p>", content_type="text/html"):
        pass
    payloads = [e["payload"] for e in lines.entries("message payload")]
    assert '"order":"o-1"' in payloads[0] and "hunter2" not in payloads[0]
    assert payloads[1:] == ["<9 bytes>", "<p>hi</p>"]
    log.set_debug(False)
    with consumer.scope("orders", body=body):
        pass
    assert len(lines.entries("message payload")) == 3


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "garbage"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids: invalid
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01" + "x" * 1_000_000},
        {"traceparent": b"\xff\xfe\xfd"},
        {"traceparent": 42, "baggage": object()},
        {"TraceParent": "0" * 10_000, "BAGGAGE": "k=" + "v" * 1_000_000},
        {b"traceparent": b"bytes key"},
        {"x-request-id": "has spaces and <html>"},
        {"x-request-id": "r" * 65},
        {"x-request-id": b"\xc3\x28"},
    ],
    ids=[
        "garbage",
        "zero-ids",
        "1MB",
        "non-utf8",
        "not-text",
        "oversized-other-case",
        "bytes-key",
        "bad-request-id",
        "long-request-id",
        "non-utf8-request-id",
    ],
)
def test_bad_headers_start_a_new_trace_and_request_id(
    lines: Lines, headers: dict[Any, Any]
) -> None:
    telemetry = Telemetry()
    with telemetry.consumer().scope("orders", headers):
        log.info("handled")
    [span] = telemetry.finished()
    assert span.parent is None
    [entry] = lines.entries("handled")
    assert len(entry["request_id"]) == 16 and entry["request_id"].isalnum()


def test_header_lookup() -> None:
    headers = {"Traceparent": "a", "X-Request-ID": "r-1", "big": "x" * (messaging.MAX_VALUE + 1)}
    assert messaging.header(headers, "traceparent") == "a"
    assert messaging.request_id(headers) == "r-1"
    assert messaging.header(headers, "big") is None
    assert messaging.header({"k": b"caf\xc3\xa9"}, "k") == "café"
    assert messaging.header(None, "k") is None
    context = messaging.extract({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert format(trace.get_current_span(context).get_span_context().trace_id, "032x") == TRACE_ID
