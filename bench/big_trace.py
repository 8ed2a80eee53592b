"""The 10,000-span trace of issue 17: ``/api/traces/{id}`` and its page in headless Chromium.

Not a goal of ``bench/run.py`` (the goal there is the 1,000-span page): run it as
``.venv/bin/python bench/big_trace.py [spans]``. The collector keeps 100,000
spans, 90,000 of them from earlier traces of the same operations, so each span
is ranked against a full store.
"""

from __future__ import annotations

import statistics
import sys
import time

import httpx
from bench_collector import big_trace_request, browser_load_s, start_collector


def post(http_port: int, body: bytes) -> None:
    httpx.post(
        f"http://127.0.0.1:{http_port}/v1/traces",
        content=body,
        headers={"content-type": "application/x-protobuf"},
        timeout=120,
    ).raise_for_status()


def main(spans: int) -> None:
    proc, _, ui = start_collector("--max-spans", "100000")
    try:
        http_port = httpx.get(f"{ui}/api/status").json()["ports"]["http"]
        for _ in range(90_000 // spans):  # earlier traces of the same operations
            post(http_port, big_trace_request(spans)[0])
        body, tid = big_trace_request(spans)
        post(http_port, body)
        samples = []
        with httpx.Client(timeout=120) as client:
            for _ in range(5):
                start = time.perf_counter()
                answer = client.get(f"{ui}/api/traces/{tid}")
                samples.append(time.perf_counter() - start)
                assert answer.status_code == 200 and answer.json()["span_count"] == spans
        api = statistics.median(samples)
        print(f"/api/traces/{{id}} of a {spans:,}-span trace: {api * 1000:.0f} ms (median of 5)")
        load = browser_load_s(f"{ui}/trace/{tid}", spans)
        if load is not None:
            print(
                f"headless Chromium: the {spans:,}-span trace page loaded in {load * 1000:.0f} ms "
                "(navigation start to load event, median of 5)"
            )
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
