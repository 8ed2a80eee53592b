"""gRPC aio unary echo: bare server, clue's stack layer by layer, and the official interceptor.

Each configuration runs in its own server process, configured the way a service
would be (``clue.configure`` + ``clue.grpc.instrument``; the official interceptor
on the plain OpenTelemetry SDK); spans go through the batch processor to a no-op
exporter, metrics to a no-op exporter, logs as JSON to /dev/null. This process
is the client: a closed loop of CONCURRENCY calls on one grpc.aio channel for
SECONDS per configuration, interleaved over ROUNDS rounds. Ratios are throughput
against the bare server of the same round (median over rounds); the server's
CPU time per call is reported too, with the "CPU ratio" (bare CPU per call /
this CPU per call: the throughput ratio of a server that saturates its core),
which depends much less on what else the machine is running than the measured
throughput does.

The goals compare clue with its peer, the official OpenTelemetry interceptor,
each in its own defaults: clue's full stack with every call sampled against the
official interceptor (which samples every call) by throughput in the same
rounds, and the server CPU per call that clue's default stack (adaptive sampler,
each log line written at once) adds over bare against what the official
interceptor adds.

    .venv/bin/python bench/bench_core_grpc.py
    CLUE_BENCH_ROUNDS=2 CLUE_BENCH_SECONDS=0.5 .venv/bin/python bench/bench_core_grpc.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _cores import pin_load, pin_server
from _goal import goal, info

CONCURRENCY = 32
SECONDS = float(os.environ.get("CLUE_BENCH_SECONDS", "1.5"))
# the median over 10 rounds moves less between runs than over 6
ROUNDS = int(os.environ.get("CLUE_BENCH_ROUNDS", "10"))
SERVICE = "bench.Echo"

# name: (sampler ("sdk": the plain OpenTelemetry SDK, no clue), clue layers (wired by
# clue.grpc.instrument), "interceptors" (clue's layers as grpc interceptors), "noop" (a
# pass-through interceptor), or "official" for the OpenTelemetry interceptor)
CONFIGS: dict[str, tuple[str, dict[str, bool] | str | None]] = {
    "bare": ("none", None),
    "noop_interceptor": ("none", "noop"),
    "configure_only": ("adaptive", "noop"),
    "clue_adaptive": ("adaptive", {}),
    "clue_all_sampled": ("always_on", {}),
    "clue_adaptive_interceptors": ("adaptive", "interceptors"),
    "clue_adaptive_no_write_delay": ("adaptive", {}),
    "clue_all_sampled_no_write_delay": ("always_on", {}),
    "tracing_only": ("always_on", {"logging": False, "payloads": False, "metrics": False}),
    "logging_only": ("always_on", {"tracing": False, "payloads": False, "metrics": False}),
    "payloads_only": ("always_on", {"tracing": False, "logging": False, "metrics": False}),
    "metrics_only": ("always_on", {"tracing": False, "logging": False, "payloads": False}),
    "official_otel_only": ("sdk", "official"),
    "official_otel_plus_clue_layers": ("always_on", "official+layers"),
}


# --- server side (one process per configuration) -----------------------------------------


def _telemetry(name: str, sampler: str) -> None:
    import _null_telemetry

    from clue import log
    from reference_services.common.runtime import SERVICE_LOG_WRITE_DELAY

    _null_telemetry.configure("bench-grpc", sampler)
    log.configure(
        outputs=[log.Output(open(os.devnull, "w"), format="json")],  # noqa: SIM115
        # the boutique services' delay (docs/logging.md, "When lines are written"), except in
        # the *_no_write_delay configuration: clue.log's default, each line at once
        write_delay=0 if name.endswith("_no_write_delay") else SERVICE_LOG_WRITE_DELAY,
    )


def _interceptors(layers: str | None) -> list[Any]:
    if layers is None:
        return []
    import clue.grpc

    if layers == "interceptors":
        return clue.grpc.async_server_interceptors()
    if layers == "noop":
        import grpc.aio

        class Noop(grpc.aio.ServerInterceptor):  # type: ignore[misc]
            async def intercept_service(self, continuation: Any, details: Any) -> Any:
                return await continuation(details)

        return [Noop()]
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    official = [aio_server_interceptor()]
    if layers == "official":
        return official
    return official + clue.grpc.async_server_interceptors(tracing=False)


async def _serve(name: str) -> None:
    import grpc
    import grpc.aio
    from google.protobuf.wrappers_pb2 import StringValue

    sampler, layers = CONFIGS[name]
    if sampler == "sdk":
        import _null_telemetry

        _null_telemetry.configure_sdk("bench-grpc")
    elif sampler != "none":
        _telemetry(name, sampler)

    async def echo(request: StringValue, context: Any) -> StringValue:
        return request

    handler = grpc.unary_unary_rpc_method_handler(
        echo,
        request_deserializer=StringValue.FromString,
        response_serializer=StringValue.SerializeToString,
    )
    server: Any
    if isinstance(layers, dict):
        import clue.grpc

        server = clue.grpc.instrument(grpc.aio.server(), **layers)
    else:
        server = grpc.aio.server(interceptors=_interceptors(layers))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.stop(None)


# --- client side (this process) ------------------------------------------------------------


async def _load(port: int, seconds: float) -> int:
    import grpc.aio
    from google.protobuf.wrappers_pb2 import StringValue

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/Echo",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )
        request = StringValue(value="hello, clue")
        for _ in range(100):  # warm-up: connection, caches, first-call costs
            await call(request)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await call(request)
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 2 and argv[1] == "--serve":
        pin_server()
        asyncio.run(_serve(argv[2]))
        return 0
    print(pin_load())
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        for name in CONFIGS:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("PORT "):
                raise RuntimeError(f"server {name} did not start: {line!r}")
            servers[name] = (proc, int(line.split()[1]))
        rps: dict[str, list[float]] = {name: [] for name in CONFIGS}
        cpu_us: dict[str, list[float]] = {name: [] for name in CONFIGS}
        names = list(servers)
        for round_ in range(ROUNDS):  # each round starts with another configuration
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                proc, port = servers[name]
                before = _cpu(proc.pid)
                started = time.perf_counter()
                calls = asyncio.run(_load(port, SECONDS))
                elapsed = time.perf_counter() - started
                rps[name].append(calls / elapsed)
                cpu_us[name].append((_cpu(proc.pid) - before) / (calls + 100) * 1e6)
    finally:
        for proc, _ in servers.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)

    _report(rps, cpu_us)
    return 0


def _report(rps: dict[str, list[float]], cpu_us: dict[str, list[float]]) -> None:
    def per_round(name: str, peer: str) -> list[float]:
        return sorted(r / p for r, p in zip(rps[name], rps[peer], strict=True))

    bare_cpu = statistics.median(cpu_us["bare"])
    print(
        f"{'configuration':34} {'calls/s':>9} {'ratio':>6} {'server CPU/call':>16} {'added':>9}"
        f" {'CPU ratio':>9}"
    )
    ratios: dict[str, float] = {}
    added: dict[str, float] = {}
    for name in CONFIGS:
        ratio = statistics.median(per_round(name, "bare"))
        ratios[name] = ratio
        cpu = statistics.median(cpu_us[name])
        added[name] = cpu - bare_cpu
        print(
            f"{name:34} {statistics.median(rps[name]):9.0f} {ratio:6.2f} "
            f"{cpu:13.0f} µs {cpu - bare_cpu:+7.0f} µs {bare_cpu / cpu:9.2f}"
        )
    official = "official_otel_only"
    for delay in ("_no_write_delay", ""):  # clue.log's default first, then the boutique's delay
        sampled, default = f"clue_all_sampled{delay}", f"clue_adaptive{delay}"
        spread = per_round(sampled, official)
        print(
            f"{sampled} / {official}: {statistics.median(spread):.2f} by throughput"
            f" (per round {spread[0]:.2f} to {spread[-1]:.2f});"
            f" {default} adds {added[default] / added[official]:.2f} of its server CPU"
        )
    for name in ("clue_adaptive_no_write_delay", "clue_all_sampled_no_write_delay", official):
        spread = per_round(name, "bare")
        print(f"{name}: ratio to bare per round from {spread[0]:.2f} to {spread[-1]:.2f}")
    for label, name in (
        ("adaptive", "clue_adaptive_no_write_delay"),
        ("all_sampled", "clue_all_sampled_no_write_delay"),
        ("official", official),
    ):
        info(f"core.grpc_{label}", ratio_to_bare=ratios[name], added_cpu_us=added[name])
    sampled_vs_official = statistics.median(per_round("clue_all_sampled_no_write_delay", official))
    goal("core.grpc_all_sampled_vs_official", sampled_vs_official, ">=", 1.0)
    added_vs_official = added["clue_adaptive_no_write_delay"] / added[official]
    goal("core.grpc_added_cpu_vs_official", added_vs_official, "<=", 0.5)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
