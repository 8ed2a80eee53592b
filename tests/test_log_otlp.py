"""OTLP export of clue.log entries, correlated with the span current when they were made."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from clue import log
from tests.otlp_receiver import OTLPReceiver
from tests.test_log_fixtures import Captured, captured

__all__ = ["captured"]


@pytest.fixture
def exported(captured: Captured) -> Iterator[InMemoryLogRecordExporter]:
    """Entries written by clue.log also go to an in-memory OTLP log exporter."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log.set_logger_provider(provider)
    yield exporter
    log.set_logger_provider(None)
    provider.shutdown()


def records(exporter: InMemoryLogRecordExporter) -> list[ReadableLogRecord]:
    return list(exporter.get_finished_logs())


def test_written_entries_are_exported_with_span_and_severity(
    exported: InMemoryLogRecordExporter,
) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("checkout") as span, log.context(order="o-1"):
        log.warn("slow payment", ms=1200, password="hunter2", card={"credit_card_cvv": "123"})
    (record,) = records(exported)
    lr = record.log_record
    ctx = span.get_span_context()
    assert (lr.trace_id, lr.span_id) == (ctx.trace_id, ctx.span_id)
    assert (lr.severity_number, lr.severity_text, lr.body) == (
        SeverityNumber.WARN,
        "WARN",
        "slow payment",
    )
    attributes = dict(lr.attributes or {})
    assert attributes == {
        "order": "o-1",
        "ms": 1200,
        "password": "[REDACTED]",
        "card": '{"credit_card_cvv": "[REDACTED]"}',
    }


def test_errors_are_exported_with_exception_attributes(
    exported: InMemoryLogRecordExporter,
) -> None:
    try:
        raise TimeoutError("payment gateway")
    except TimeoutError as exc:
        log.error("charge failed", exc, traceback=True)
    lr = records(exported)[0].log_record
    attributes = dict(lr.attributes or {})
    assert lr.severity_number == SeverityNumber.ERROR
    assert attributes["exception.type"] == "TimeoutError"
    assert attributes["exception.message"] == "payment gateway"
    assert "Traceback" in str(attributes["exception.stacktrace"])


def test_flushed_entries_keep_their_span_and_time(exported: InMemoryLogRecordExporter) -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with log.request_scope():
        with tracer.start_as_current_span("lookup") as span:
            before = time.time_ns()
            log.info("cache miss")
        assert records(exported) == []
        time.sleep(0.01)
        log.error("failed")  # outside the span, later
    buffered, failed = (r.log_record for r in records(exported))
    assert buffered.span_id == span.get_span_context().span_id
    assert buffered.trace_id == span.get_span_context().trace_id
    assert buffered.timestamp is not None and before <= buffered.timestamp < failed.timestamp - 5e6
    assert failed.span_id == 0


def test_dropped_buffers_are_not_exported(exported: InMemoryLogRecordExporter) -> None:
    with log.request_scope():
        log.info("all good")
    assert records(exported) == []
    log.set_logger_provider(None)
    log.info("not exported")
    assert records(exported) == []


def test_sdk_records_are_written_but_not_fed_back_to_the_exporter(
    exported: InMemoryLogRecordExporter, captured: Captured
) -> None:
    log.configure(outputs=[log.Output(captured.stream)])
    log.set_logger_provider(exported_provider := LoggerProvider())
    exported_provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    logging.getLogger("opentelemetry.sdk._logs").warning("exporter failed")
    logging.getLogger("app").warning("app warning")
    assert [r.log_record.body for r in records(exported)] == ["app warning"]
    assert captured.msgs() == ["exporter failed", "app warning"]


def test_real_otlp_grpc_export_of_app_and_stdlib_entries(captured: Captured) -> None:
    receiver = OTLPReceiver()
    receiver.start()
    provider = LoggerProvider()
    exporter = OTLPLogExporter(endpoint=receiver.endpoint, insecure=True)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    log.configure(outputs=[log.Output(captured.stream)])
    log.set_logger_provider(provider)
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    try:
        with tracer.start_as_current_span("request") as span:
            log.info("from clue", token="t-1")
            logging.getLogger("library").warning("from stdlib")
        provider.force_flush()
        got = receiver.wait_for(lambda r: r.logs() if len(r.logs()) >= 2 else None)
    finally:
        log.set_logger_provider(None)
        provider.shutdown()
        receiver.stop()
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert [(r.body, r.severity_text, r.trace_id) for r in got] == [
        ("from clue", "INFO", trace_id),
        ("from stdlib", "WARN", trace_id),
    ]
    assert got[0].attributes["token"] == "[REDACTED]"
    assert got[1].attributes["logger"] == "library"
    assert [e["msg"] for e in captured.entries()] == ["from clue", "from stdlib"]
