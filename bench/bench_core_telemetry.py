"""clue.telemetry on the request path: sampler, provider proxy, collector down.

Goals (ratios measured in the same run, interleaved rounds, best of REPEAT):
- core.telemetry_sampler: one ``AdaptiveSampler`` decision for a new trace, at
  most 2.0x the SDK's ``ParentBased(TraceIdRatioBased)`` decision;
- core.telemetry_proxy: a span started and ended through clue's swappable
  tracer, at most 1.1x the same span through the SDK tracer directly;
- core.telemetry_collector_down: a span started and ended while the OTLP
  collector is down (exports failing in the background, queue full), at most
  1.3x the same span while a real OTLP receiver (another process) accepts them.

Printed beside them: one duration record into the SDK's histogram and into
clue's (clue.telemetry.histograms), with the attributes the ASGI middleware uses.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

sys.path.insert(0, str(Path(__file__).parent))
from _goal import goal

import clue
from clue import log, telemetry
from clue.telemetry import AdaptiveSampler
from clue.telemetry.proxy import SwappableTracerProvider

REPEAT = 15


def best_us(
    calls: dict[str, tuple[Callable[[], None], int]], rounds: int = REPEAT
) -> dict[str, float]:
    """Best cost of one call of each function in microseconds, timed in interleaved rounds."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, (fn, number) in calls.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number) / number * 1e6)
    return best


def bench_sampler() -> None:
    ids = [random.getrandbits(128) for _ in range(1024)]
    adaptive = AdaptiveSampler(max_sampled_per_second=2.0)
    ratio = ParentBased(TraceIdRatioBased(0.01))

    def run(sampler: ParentBased) -> Callable[[], None]:
        def loop() -> None:
            for trace_id in ids:
                sampler.should_sample(None, trace_id, "request")

        return loop

    best = best_us({"sdk": (run(ratio), 20), "clue": (run(adaptive), 20)})
    sdk, ours = best["sdk"] / len(ids), best["clue"] / len(ids)
    print(f"sampler decision: sdk ParentBased(TraceIdRatioBased) {sdk:.3f} µs, clue {ours:.3f} µs")
    goal("core.telemetry_sampler", ours / sdk, "<=", 2.0)


def _span_loop(tracer_provider: object, n: int = 1000) -> Callable[[], None]:
    tracer = tracer_provider.get_tracer("bench")  # type: ignore[attr-defined]

    def loop() -> None:
        for _ in range(n):
            tracer.start_span("request").end()

    return loop


def bench_proxy() -> None:
    sdk = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    proxy = SwappableTracerProvider()
    proxy.swap(sdk)
    loops = {"sdk": (_span_loop(sdk, 200), 1), "clue": (_span_loop(proxy, 200), 1)}
    best = best_us(loops, rounds=200)  # short interleaved rounds: load bursts hit both
    sdk_us, ours = best["sdk"] / 200, best["clue"] / 200
    print(f"span start+end: sdk tracer {sdk_us:.2f} µs, through clue's proxy {ours:.2f} µs")
    goal("core.telemetry_proxy", ours / sdk_us, "<=", 1.1)


def bench_histogram() -> None:
    """Printed, not a goal: what a duration record costs, SDK histogram against clue's."""
    attributes = {
        "http.request.method": "GET",
        "http.route": "/products/{product_id}",
        "http.response.status_code": 200,
        "url.scheme": "http",
    }
    sdk = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    clue.configure("bench", metric_exporter=InMemoryMetricReader(), exporter="none")
    try:

        def loop(histogram: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in range(100):
                    histogram.record(0.0123, attributes)

            return run

        make = {"unit": "s", "explicit_bucket_boundaries_advisory": (0.005, 0.01, 0.025, 0.05)}
        best = best_us(
            {
                "sdk": (loop(sdk.get_meter("b").create_histogram("d", **make)), 10),
                "clue": (loop(telemetry.meter("b").create_histogram("d", **make)), 10),
            }
        )
    finally:
        clue.shutdown()
        sdk.shutdown()
    sdk_us, ours = best["sdk"] / 100, best["clue"] / 100
    print(
        f"histogram record (4 attributes): sdk {sdk_us:.2f} µs, clue {ours:.2f} µs"
        f" ({sdk_us / ours:.1f}x cheaper)"
    )


def _collector() -> tuple[subprocess.Popen[str], str]:
    """A real OTLP/gRPC receiver in another process (so its work is not timed here)."""
    code = (
        "import sys, time; from tests.otlp_receiver import OTLPReceiver; "
        "r = OTLPReceiver(); print(r.start(), flush=True); sys.stdin.read()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, f"http://127.0.0.1:{process.stdout.readline().strip()}"


def bench_collector_down() -> None:
    with socket.socket() as s:  # a port nothing listens on: the collector is down
        s.bind(("127.0.0.1", 0))
        endpoints = {"down": f"http://127.0.0.1:{s.getsockname()[1]}"}
    collector, endpoints["up"] = _collector()
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "20"
    loop = _span_loop(telemetry.bootstrap.TRACER_PROVIDER)
    best = {"up": float("inf"), "down": float("inf")}
    try:
        for _ in range(REPEAT):
            for name, endpoint in endpoints.items():
                os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
                clue.configure("bench", sampler=ALWAYS_ON, export_timeout=0.2)
                loop()  # warm up: the queue fills, exports start (and fail when down)
                best[name] = min(best[name], timeit.timeit(loop, number=5) / 5000 * 1e6)
        clue.shutdown()
    finally:
        collector.communicate("")
    stats = telemetry.stats()["traces"]
    print(
        f"span start+end: collector up {best['up']:.2f} µs, down {best['down']:.2f} µs "
        f"(exported {stats['exported']}, failed {stats['failed']}, dropped {stats['dropped']})"
    )
    goal("core.telemetry_collector_down", best["down"] / best["up"], "<=", 1.3)


def main() -> None:
    log.configure(outputs=[log.Output(open(os.devnull, "w"), "json")])  # noqa: SIM115
    bench_sampler()
    bench_proxy()
    bench_histogram()
    bench_collector_down()


if __name__ == "__main__":
    main()
