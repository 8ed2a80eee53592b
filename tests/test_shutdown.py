"""Bounded shutdown: ``clue.shutdown()`` and SIGTERM end within one bound whatever the collector.

Every case is a real process with 50 spans, 50 log records and a counter queued
(the batch delays are ten minutes), exporting over OTLP/gRPC or OTLP/HTTP to a
black hole (a server that accepts connections and never answers), a closed port,
a collector failing span exports, or a working collector. The wall time is
measured here, in the parent: a behavioural bound (bound + 1 s), not a benchmark
(``bench/bench_shutdown.py`` is that).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import free_port
from tests.otlp_receiver import OTLPReceiver, attributes, value

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ("grpc", "http/protobuf")
MARGIN = 1.0  # seconds over the bound allowed for process exit on a loaded machine

SERVICE = textwrap.dedent(
    """
    import json, sys, time
    import clue
    from clue import log, telemetry
    from opentelemetry import trace

    mode, bound = sys.argv[1], sys.argv[2]
    log.configure(outputs=[log.Output(sys.stderr)])
    clue.configure(
        "shutdown-test",
        handle_sigterm=mode == "sigterm",
        shutdown_timeout=None if bound == "default" else float(bound),
        export_timeout=0.3 if mode == "failing" else None,  # fail at once, no retry
    )
    if mode == "failing":  # wait until a span export has failed and been reported
        with trace.get_tracer("t").start_as_current_span("first"):
            pass
        deadline = time.monotonic() + 20
        while telemetry.stats()["traces"]["failed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    for i in range(50):
        with trace.get_tracer("t").start_as_current_span(f"span-{i}"):
            log.info("handled", i=i)
    telemetry.meter("t").create_counter("handled").add(50)
    print("ready", flush=True)
    if mode == "sigterm":
        time.sleep(60)
    if mode == "exit":  # the atexit shutdown
        sys.exit(0)
    clue.shutdown()
    print(json.dumps(telemetry.stats()), flush=True)
    """
)


class BlackHole:
    """A TCP server that accepts every connection and never reads or answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._held.append(connection)

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


class HTTPReceiver:
    """A real OTLP/HTTP (protobuf) receiver; the signals in ``failing`` answer 503."""

    _REQUESTS: dict[str, Any] = {
        "/v1/traces": ExportTraceServiceRequest,
        "/v1/logs": ExportLogsServiceRequest,
        "/v1/metrics": ExportMetricsServiceRequest,
    }

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.span_names: list[str] = []
        self.logs: list[dict[str, Any]] = []  # attributes, with the body under "body"
        self.metric_names: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                kind = receiver._REQUESTS.get(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if kind is None or self.path.removeprefix("/v1/") in failing:
                    self.send_response(404 if kind is None else 503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver._record(kind.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _record(self, request: Any) -> None:
        for resource_spans in getattr(request, "resource_spans", ()):
            for scope in resource_spans.scope_spans:
                self.span_names.extend(span.name for span in scope.spans)
        for resource_logs in getattr(request, "resource_logs", ()):
            for scope in resource_logs.scope_logs:
                for record in scope.log_records:
                    fields = attributes(record.attributes)
                    self.logs.append({**fields, "body": value(record.body)})
        for resource_metrics in getattr(request, "resource_metrics", ()):
            for scope in resource_metrics.scope_metrics:
                self.metric_names.update(metric.name for metric in scope.metrics)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def _run(
    tmp_path: Path,
    mode: str,
    protocol: str,
    endpoints: dict[str, str],
    bound: str = "default",
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], float]:
    """Start the service, wait until its telemetry is queued; the start of the clock."""
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_BSP_SCHEDULE_DELAY="100" if mode == "failing" else "600000",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        OTEL_TRACES_SAMPLER="always_on",
        PYTHONPATH=str(ROOT),
        **endpoints,
        **(extra_env or {}),
    )
    process = subprocess.Popen(
        [sys.executable, str(script), mode, bound],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise AssertionError(f"the service did not start: {line!r} {process.communicate()[1]}")
    return process, time.monotonic()


def _endpoint(port: int) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}


def _finish(process: subprocess.Popen[str], started: float) -> tuple[int, float, str, str]:
    """Wait for the exit: the exit status, the seconds since ``started``, stdout, stderr."""
    out, err = process.communicate(timeout=60)
    return process.returncode, time.monotonic() - started, out, err


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("collector", ["black hole", "closed port"])
def test_shutdown_returns_within_the_default_bound_and_counts_what_it_dropped(
    tmp_path: Path, black_hole: BlackHole, protocol: str, collector: str
) -> None:
    port = black_hole.port if collector == "black hole" else free_port()
    process, started = _run(tmp_path, "shutdown", protocol, _endpoint(port))
    status, elapsed, out, err = _finish(process, started)
    assert status == 0, err
    assert elapsed <= 2.0 + MARGIN, f"{protocol} to a {collector}: {elapsed:.2f}s"
    traces = json.loads(out)["traces"]
    assert traces["exported"] == 0
    assert traces["failed"] + traces["dropped"] == 50  # nothing lost silently: counted


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_plain_exit_ends_within_the_bound_with_a_black_holed_collector(
    tmp_path: Path, black_hole: BlackHole, protocol: str
) -> None:
    """No thread of clue's or of the exporters holds the interpreter's exit, and the exit
    shutdown did run (Python 3.12 and later start no thread in an atexit handler)."""
    process, started = _run(tmp_path, "exit", protocol, _endpoint(black_hole.port))
    status, elapsed, _, err = _finish(process, started)
    assert status == 0, err
    assert elapsed <= 2.0 + MARGIN, f"{protocol}: {elapsed:.2f}s"
    assert "telemetry shutdown reached its bound" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sigterm_exits_within_the_bound_with_a_black_holed_collector(
    tmp_path: Path, black_hole: BlackHole, protocol: str
) -> None:
    process, _ = _run(tmp_path, "sigterm", protocol, _endpoint(black_hole.port))
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    status, elapsed, _, err = _finish(process, signalled)
    assert status == -signal.SIGTERM, err
    assert elapsed <= 2.0 + MARGIN, f"{protocol}: {elapsed:.2f}s"
    assert "telemetry shutdown reached its bound" in err  # said locally


def test_the_bound_is_configurable_by_environment_and_argument(
    tmp_path: Path, black_hole: BlackHole
) -> None:
    endpoint = _endpoint(black_hole.port)
    process, started = _run(
        tmp_path, "shutdown", "grpc", endpoint, extra_env={"CLUE_SHUTDOWN_TIMEOUT": "0.5"}
    )
    status, short, _, err = _finish(process, started)
    assert status == 0, err
    assert short <= 0.5 + MARGIN
    # the argument wins over the variable, and a longer bound is waited for
    process, started = _run(
        tmp_path, "shutdown", "grpc", endpoint, "3", extra_env={"CLUE_SHUTDOWN_TIMEOUT": "0.5"}
    )
    status, long, _, err = _finish(process, started)
    assert status == 0, err
    assert 2.5 <= long <= 3.0 + MARGIN


@pytest.mark.parametrize("mode", ["shutdown", "exit"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_working_collector_receives_everything_on_a_normal_shutdown(
    tmp_path: Path, protocol: str, mode: str
) -> None:
    """``clue.shutdown()``, or the exit's (atexit) on every supported Python."""
    if protocol == "grpc":
        grpc_receiver = OTLPReceiver()
        port = grpc_receiver.start()
    else:
        http_receiver = HTTPReceiver()
        port = http_receiver.port
    try:
        process, started = _run(tmp_path, mode, protocol, _endpoint(port))
        status, _, out, err = _finish(process, started)
    finally:
        if protocol == "grpc":
            grpc_receiver.stop()
        else:
            http_receiver.close()
    assert status == 0, err
    assert "Traceback" not in err
    if protocol == "grpc":
        spans = [s.name for s in grpc_receiver.spans()]
        handled = [r.attributes["i"] for r in grpc_receiver.logs() if r.body == "handled"]
        metric_names = grpc_receiver.metric_names()
    else:
        spans = http_receiver.span_names
        handled = [r["i"] for r in http_receiver.logs if r["body"] == "handled"]
        metric_names = http_receiver.metric_names
    assert sorted(spans) == sorted(f"span-{i}" for i in range(50))
    assert sorted(handled) == list(range(50))
    assert "handled" in metric_names
    if mode == "shutdown":
        assert json.loads(out)["traces"] == {"exported": 50, "failed": 0, "dropped": 0}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reports_about_a_failing_exporter_are_written_but_never_exported(
    tmp_path: Path, protocol: str
) -> None:
    """Span exports fail (a closed port for gRPC, 503 for HTTP); logs are accepted."""
    if protocol == "grpc":
        grpc_receiver = OTLPReceiver()
        logs_port = grpc_receiver.start()
        endpoints = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"http://127.0.0.1:{logs_port}",
            "OTEL_METRICS_EXPORTER": "none",
        }
    else:
        http_receiver = HTTPReceiver(failing=("traces",))
        endpoints = _endpoint(http_receiver.port)
    try:
        process, started = _run(tmp_path, "failing", protocol, endpoints)
        status, elapsed, _, err = _finish(process, started)
    finally:
        if protocol == "grpc":
            grpc_receiver.stop()
        else:
            http_receiver.close()
    assert status == 0, err
    assert elapsed <= 2.0 + MARGIN
    assert "exporting traces to" in err and "failed" in err  # the report, written locally
    if protocol == "grpc":
        received = [{**r.attributes, "body": r.body} for r in grpc_receiver.logs()]
    else:
        received = http_receiver.logs
    assert sorted(r["i"] for r in received if r["body"] == "handled") == list(range(50))
    about_export = [
        r
        for r in received
        if str(r.get("logger", "")).startswith(("clue.telemetry", "opentelemetry"))
        or "export" in str(r["body"])
    ]
    assert about_export == []
