"""Collector benchmarks: OTLP/gRPC ingest rate, memory once retention is reached,
and the time to show a 1,000-span trace.

A separate sender process pushes pre-built batches of 512 spans over OTLP/gRPC
to ``python -m clue.collector`` (a real subprocess). The baseline measured in the
same run is the same sender against a gRPC server that answers without storing
anything, so the ratio shows how much of the transport's capacity ingest keeps.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goal import goal

BATCH = 512
MAX_SPANS = 100_000
READY = re.compile(r"OTLP gRPC on [^:]+:(\d+), OTLP HTTP on [^:]+:(\d+), UI on (http://\S+/)")

SENDER = textwrap.dedent(
    """
    import os, sys, time
    from concurrent.futures import ThreadPoolExecutor
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    target, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def batch(n):
        # a request of `size` spans (traces of 8) and the trace ids it holds
        r = ExportTraceServiceRequest()
        rs = r.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=f"svc-{n % 4}"))
        lang = AnyValue(string_value="python")
        rs.resource.attributes.add(key="telemetry.sdk.language", value=lang)
        scope = rs.scope_spans.add()
        scope.scope.name = "bench"
        now = time.time_ns()
        tids = []
        for t in range(size // 8):
            tid = os.urandom(12) + bytes(4)
            tids.append(tid)
            root = os.urandom(8)
            for i in range(8):
                span = scope.spans.add(
                    trace_id=tid, span_id=root if i == 0 else os.urandom(8),
                    parent_span_id=b"" if i == 0 else root, name=f"op-{i}", kind=2 if i == 0 else 3,
                    start_time_unix_nano=now + i * 1000, end_time_unix_nano=now + i * 1000 + 50_000,
                )
                span.attributes.add(key="http.route", value=AnyValue(string_value=f"/api/{i}"))
                span.attributes.add(key="http.response.status_code", value=AnyValue(int_value=200))
                span.attributes.add(key="rpc.system", value=AnyValue(string_value="grpc"))
                span.attributes.add(key="net.peer.name", value=AnyValue(string_value="10.0.0.7"))
                span.status.code = 2 if (n + t + i) % 97 == 0 else 0
        return r.SerializeToString(), tids

    def variant(template, k):
        # the same batch with new trace ids, so every span sent is a distinct span
        body, tids = template
        for tid in tids:
            body = body.replace(tid, tid[:12] + k.to_bytes(4, "big"))
        return body

    templates = [batch(n) for n in range(16)]
    bodies = [variant(templates[n % 16], n // 16 + 1) for n in range(batches)]
    with grpc.insecure_channel(target) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export", None, None
        )
        export(bodies[0], timeout=30)
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda body: export(body, timeout=60), bodies[1:]))
        elapsed = time.perf_counter() - start
    print(f"{(batches - 1) * size} {elapsed}", flush=True)
    """
)

NULL_SERVER = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    import grpc
    server = grpc.server(ThreadPoolExecutor(4))
    handler = grpc.unary_unary_rpc_method_handler(lambda raw, ctx: b"")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()
    """
)


QUERIES = ["/api/traces", "/api/traces?errors=true&service=svc-1", "/", "/api/dependencies"]


def timed_get(url: str) -> float:
    """Median wall time of three GETs of *url*."""
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        httpx.get(url, timeout=30).raise_for_status()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def start_collector(*args: str) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
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
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            return proc, int(match.group(1)), match.group(3).rstrip("/")
    raise RuntimeError("collector did not start")


def send(tmp: Path, port: int, batches: int, size: int = BATCH) -> tuple[int, float]:
    script = tmp / "sender.py"
    script.write_text(SENDER)
    out = subprocess.run(
        [sys.executable, str(script), f"127.0.0.1:{port}", str(batches), str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    spans, elapsed = out.stdout.split()
    return int(spans), float(elapsed)


def baseline_rate(tmp: Path, batches: int) -> float:
    script = tmp / "null_server.py"
    script.write_text(NULL_SERVER)
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        spans, elapsed = send(tmp, port, batches)
        return spans / elapsed
    finally:
        server.terminate()
        server.wait(10)


def ingest_and_memory(tmp: Path) -> None:
    proc, port, ui = start_collector("--max-spans", str(MAX_SPANS))
    watched = psutil.Process(proc.pid)
    try:
        fill = MAX_SPANS // BATCH + 1
        cpu0 = sum(watched.cpu_times()[:2])
        spans, elapsed = send(tmp, port, fill + 1)
        cpu1 = sum(watched.cpu_times()[:2])
        stored = httpx.get(f"{ui}/api/status").json()["stored"]["traces"]
        assert stored == MAX_SPANS, stored
        rss_full = watched.memory_info().rss
        queries_at_full = {path: timed_get(ui + path) for path in QUERIES}
        late_spans, late_elapsed = send(tmp, port, 3 * fill)
        cpu2 = sum(watched.cpu_times()[:2])
        rss_late = watched.memory_info().rss
        assert httpx.get(f"{ui}/api/status").json()["stored"]["traces"] == MAX_SPANS
    finally:
        proc.terminate()
        proc.wait(20)
    rate = spans / elapsed
    steady = late_spans / late_elapsed
    print(
        f"ingest: {spans} spans in {elapsed:.2f}s = {rate:,.0f} spans/s while filling; "
        f"{late_spans} more in {late_elapsed:.2f}s = {steady:,.0f} spans/s with eviction"
    )
    print(
        f"collector CPU: {100 * (cpu1 - cpu0) / elapsed:.0f}% then "
        f"{100 * (cpu2 - cpu1) / late_elapsed:.0f}% of one core; RSS {rss_full / 2**20:.1f} MiB "
        f"at {MAX_SPANS} spans (retention reached), {rss_late / 2**20:.1f} MiB after "
        f"{late_spans} more"
    )
    print(
        f"with {MAX_SPANS} spans stored: "
        + ", ".join(f"{path} {seconds * 1000:.0f} ms" for path, seconds in queries_at_full.items())
    )
    base = baseline_rate(tmp, fill + 1)
    print(
        f"baseline: same sender against a gRPC server that stores nothing: {base:,.0f} spans/s; "
        f"ratio collector/baseline {min(rate, steady) / base:.2f}"
    )
    goal("collector.ingest_spans_per_s", min(rate, steady), ">=", 20000)
    goal("collector.memory_growth_ratio", rss_late / rss_full, "<=", 1.1)


def big_trace_request(spans: int) -> tuple[bytes, str]:
    import os

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    request = ExportTraceServiceRequest()
    tid = os.urandom(16)
    now = time.time_ns()
    ids = [os.urandom(8) for _ in range(spans)]
    for svc in range(5):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=f"svc-{svc}"))
        scope = rs.scope_spans.add()
        for i in range(svc, spans, 5):
            parent = b"" if i == 0 else ids[(i - 1) // 10]  # a tree of fan-out 10
            span = scope.spans.add(
                trace_id=tid,
                span_id=ids[i],
                parent_span_id=parent,
                name=f"operation {i}",
                start_time_unix_nano=now + i * 100_000,
                end_time_unix_nano=now + i * 100_000 + (spans - i) * 50_000,
            )
            span.attributes.add(key="index", value=AnyValue(int_value=i))
    return request.SerializeToString(), tid.hex()


def browser_load_s(url: str, rows: int) -> float | None:
    try:
        from tests.browser import chromium
    except ImportError:
        return None
    with chromium() as driver:
        times = []
        for _ in range(5):
            driver.get(url)
            shown = driver.execute_script("return document.querySelectorAll('.span-row').length")
            assert shown == rows, shown
            critical = "return document.querySelectorAll('.span-row.critical').length"
            assert driver.execute_script(critical) > 0, "no critical path shown"
            timing = driver.execute_script(
                "const t = performance.getEntriesByType('navigation')[0];"
                "return [t.startTime, t.loadEventEnd];"
            )
            times.append((timing[1] - timing[0]) / 1000)
        return statistics.median(times)


def compare_time_ms(ui: str, a: str, b: str) -> float:
    """Median time of ``/api/compare`` of two 1,000-span traces (both read, every span matched)."""
    samples = []
    with httpx.Client(timeout=30) as client:
        for _ in range(10):
            start = time.perf_counter()
            answer = client.get(f"{ui}/api/compare", params={"a": a, "b": b})
            samples.append(time.perf_counter() - start)
            assert answer.status_code == 200 and answer.json()["matched"] == 1000, answer.text[:200]
    ms = statistics.median(samples) * 1000
    print(f"/api/compare of two 1,000-span traces: {ms:.0f} ms (median of 10)")
    return ms


def render() -> None:
    proc, _, ui = start_collector()
    try:
        http_port = httpx.get(f"{ui}/api/status").json()["ports"]["http"]
        ids = {}
        for size in (10, 1000, -1000):  # -1000: a second trace of 1,000 spans, to compare
            body, tid = big_trace_request(abs(size))
            httpx.post(
                f"http://127.0.0.1:{http_port}/v1/traces",
                content=body,
                headers={"content-type": "application/x-protobuf"},
            ).raise_for_status()
            ids[size] = tid
        compare_ms = compare_time_ms(ui, ids[1000], ids.pop(-1000))
        server = {}
        with httpx.Client() as client:
            for size, tid in ids.items():
                samples = []
                for _ in range(10):
                    start = time.perf_counter()
                    page = client.get(f"{ui}/trace/{tid}")
                    samples.append(time.perf_counter() - start)
                    assert page.status_code == 200 and page.text.count('class="span-row') == size
                server[size] = statistics.median(samples)
        print(
            f"trace page server time: {server[1000] * 1000:.1f} ms for 1,000 spans, "
            f"{server[10] * 1000:.1f} ms for 10 spans (ratio {server[1000] / server[10]:.1f})"
        )
        load = browser_load_s(f"{ui}/trace/{ids[1000]}", 1000)
        if load is not None:
            print(
                f"headless Chromium: 1,000-span trace page loaded in {load * 1000:.0f} ms "
                "(navigation start to load event, median of 5)"
            )
        goal("collector.trace_1000_render_s", load if load is not None else server[1000], "<", 1)
        goal("collector.compare_1000_ms", compare_ms, "<", 500)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ingest_and_memory(Path(tmp))
    render()


if __name__ == "__main__":
    main()
