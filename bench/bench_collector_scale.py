"""Collector benchmarks at scale (issue 17): a 10,000-span trace in the browser, and a
search by service and attribute over 1,000,000 spans stored in a SQLite file.

The 10,000-span trace is sent over OTLP/HTTP to ``python -m clue.collector`` (a real
subprocess) keeping 100,000 spans, 90,000 of them from earlier traces of the same
operations, so each span's percentile is ranked against a full store; the page
(waterfall with the critical path) is timed in headless Chromium.

The 1,000,000 spans are written with :class:`clue.collector.store.Store` directly:
one OTLP request of 10,000 spans (1,000 traces of 10, 8 services) is decoded once
with the collector's own decoder, then stored 100 times with new trace ids, later
start times and new ``order.id`` values. A collector subprocess then serves that
file and ``/api/traces?service=...&attr=...`` is timed over HTTP.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goal import goal, info
from bench_collector import big_trace_request, browser_load_s, start_collector

from clue.collector import otlp
from clue.collector.store import Store

BIG = 10_000
STORED = 1_000_000
TEMPLATE_TRACES = 1_000  # traces of 10 spans in the template request
SERVICES = 8


def post(http_port: int, body: bytes) -> None:
    httpx.post(
        f"http://127.0.0.1:{http_port}/v1/traces",
        content=body,
        headers={"content-type": "application/x-protobuf"},
        timeout=120,
    ).raise_for_status()


def big_trace() -> None:
    """The 10,000-span trace: its JSON and its page in headless Chromium."""
    proc, _, ui = start_collector("--max-spans", "100000")
    try:
        http_port = httpx.get(f"{ui}/api/status").json()["ports"]["http"]
        for _ in range(90_000 // BIG):  # earlier traces of the same operations
            post(http_port, big_trace_request(BIG)[0])
        body, tid = big_trace_request(BIG)
        post(http_port, body)
        samples = []
        with httpx.Client(timeout=120) as client:
            for _ in range(5):
                start = time.perf_counter()
                answer = client.get(f"{ui}/api/traces/{tid}")
                samples.append(time.perf_counter() - start)
                assert answer.status_code == 200 and answer.json()["span_count"] == BIG
            start = time.perf_counter()
            page = client.get(f"{ui}/trace/{tid}")
            server = time.perf_counter() - start
            assert page.status_code == 200 and page.text.count('class="span-row') == BIG
            assert re.search('class="span-row[^"]* critical', page.text), "no critical path"
        api = statistics.median(samples)
        print(f"/api/traces/{{id}} of a {BIG:,}-span trace: {api * 1000:.0f} ms (median of 5)")
        print(f"/trace/{{id}} page of that trace, server side: {server * 1000:.0f} ms")
        load = browser_load_s(f"{ui}/trace/{tid}", BIG)
        if load is not None:
            print(
                f"headless Chromium: the {BIG:,}-span trace page (waterfall, critical path) "
                f"loaded in {load * 1000:.0f} ms (navigation start to load event, median of 5)"
            )
        goal("collector.trace_10000_render_s", load if load is not None else server, "<", 1)
    finally:
        proc.terminate()
        proc.wait(20)


def template(start_ns: int) -> otlp.Decoded:
    """1,000 traces of 10 spans over 8 services, decoded by the collector's decoder.

    Every span has ``customer.id`` (one of 100 values: 1% of traces each) and
    ``order.id`` (one per trace)."""
    request = ExportTraceServiceRequest()
    scopes = []
    for svc in range(SERVICES):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=f"svc-{svc}"))
        scopes.append(rs.scope_spans.add())
    for t in range(TEMPLATE_TRACES):
        tid, root = os.urandom(12) + bytes(4), os.urandom(8)
        for i in range(10):
            begin = start_ns + t * 1_000_000 + i * 1000
            span = scopes[(t + i) % SERVICES].spans.add(
                trace_id=tid,
                span_id=root if i == 0 else os.urandom(8),
                parent_span_id=b"" if i == 0 else root,
                name=f"op-{i}",
                kind=2 if i == 0 else 3,
                start_time_unix_nano=begin,
                end_time_unix_nano=begin + 50_000 + i * 1000,
            )
            for key, value in (
                ("http.route", f"/api/{i}"),
                ("customer.id", f"c-{t % 100}"),
                ("order.id", f"o-{t}"),
            ):
                span.attributes.add(key=key, value=AnyValue(string_value=value))
            span.attributes.add(key="http.response.status_code", value=AnyValue(int_value=200))
    return otlp.decode("traces", request)


def build_store(path: str) -> float:
    """Write 1,000,000 spans to *path*; return the seconds it took."""
    start = time.perf_counter()
    span_of_batch = TEMPLATE_TRACES * 1_000_000
    first = time.time_ns() - (STORED // (10 * TEMPLATE_TRACES)) * span_of_batch
    base = template(first)
    store = Store(path, max_spans=STORED + 1)
    try:
        for b in range(STORED // len(base.rows)):
            suffix, shift, order = f"{b:08x}", b * span_of_batch, f'"o-{b}-'
            rows = [
                (
                    r[0][:24] + suffix,
                    *r[1:6],
                    r[6] + shift,
                    *r[7:10],
                    r[10].replace('"o-', order),
                    *r[11:],
                )
                for r in base.rows
            ]
            store.add("traces", otlp.Decoded(rows=rows, resources=base.resources))
        assert store.counts()["traces"] == STORED
    finally:
        store.close()
    return time.perf_counter() - start


def timed_search(client: httpx.Client, url: str, params: dict[str, str], traces: int) -> float:
    """Median milliseconds of five searches, each answering *traces* traces."""
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        answer = client.get(url, params=params)
        samples.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text[:200]
        assert len(answer.json()["traces"]) == traces, answer.text[:200]
    return statistics.median(samples) * 1000


def search_1m() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "spans.db")
        built = build_store(db)
        size = Path(db).stat().st_size / 2**20
        print(f"store: {STORED:,} spans written with Store.add in {built:.1f} s, {size:.0f} MiB")
        proc, _, ui = start_collector("--db", db, "--max-spans", str(STORED + 1))
        try:
            url = f"{ui}/api/traces"
            with httpx.Client(timeout=120) as client:
                common = timed_search(
                    client, url, {"service": "svc-3", "attr": "customer.id=c-42"}, 20
                )
                rare = timed_search(
                    client, url, {"service": "svc-3", "attr": "order.id=o-50-500"}, 1
                )
        finally:
            proc.terminate()
            proc.wait(20)
    print(
        f"search service=svc-3&attr=customer.id=c-42 (1% of traces; the newest 20 answer): "
        f"{common:.0f} ms; service=svc-3&attr=order.id=o-50-500 (one trace, in the middle: "
        f"every span of the service is read): {rare:.0f} ms (medians of 5)"
    )
    info("collector.search_1m_spans_common_ms", value=common)
    goal("collector.search_1m_spans_ms", rare, "<", 300)


def main() -> None:
    big_trace()
    search_1m()


if __name__ == "__main__":
    main()
