"""A collector that goes down and comes back: the service never waits, export resumes."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import clue
from clue import log, telemetry
from tests.otlp_receiver import OTLPReceiver


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "CLUE_")):
            monkeypatch.delenv(key)
    yield
    clue.shutdown()


def _reports(stream: io.StringIO, text: str, ending: str) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [
        e
        for e in entries
        if e.get("logger") == "clue.telemetry"
        and str(e["msg"]).startswith(text)
        and str(e["msg"]).endswith(ending)
    ]


def test_collector_down_then_back(monkeypatch: pytest.MonkeyPatch) -> None:
    output = io.StringIO()
    log.configure(outputs=[log.Output(output, "json")])
    receiver = OTLPReceiver()
    port = receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export every 50 ms
        monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
        clue.configure("resilient", sampler=ALWAYS_ON, export_timeout=0.5)
        tracer = telemetry.tracer("resilience")
        with tracer.start_as_current_span("before-outage"):
            log.error("before the outage")
        receiver.wait_for(lambda r: r.spans() and r.logs())
        before = telemetry.stats()

        receiver.stop()
        returned = 0
        for chunk in range(5):  # the request path keeps working while exports fail
            failed_so_far = _failed_spans()
            for i in range(60):
                with tracer.start_as_current_span(f"during-outage-{chunk}-{i}"):
                    log.error("during the outage", i=i)
                returned += 1
            _wait_until(lambda n=failed_so_far: _failed_spans() > n)  # this chunk failed
        assert returned == 300
        assert _failed_spans() > before["traces"]["failed"]
        failure_reports = _reports(output, "exporting traces", "failed; retrying in the background")
        assert len(failure_reports) == 1  # five failed exports, one report per interval
        assert int(failure_reports[0]["failed_batches"]) == 1  # type: ignore[call-overload]

        receiver.start(port)
        with tracer.start_as_current_span("after-restart"):
            log.error("after the restart")
        receiver.wait_for(lambda r: any(s.name == "after-restart" for s in r.spans()), 20)
        receiver.wait_for(lambda r: any(x.body == "after the restart" for x in r.logs()), 20)
        _wait_until(lambda: _reports(output, "exporting traces", "works again"))
        assert len(_reports(output, "exporting traces", "failed; retrying in the background")) == 1
        assert telemetry.stats()["traces"]["failed"] > before["traces"]["failed"]
    finally:
        clue.shutdown()
        receiver.stop()
        log.configure(outputs=[log.Output(io.StringIO(), "json")])


def test_shutdown_does_not_wait_for_a_collector_known_to_be_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = OTLPReceiver()
    receiver.start()
    receiver.stop()  # nothing listens on the port any more
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    clue.configure("doomed", sampler=ALWAYS_ON, export_timeout=0.5, max_queue_size=8)
    before = telemetry.stats()["traces"]
    tracer = telemetry.tracer("doomed")
    with tracer.start_as_current_span("first"):
        pass
    _wait_until(lambda: telemetry.stats()["traces"]["failed"] > before["failed"])
    for i in range(20):
        with tracer.start_as_current_span(f"left-over-{i}"):
            pass
    clue.shutdown()  # returns: the left-overs are dropped and counted, not retried
    after = telemetry.stats()["traces"]
    lost = (after["failed"] - before["failed"]) + (after["dropped"] - before["dropped"])
    assert lost == 21
    assert after["exported"] == before["exported"]


def _failed_spans() -> int:
    return telemetry.stats()["traces"]["failed"]


def _wait_until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll ``condition`` until it is truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_slow_collector_fails_exports_not_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = OTLPReceiver(delay=2.0)  # answers long after the export timeout
    receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        clue.configure("patient", sampler=ALWAYS_ON, export_timeout=0.3)
        before = _failed_spans()
        tracer = telemetry.tracer("slow")
        for i in range(100):  # all return while the collector sits on the export
            with tracer.start_as_current_span(f"slow-{i}"):
                pass
        _wait_until(lambda: _failed_spans() > before)  # deadline exceeded, counted

        receiver.delay = 0.0  # the collector recovers
        with tracer.start_as_current_span("fast-again"):
            pass
        receiver.wait_for(lambda r: any(s.name == "fast-again" for s in r.spans()), 20)
    finally:
        clue.shutdown()
        receiver.stop()
