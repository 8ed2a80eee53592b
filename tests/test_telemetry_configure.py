"""clue.configure(): providers, exporters from the environment, resource, reconfiguration."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import baggage, context, metrics, propagate, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.util._once import Once

import clue
from clue import log, telemetry
from clue.telemetry import AdaptiveSampler
from clue.telemetry.bootstrap import METER_PROVIDER, TRACER_PROVIDER
from clue.telemetry.sdk_logs import RateLimitedForwarder
from tests.otlp_receiver import OTLPReceiver


def force_globals(tracer_provider: Any, meter_provider: Any) -> None:
    """Replace the OpenTelemetry globals, which the API lets a process set only once.

    Test-only: another test module may have installed its own SDK provider
    before these tests, which clue.configure() then (rightly) cannot replace.
    """
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace.set_tracer_provider(tracer_provider)
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics.set_meter_provider(meter_provider)


@contextlib.contextmanager
def clue_globals() -> Iterator[None]:
    """clue's providers as the OpenTelemetry globals for a test; the previous ones after."""
    before = (trace.get_tracer_provider(), metrics.get_meter_provider())
    if before != (TRACER_PROVIDER, METER_PROVIDER):
        force_globals(TRACER_PROVIDER, METER_PROVIDER)
    # The API's proxy providers (no global set yet) cannot be put back: a proxy set as
    # the global becomes its own delegate and deadlocks the next meter lookup.
    proxies = isinstance(before[0], trace.ProxyTracerProvider) or isinstance(
        before[1], metrics_internal._ProxyMeterProvider
    )
    try:
        yield
    finally:
        if before != (TRACER_PROVIDER, METER_PROVIDER) and not proxies:
            force_globals(*before)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "CLUE_")):
            monkeypatch.delenv(key)
    with clue_globals():
        yield
        clue.shutdown()


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, "json")])
    yield stream
    log.configure(outputs=[log.Output(io.StringIO(), "json")])


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    r.start()
    yield r
    clue.shutdown()  # while the receiver still answers
    r.stop()


def _entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _names(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in exporter.get_finished_spans()]


def test_traces_metrics_and_logs_reach_a_real_collector(
    monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver, output: io.StringIO
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    clue.configure("checkout", "1.2.0")
    requests = metrics.get_meter("shop").create_counter("shop.orders")
    with trace.get_tracer("shop").start_as_current_span("place-order") as span:
        log.error("payment declined", order_id="o-1")
        requests.add(2, {"result": "declined"})
    assert telemetry.force_flush()

    spans = receiver.wait_for(lambda r: r.spans())
    assert [s.name for s in spans] == ["place-order"]
    assert spans[0].service_name == "checkout"
    assert spans[0].resource["service.version"] == "1.2.0"
    assert spans[0].trace_id == format(span.get_span_context().trace_id, "032x")
    logs = receiver.wait_for(lambda r: r.logs())
    assert logs[0].body == "payment declined"
    assert (logs[0].trace_id, logs[0].span_id) == (spans[0].trace_id, spans[0].span_id)
    assert logs[0].service_name == "checkout"
    orders = receiver.wait_for(lambda r: [m for m in r.metrics() if m.name == "shop.orders"])
    assert orders[-1].points[0].value == 2
    assert orders[-1].service_name == "checkout"
    [written] = [e for e in _entries(output) if e["msg"] == "payment declined"]
    assert written["trace_id"] == spans[0].trace_id


@pytest.mark.parametrize(
    ("env", "expected_name", "expected_env"),
    [
        ({}, "argument-name", None),
        ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"}, "argument-name", "prod"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=attrs-name"}, "attrs-name", None),
        (
            {
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=attrs-name,deployment.environment=qa",
                "OTEL_SERVICE_NAME": "env-name",
            },
            "env-name",
            "qa",
        ),
    ],
)
def test_resource_merges_the_environment_over_the_arguments(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    expected_name: str,
    expected_env: str | None,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    memory = InMemorySpanExporter()
    clue.configure("argument-name", "3.1.4", span_exporter=memory, sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("s"):
        pass
    telemetry.force_flush()
    attributes = memory.get_finished_spans()[0].resource.attributes
    assert attributes["service.name"] == expected_name
    assert attributes["service.version"] == "3.1.4"
    assert attributes.get("deployment.environment") == expected_env


def test_configuring_twice_exports_everything_once(
    monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver, output: io.StringIO
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    clue.configure("twice", metric_interval=3600)
    clue.configure("twice", metric_interval=3600)
    counter = telemetry.meter("twice").create_counter("twice.calls")
    with telemetry.tracer("twice").start_as_current_span("once"):
        log.error("logged once")
    counter.add(1)
    telemetry.force_flush()
    receiver.wait_for(lambda r: r.spans() and r.logs() and "twice.calls" in r.metric_names())
    telemetry.force_flush()
    assert [s.name for s in receiver.spans()] == ["once"]
    assert [r.body for r in receiver.logs()] == ["logged once"]
    points = [m.points for m in receiver.metrics() if m.name == "twice.calls"]
    assert all(p[0].value == 1 for p in points)
    assert len([e for e in _entries(output) if e["msg"] == "logged once"]) == 1
    handlers = logging.getLogger("opentelemetry").handlers
    assert len([h for h in handlers if isinstance(h, RateLimitedForwarder)]) == 1


def test_reconfiguring_moves_tracers_and_instruments_handed_out_before() -> None:
    tracer = trace.get_tracer("early")
    reader1 = InMemoryMetricReader()
    first = InMemorySpanExporter()
    clue.configure("one", span_exporter=first, metric_exporter=reader1, sampler=ALWAYS_ON)
    counter = metrics.get_meter("early").create_counter("early.calls")
    with tracer.start_as_current_span("to-first"):
        counter.add(1)
    telemetry.force_flush()

    second = InMemorySpanExporter()
    reader2 = InMemoryMetricReader()
    clue.configure("two", span_exporter=second, metric_exporter=reader2, sampler=ALWAYS_ON)
    with tracer.start_as_current_span("to-second"):
        counter.add(5)
    telemetry.force_flush()

    assert _names(first) == ["to-first"]
    assert _names(second) == ["to-second"]
    assert second.get_finished_spans()[0].resource.attributes["service.name"] == "two"
    data = reader2.get_metrics_data()
    assert data is not None
    [point] = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "early.calls"
        for p in m.data.data_points
    ]
    assert point.value == 5  # type: ignore[union-attr]


def test_an_exporter_object_passed_again_is_kept_open() -> None:
    memory = InMemorySpanExporter()
    clue.configure("same", span_exporter=memory, sampler=ALWAYS_ON)
    clue.configure("same", span_exporter=memory, sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("after-second-configure"):
        pass
    telemetry.force_flush()
    assert _names(memory) == ["after-second-configure"]


def test_objects_passed_in_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    memory = InMemorySpanExporter()
    clue.configure("objects", span_exporter=memory, sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("in-memory-only"):
        pass
    telemetry.force_flush()
    assert _names(memory) == ["in-memory-only"]
    assert "in-memory-only" not in capsys.readouterr().out


def test_console_exporter_prints_spans(capsys: pytest.CaptureFixture[str]) -> None:
    clue.configure("console", exporter="console", sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("printed-span"):
        pass
    telemetry.force_flush()
    printed = capsys.readouterr().out
    assert '"name": "printed-span"' in printed


def test_without_endpoint_or_exporter_spans_still_carry_trace_ids() -> None:
    clue.configure("quiet")
    with telemetry.tracer("t").start_as_current_span("local") as span:
        context = span.get_span_context()
    assert context.is_valid and context.trace_flags.sampled
    assert telemetry.force_flush()


def test_default_sampler_is_adaptive_and_env_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clue.configure("sampling", max_sampled_per_second=5)
    delegate = TRACER_PROVIDER.delegate
    assert isinstance(delegate.sampler, AdaptiveSampler)  # type: ignore[attr-defined]

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    memory = InMemorySpanExporter()
    clue.configure("sampling", span_exporter=memory)
    with telemetry.tracer("t").start_as_current_span("not-sampled"):
        pass
    clue.configure("sampling", span_exporter=memory, sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("sampled"):
        pass
    telemetry.force_flush()
    assert _names(memory) == ["sampled"]


def test_w3c_tracecontext_and_baggage_are_propagated() -> None:
    clue.configure("propagation", sampler=ALWAYS_ON)
    carrier: dict[str, str] = {}
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with telemetry.tracer("t").start_as_current_span("outgoing") as span:
            propagate.inject(carrier)
    finally:
        context.detach(token)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert carrier["traceparent"].split("-")[1] == trace_id
    assert carrier["baggage"] == "tenant=acme"
    extracted = propagate.extract(carrier)
    assert trace.get_current_span(extracted).get_span_context().trace_id == int(trace_id, 16)
    assert baggage.get_baggage("tenant", extracted) == "acme"


def test_shutdown_flushes_and_turns_telemetry_off() -> None:
    memory = InMemorySpanExporter()
    clue.configure("bye", span_exporter=memory, sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("last-span"):
        pass
    clue.shutdown()
    assert _names(memory) == ["last-span"]
    with telemetry.tracer("t").start_as_current_span("after") as span:
        assert not span.is_recording()
    clue.shutdown()  # twice is fine


def test_sdk_disabled_sets_nothing_up_and_logging_still_works(
    monkeypatch: pytest.MonkeyPatch, output: io.StringIO
) -> None:
    memory = InMemorySpanExporter()
    clue.configure("on", span_exporter=memory, sampler=ALWAYS_ON)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "TRUE")
    clue.configure("off", span_exporter=memory, sampler=ALWAYS_ON)
    with telemetry.tracer("t").start_as_current_span("nothing") as span:
        assert not span.get_span_context().is_valid
        log.print("still logging")
    assert _names(memory) == []
    assert [e["msg"] for e in _entries(output)] == ["still logging"]


class _BlockingExporter(SpanExporter):
    """Holds every export until released: a collector that does not answer."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.spans: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.spans.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS


def test_a_full_queue_drops_and_counts_instead_of_blocking(output: io.StringIO) -> None:
    before = telemetry.stats()["traces"]
    exporter = _BlockingExporter()
    clue.configure("bounded", span_exporter=exporter, sampler=ALWAYS_ON, max_queue_size=4)
    tracer = telemetry.tracer("t")
    for i in range(40):  # returns although the exporter answers nothing
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    exporter.release.set()
    telemetry.force_flush()
    after = telemetry.stats()["traces"]
    dropped = after["dropped"] - before["dropped"]
    exported = after["exported"] - before["exported"]
    assert dropped >= 40 - 2 * 4  # at most one batch in the exporter and one queue kept
    assert exported == len(exporter.spans)
    # every span is exported or dropped; the SDK checks "queue full" before appending,
    # so a batch popped by its thread in between can make one drop count that was not
    assert 40 <= dropped + exported <= 41
    reports = [e for e in _entries(output) if "export queue is full" in str(e["msg"])]
    assert [(r["msg"], r["level"]) for r in reports] == [
        ("the traces export queue is full: dropping the oldest", "warn")
    ]
    assert reports[0]["dropped"] == 1  # reported at the first drop, then once per interval


def test_sdk_records_go_to_clue_log_once_per_interval(output: io.StringIO) -> None:
    clue.configure("noisy", failure_log_interval=0.3)
    sdk_logger = logging.getLogger("opentelemetry.sdk.fake")
    for i in range(5):
        sdk_logger.warning("queue full, dropping %s", i)
    sdk_logger.info("informational chatter is below the SDK level")
    deadline = time.monotonic() + 0.35
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sdk_logger.warning("queue full, dropping %s", 99)
    written = [e for e in _entries(output) if e.get("logger") == "opentelemetry.sdk.fake"]
    assert [e["msg"] for e in written] == ["queue full, dropping 0", "queue full, dropping 99"]
    assert written[0]["level"] == "warn"
    assert written[1]["suppressed_since_last"] == 4


class _OTLPHTTPCollector(ThreadingHTTPServer):
    """Records the paths and span names of OTLP/HTTP trace requests."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str]]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                names: list[str] = []
                if self.path.endswith("traces") or "custom" in self.path:
                    request = ExportTraceServiceRequest.FromString(body)
                    names = [
                        s.name
                        for rs in request.resource_spans
                        for ss in rs.scope_spans
                        for s in ss.spans
                    ]
                collector.received.append((self.path, names))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def test_otlp_http_protocol_appends_the_signal_path(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = _OTLPHTTPCollector()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url + "/")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
        clue.configure("over-http", sampler=ALWAYS_ON)
        with telemetry.tracer("t").start_as_current_span("http-span"):
            pass
        telemetry.force_flush()
        assert collector.received == [("/v1/traces", ["http-span"])]
    finally:
        collector.close()


def test_per_signal_protocol_and_endpoint_win(
    monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver
) -> None:
    collector = _OTLPHTTPCollector()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)  # gRPC by default
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url + "/custom/path")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        clue.configure("mixed", sampler=ALWAYS_ON)
        with telemetry.tracer("t").start_as_current_span("http-span"):
            log.error("grpc-log")
        telemetry.force_flush()
        assert collector.received == [("/custom/path", ["http-span"])]
        assert [r.body for r in receiver.wait_for(lambda r: r.logs())] == ["grpc-log"]
        assert receiver.spans() == []
    finally:
        collector.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_METRICS_EXPORTER": "otlp,bogus"}, "'bogus' is not a metrics exporter"),
        ({"OTEL_LOGS_EXPORTER": "none,otlp"}, "OTEL_LOGS_EXPORTER.*'none' cannot be combined"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:port"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4317"}, "not a valid endpoint"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"}, "OTEL_EXPORTER_OTLP_ENDPOINT='http://'"),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://:4317"}, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",
            },
            "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' is not a valid endpoint",
        ),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED='maybe' is not a boolean"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=a,novalue"}, "OTEL_RESOURCE_ATTRIBUTES.*'novalue'"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "OTEL_METRIC_EXPORT_INTERVAL='soon'"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes'"),
        ({"CLUE_SHUTDOWN_TIMEOUT": "2s"}, "CLUE_SHUTDOWN_TIMEOUT='2s' must be a positive number"),
        ({"CLUE_SHUTDOWN_TIMEOUT": "-1"}, "CLUE_SHUTDOWN_TIMEOUT='-1' must be a positive number"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG='2'",
        ),
    ],
)
def test_bad_environment_is_a_clear_error_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    memory = InMemorySpanExporter()
    clue.configure("good", span_exporter=memory, sampler=ALWAYS_ON)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message):
        names_exporters = any(key.endswith("_EXPORTER") for key in env)
        clue.configure("bad", exporter=None if names_exporters else "otlp")
    with telemetry.tracer("t").start_as_current_span("still-configured"):
        pass
    telemetry.force_flush()
    assert _names(memory) == ["still-configured"]
    assert memory.get_finished_spans()[0].resource.attributes["service.name"] == "good"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporter": "jaeger"}, "exporter='jaeger': 'jaeger' is not a traces exporter"),
        ({"exporter": 3}, "exporter must be a string"),
        ({"span_exporter": "memory"}, "span_exporter must be an OpenTelemetry SpanExporter"),
        ({"metric_exporter": object()}, "metric_exporter must be an OpenTelemetry"),
        ({"log_exporter": InMemorySpanExporter()}, "log_exporter must be an OpenTelemetry"),
        ({"sampler": "always_on"}, "sampler must be an OpenTelemetry Sampler"),
        ({"max_sampled_per_second": 0}, "max_sampled_per_second must be positive"),
        ({"metric_interval": -1}, "metric_interval must be a positive number"),
        ({"export_timeout": 0}, "export_timeout must be a positive number"),
        ({"failure_log_interval": "30"}, "failure_log_interval must be a positive number"),
        ({"max_queue_size": 0}, "max_queue_size must be a positive integer"),
        ({"shutdown_timeout": 0}, "shutdown_timeout must be a positive number of seconds"),
        ({"shutdown_timeout": "2"}, "shutdown_timeout must be a positive number of seconds"),
        ({"shutdown_timeout": float("inf")}, "shutdown_timeout must be a positive number"),
        ({"service_name": ""}, "service_name must be a non-empty string"),
        ({"service_version": 2}, "service_version must be a non-empty string"),
    ],
)
def test_bad_arguments_are_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clue.configure(**kwargs)  # type: ignore[arg-type]


def test_a_foreign_global_provider_is_reported_and_clue_still_exports(
    output: io.StringIO,
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    import clue.telemetry.bootstrap as bootstrap

    foreign = TracerProvider()
    force_globals(foreign, MeterProvider())
    globals_were_set = bootstrap._globals_set
    bootstrap._globals_set = False  # as in a process where clue.configure() never ran
    try:
        memory = InMemorySpanExporter()
        clue.configure("late", span_exporter=memory, sampler=ALWAYS_ON)
        assert trace.get_tracer_provider() is foreign
        with telemetry.tracer("t").start_as_current_span("through-clue"):
            pass
        telemetry.force_flush()
        assert _names(memory) == ["through-clue"]
        warnings = [e for e in _entries(output) if e.get("logger") == "clue.telemetry"]
        assert [w["msg"] for w in warnings] == [
            "another global tracer provider was set before clue.configure(); clue's is "
            "reachable only through clue.telemetry.tracer()",
            "another global meter provider was set before clue.configure(); clue's is "
            "reachable only through clue.telemetry.meter()",
        ]
    finally:
        bootstrap._globals_set = globals_were_set


def test_observable_instruments_and_meter_attributes_follow_a_reconfigure() -> None:
    from opentelemetry.metrics import CallbackOptions, Observation

    def queue_depth(options: CallbackOptions) -> list[Observation]:
        return [Observation(7, {"queue": "orders"})]

    meter = telemetry.meter("workers")
    assert telemetry.meter("workers") is meter
    assert METER_PROVIDER.get_meter("w", attributes={"tags": ["a", "b"]}) is (
        METER_PROVIDER.get_meter("w", attributes={"tags": ["a", "b"]})
    )
    meter.create_observable_gauge("workers.queue_depth", callbacks=[queue_depth])
    clue.configure("first", metric_exporter=InMemoryMetricReader())
    reader = InMemoryMetricReader()
    clue.configure("second", metric_exporter=reader)
    data = reader.get_metrics_data()
    assert data is not None
    [(resource, points)] = [
        (rm.resource.attributes["service.name"], list(m.data.data_points))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "workers.queue_depth"
    ]
    assert resource == "second"
    assert [(dict(p.attributes or {}), p.value) for p in points] == [  # type: ignore[union-attr]
        ({"queue": "orders"}, 7)
    ]


def _run(script: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_configure_sets_up_logging_with_its_stdlib_bridge_when_nothing_else_did() -> None:
    lines = _run(
        "import logging, clue\n"
        "clue.configure('svc', exporter='none')\n"
        "logging.getLogger('lib').warning('from %s', 'stdlib')\n"
    )
    (entry,) = [json.loads(line) for line in lines]
    assert (entry["msg"], entry["level"], entry["logger"]) == ("from stdlib", "warn", "lib")


def test_configure_keeps_the_logging_set_up_before_it() -> None:
    lines = _run(
        "import logging, clue\n"
        "from clue import log\n"
        "log.configure(format='logfmt', stdlib=False)\n"
        "clue.configure('svc', exporter='none')\n"
        "log.print('kept', n=1)\n"
        "logging.getLogger('lib').warning('not bridged')\n"
    )
    assert len(lines) == 1 and "msg=kept" in lines[0] and "n=1" in lines[0]
