"""clue.testing and its pytest plugin: captures through the doors a service uses (a real
HTTP request, a real gRPC call), restoring what was there before, and reset()."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import clue
import clue.grpc
from clue import debug, log, telemetry
from clue.asgi import ClueMiddleware
from clue.log.stdlib import ClueHandler
from clue.testing import (
    CapturedLogs,
    CapturedMetrics,
    CapturedSpans,
    capture_logs,
    capture_metrics,
    capture_spans,
    reset,
)
from tests.test_asgi import serve_app
from tests.test_grpc import echo_handlers, stub

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def trace_id(span: object) -> str:
    return format(span.context.trace_id, "032x")  # type: ignore[attr-defined]


async def item(request: Request) -> Response:
    log.info("handling", item=request.path_params["item_id"], token="s3cret")
    return JSONResponse({"id": request.path_params["item_id"]})


async def test_an_http_request_is_captured_through_the_global_providers(
    clue_reset: None,
    clue_logs: CapturedLogs,
    clue_spans: CapturedSpans,
    clue_metrics: CapturedMetrics,
) -> None:
    app = ClueMiddleware(Starlette(routes=[Route("/items/{item_id}", item)]))  # no providers
    async with serve_app(app) as client:
        response = await client.get(
            "/items/42", headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        )
    assert response.status_code == 200
    span = clue_spans.one("GET /items/{item_id}", {"http.route": "/items/{item_id}"})
    assert span.kind is SpanKind.SERVER and trace_id(span) == TRACE_ID
    [entry] = clue_logs.where(msg="handling")
    assert entry["level"] == "info" and entry["item"] == "42"
    assert entry["token"] == "[REDACTED]"  # as it would be written
    assert entry["request_id"] == response.headers["x-request-id"]  # the request scope's field
    assert (entry["trace_id"], entry["span_id"]) == (TRACE_ID, format(span.context.span_id, "016x"))
    attributes = {"http.route": "/items/{item_id}", "http.response.status_code": 200}
    point = clue_metrics.histogram("http.server.request.duration", attributes)
    assert point.count == 1 and point.sum > 0


def test_a_grpc_call_is_captured_through_the_global_providers(
    clue_reset: None,
    clue_logs: CapturedLogs,
    clue_spans: CapturedSpans,
    clue_metrics: CapturedMetrics,
) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(2), interceptors=clue.grpc.server_interceptors()
    )
    server.add_generic_rpc_handlers([echo_handlers(aio=False)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            channel = grpc.intercept_channel(plain, *clue.grpc.client_interceptors())
            assert stub(channel, "Unary")(StringValue(value="hi")).value == "hi"
    finally:
        server.stop(None)
    server_span = clue_spans.one("clue.test.Echo/Unary", {"rpc.method": "Unary"}, SpanKind.SERVER)
    client_span = clue_spans.one("clue.test.Echo/Unary", kind=SpanKind.CLIENT)
    assert server_span.parent is not None
    assert server_span.parent.span_id == client_span.context.span_id
    [entry] = clue_logs.where(msg="handling", value="hi")
    assert entry["trace_id"] == trace_id(server_span)
    point = clue_metrics.histogram("rpc.server.duration", {"rpc.method": "Unary"})
    assert point.count == 1


def test_capture_logs_reads_waiting_entries_and_gives_the_outputs_back(clue_reset: None) -> None:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, "json")], write_delay=30, stdlib=False)
    log.info("before")
    with capture_logs() as logs:
        log.info("waits for the delay")
        assert logs.msgs() == ["waits for the delay"]  # read: written first
        with capture_logs() as inner:
            log.warn("inner")
        log.info("outer again")
    log.info("after")
    log.sync()
    assert inner.msgs() == ["inner"] and inner[0]["level"] == "warn"
    assert logs.msgs() == ["waits for the delay", "outer again"]
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "before",
        "after",
    ]
    logs.clear()
    assert len(logs) == 0 and logs.where(msg="after") == []


def test_configure_inside_a_capture_replaces_it_for_good(clue_reset: None) -> None:
    stream = io.StringIO()
    with capture_logs() as logs:
        log.info("captured")
        log.configure(outputs=[log.Output(stream, "json")], stdlib=False)
        log.info("configured")
    log.info("still configured")
    assert logs.msgs() == ["captured"]
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "configured",
        "still configured",
    ]


def test_request_scope_fields_and_exceptions_are_captured(clue_logs: CapturedLogs) -> None:
    with log.request_scope(request_id="r-1"), log.context(user="ana"):
        try:
            raise KeyError("sku")
        except KeyError as exc:
            log.error("lookup failed", exc)
    [entry] = clue_logs
    assert (entry["request_id"], entry["user"], entry["error_type"]) == ("r-1", "ana", "KeyError")


def test_only_what_is_written_is_captured(clue_reset: None, clue_logs: CapturedLogs) -> None:
    with log.request_scope(request_id="ok"):
        log.info("buffered, then dropped")  # no sampled span: kept for a failure only
        log.debug("debug is off")
    with pytest.raises(RuntimeError), log.request_scope(request_id="failed"):
        log.info("written with the failure")
        raise RuntimeError("boom")
    assert clue_logs.msgs() == ["written with the failure"]
    assert clue_logs[0]["request_id"] == "failed"


def test_capture_spans_samples_as_told_and_gives_the_provider_back(clue_reset: None) -> None:
    exporter = InMemorySpanExporter()
    clue.configure("svc", span_exporter=exporter, exporter="none", sampler=ALWAYS_OFF)
    tracer = telemetry.tracer("tests.testing")
    with capture_spans() as spans:
        tracer.start_span("every new trace sampled").end()
        with capture_spans(sampler=ALWAYS_OFF) as none:
            tracer.start_span("dropped").end()
        spans.provider.get_tracer("x").start_span("by the provider").end()  # for layers
    assert spans.names() == ["every new trace sampled", "by the provider"] and len(none) == 0
    tracer.start_span("under the configured sampler").end()
    assert telemetry.force_flush() and exporter.get_finished_spans() == ()
    bad = "sampler must be an OpenTelemetry Sampler, got str"
    with pytest.raises(ValueError, match=bad), capture_spans(sampler="always_on"):  # type: ignore[arg-type]
        pass
    with pytest.raises(
        AssertionError, match=r"one span 'nope' that matches, found 0 \(seen: \['every"
    ):
        spans.one("nope")


def test_capture_metrics_reads_counters_and_histograms_and_gives_the_provider_back(
    clue_reset: None,
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    configured = InMemoryMetricReader()
    clue.configure("svc", metric_exporter=configured, exporter="none")
    meter = telemetry.meter("tests.testing")
    orders = meter.create_counter("orders")
    latency = meter.create_histogram("latency", unit="ms")
    with capture_metrics() as captured:
        orders.add(2, {"shop": "a"})
        orders.add(1, {"shop": "b"})
        latency.record(5.0, {"shop": "a"})
        assert captured.names(meter="tests.testing") == ["latency", "orders"]
        assert captured.value("orders", {"shop": "a"}) == 2
        assert captured.histogram("latency").sum == 5.0
        assert len(captured.points("orders")) == 2
        with pytest.raises(AssertionError, match=r"one metric 'orders' that matches, found 2"):
            captured.value("orders")
        with pytest.raises(AssertionError, match="not a histogram"):
            captured.histogram("orders", {"shop": "b"})
    orders.add(7, {"shop": "a"})
    latency.record(1.0, {"shop": "a"})
    data = configured.get_metrics_data()
    assert data is not None
    found = {
        m.name: [p.count if m.name == "latency" else p.value for p in m.data.data_points]  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if sm.scope.name == "tests.testing"  # other tests' observable instruments report too
        for m in sm.metrics
    }
    assert found == {"orders": [7], "latency": [1]}  # the capture's measurements are not here


def test_reset_undoes_logging_debug_and_telemetry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, "logfmt")], sensitive_keys={"user"}, stdlib=True)
    debug.enable(ttl=600)
    exporter = InMemorySpanExporter()
    clue.configure("svc", span_exporter=exporter, exporter="none")
    reset()
    assert debug.status() == debug.DebugStatus(False, None)
    root = logging.getLogger()
    assert not any(isinstance(h, ClueHandler) for h in root.handlers)
    assert root.level == logging.WARNING
    assert not telemetry.tracer("tests.testing").start_span("after").is_recording()
    log.info("after", user="ana", password="pw")
    log.debug("not written")
    [line] = capsys.readouterr().out.splitlines()
    entry = json.loads(line)  # stdout, and not a TTY here: JSON
    assert (entry["msg"], entry["user"], entry["password"]) == ("after", "ana", "[REDACTED]")
    assert stream.getvalue() == "" and exporter.get_finished_spans() == ()


def test_a_foreign_global_provider_is_refused_with_a_clear_error() -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from clue.testing import capture_spans
        trace.set_tracer_provider(TracerProvider())
        try:
            with capture_spans():
                pass
        except RuntimeError as error:
            print(error)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "global provider is <opentelemetry.sdk.trace.TracerProvider" in out
    assert "set before clue's" in out


def test_the_plugin_offers_the_fixtures_to_any_suite(tmp_path: Path) -> None:
    (tmp_path / "test_service.py").write_text(
        textwrap.dedent(
            """
            import logging
            from opentelemetry import trace
            from clue import log, telemetry
            from clue.log.stdlib import ClueHandler

            def test_untouched_without_the_fixtures():
                provider = trace.get_tracer_provider()
                assert not isinstance(provider, type(telemetry.bootstrap.TRACER_PROVIDER))
                assert not any(isinstance(h, ClueHandler) for h in logging.getLogger().handlers)

            def test_with_them(clue_logs, clue_spans, clue_metrics, clue_reset):  # reset first
                with telemetry.tracer("svc").start_as_current_span("work"):
                    log.info("done", n=1)
                telemetry.meter("svc").create_counter("jobs").add(1)
                assert clue_logs.where(msg="done")[0]["trace_id"] == format(
                    clue_spans.one("work").context.trace_id, "032x"
                )
                assert clue_metrics.value("jobs") == 1
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_service.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
