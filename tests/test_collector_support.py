"""Helpers for the collector tests: the collector as a real subprocess, and an
instrumented program (plain OpenTelemetry SDK) that sends traces, metrics and
logs to it. This module holds no tests itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import IO, Any

import httpx

READY = re.compile(r"OTLP gRPC on [^:]+:(\d+), OTLP HTTP on [^:]+:(\d+), UI on (http://\S+/)")


class CollectorProcess:
    """``python -m clue.collector`` on free ports, stopped with SIGTERM."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clue.collector",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--ui-port",
                "0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                break
            lines.append(line)
            match = READY.search(line)
            if match:
                self.grpc_port, self.http_port = int(match.group(1)), int(match.group(2))
                self.ui = match.group(3).rstrip("/")
                return
        self.proc.kill()
        raise RuntimeError("collector did not start:\n" + "".join(lines))

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.ui + path, params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            assert self.proc.stdout is not None
            self.proc.stdout.close()


EMITTER = textwrap.dedent(
    '''
    """An instrumented program: one request handled, one downstream call made."""
    import logging
    import sys
    import time

    from opentelemetry import propagate, trace
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    service, protocol, endpoint, parent, fail = sys.argv[1:6]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw = {"endpoint": endpoint, "insecure": True}
        spans, metrics, logs = (OTLPSpanExporter(**kw), OTLPMetricExporter(**kw),
                                OTLPLogExporter(**kw))
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        spans = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
        metrics = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics")
        logs = OTLPLogExporter(endpoint=endpoint + "/v1/logs")

    resource = Resource.create({"service.name": service, "deployment.environment": "test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[PeriodicExportingMetricReader(metrics, export_interval_millis=200)],
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    log = logging.getLogger(service)
    log.addHandler(LoggingHandler(logger_provider=logger_provider))
    log.setLevel(logging.INFO)

    tracer = tracer_provider.get_tracer("emitter")
    meter = meter_provider.get_meter("emitter")
    requests = meter.create_counter("app.requests", unit="1", description="requests handled")
    latency = meter.create_histogram("app.latency", unit="ms", description="request latency")
    context = propagate.extract({"traceparent": parent}) if parent != "-" else None
    with tracer.start_as_current_span(
        f"handle {service}", context=context, kind=SpanKind.SERVER,
        attributes={"http.route": f"/{service}", "app.fail": fail == "fail"},
    ) as server:
        log.info("request received in %s", service, extra={"app.step": "start"})
        with tracer.start_as_current_span("load data", attributes={"rows": 3}) as inner:
            inner.add_event("cache miss", {"key": "cart:42"})
            time.sleep(0.01)
        with tracer.start_as_current_span("call downstream", kind=SpanKind.CLIENT):
            carrier = {}
            propagate.inject(carrier)
            print(carrier["traceparent"], flush=True)
        if fail == "fail":
            server.set_status(Status(StatusCode.ERROR, "card declined"))
            log.error("payment failed in %s", service)
    for ms in (5, 10, 20, 40):
        requests.add(1, {"route": f"/{service}"})
        latency.record(ms, {"route": f"/{service}"})
        time.sleep(0.25)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    '''
)


def run_emitter(
    tmp: Path, service: str, protocol: str, endpoint: str, parent: str = "-", fail: bool = False
) -> str:
    """Run the instrumented program (exporting gzip-compressed); return the traceparent
    of its outgoing call."""
    script = tmp / "emitter.py"
    script.write_text(EMITTER)
    env = {**os.environ, "OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            service,
            protocol,
            endpoint,
            parent,
            "fail" if fail else "ok",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    """Poll *check* until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)
