"""Starlette JSON endpoint on uvicorn: bare against clue's ASGI stack and the official middleware.

Each configuration runs in its own uvicorn server process (one worker, a real
port on loopback), configured the way a service would be: ``clue.configure``
(spans through the batch processor to a no-op exporter, metrics to a no-op
exporter, logs as JSON to /dev/null) and ``clue.asgi.ClueMiddleware`` around the
app; the official ``OpenTelemetryMiddleware`` on the plain OpenTelemetry SDK. The
load comes from separate client processes: a raw-socket asyncio loop of
CONNECTIONS keep-alive connections, each sending its next request as soon as the
previous response is complete (a closed loop, no HTTP library in the way).
Configurations are measured in interleaved rounds for SECONDS each; ratios are
requests per second against the bare server of the same round (median over
rounds); the server's CPU time per request is reported too, with the "CPU ratio"
(bare CPU per request / this CPU per request: the throughput ratio of a server
saturating its core, much less sensitive to other load on the machine).

Beside the goals against bare, two compare clue with its peer, the official
middleware, each in its own defaults: clue's stack with every request sampled
against the official middleware (which samples every request) by throughput in
the same rounds, and the server CPU per request that clue's default stack
(adaptive sampler, each log line written at once) adds over bare against what
the official middleware adds.

    .venv/bin/python bench/bench_core_asgi.py
    CLUE_BENCH_ROUNDS=2 CLUE_BENCH_SECONDS=0.5 .venv/bin/python bench/bench_core_asgi.py
"""

from __future__ import annotations

import asyncio
import os
import socket
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

CONNECTIONS = 16
SECONDS = float(os.environ.get("CLUE_BENCH_SECONDS", "1.5"))
ROUNDS = int(os.environ.get("CLUE_BENCH_ROUNDS", "6"))
PATH = "/products/42"

# name: (sampler ("sdk": the plain OpenTelemetry SDK, no clue), middleware)
CONFIGS: dict[str, tuple[str, str]] = {
    "bare": ("none", "none"),
    "clue_adaptive": ("adaptive", "clue"),
    "clue_all_sampled": ("always_on", "clue"),
    "clue_all_sampled_no_request_line": ("always_on", "clue_quiet"),
    "clue_no_sdk": ("none", "clue"),
    "clue_adaptive_no_write_delay": ("adaptive", "clue"),
    "clue_all_sampled_no_write_delay": ("always_on", "clue"),
    "official_otel_all_sampled": ("sdk", "official"),
}

DESCRIPTIONS = {
    "bare": "Starlette + uvicorn, no observability (baseline)",
    "clue_adaptive": "configure() + ClueMiddleware, adaptive sampler (default)",
    "clue_all_sampled": "configure() + ClueMiddleware, every request sampled",
    "clue_all_sampled_no_request_line": "same, log_requests=False (no request line)",
    "clue_no_sdk": "ClueMiddleware without configure() (no-op tracer, log scope + line)",
    "clue_adaptive_no_write_delay": "clue_adaptive, each log line written at once (the default)",
    "clue_all_sampled_no_write_delay": "clue_all_sampled, each log line written at once",
    "official_otel_all_sampled": "plain SDK + official OpenTelemetryMiddleware (all sampled)",
}


# --- server side (one process per configuration) -----------------------------------------


def _telemetry(sampler: str) -> None:
    import _null_telemetry

    _null_telemetry.configure("bench-asgi", sampler)


def _app(middleware: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def product(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["product_id"], "name": "mug", "price": 12})

    app: Any = Starlette(routes=[Route("/products/{product_id}", product)])
    if middleware in ("clue", "clue_quiet"):
        from clue.asgi import ClueMiddleware

        app = ClueMiddleware(app, log_requests=middleware == "clue")
    elif middleware == "official":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app = OpenTelemetryMiddleware(app)
    return app


def _serve(name: str) -> None:
    import uvicorn

    from clue import log
    from reference_services.common.runtime import SERVICE_LOG_WRITE_DELAY

    sampler, middleware = CONFIGS[name]
    if sampler == "sdk":
        import _null_telemetry

        _null_telemetry.configure_sdk("bench-asgi")
    elif sampler != "none":
        _telemetry(sampler)
    log.configure(
        outputs=[log.Output(open(os.devnull, "w"), format="json")],  # noqa: SIM115
        # the boutique services' delay (docs/logging.md, "When lines are written"), except in
        # the *_no_write_delay configuration: clue.log's default, each line at once
        write_delay=0 if name.endswith("_no_write_delay") else SERVICE_LOG_WRITE_DELAY,
    )
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (with proto 0, Nagle + delayed ACKs add 40 ms to every response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _app(middleware), log_level="warning", access_log=False, lifespan="off", backlog=256
    )
    server = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


# --- load side (separate processes) --------------------------------------------------------


class _Connection(asyncio.Protocol):
    """A keep-alive connection sending the next request as soon as a response is complete."""

    def __init__(self, request: bytes, deadline: float, done: asyncio.Future[int]) -> None:
        self.request = request
        self.deadline = deadline
        self.done = done
        self.buffer = b""
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[: end + 2]
            if not head.startswith(b"HTTP/1.1 200"):
                self._finish(RuntimeError(f"unexpected response: {head[:80]!r}"))
                return
            start = head.lower().find(b"content-length:")
            length = int(head[start + 15 : head.find(b"\r\n", start)]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.count += 1
            if time.perf_counter() >= self.deadline:
                self._finish(None)
                return
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or RuntimeError("connection closed by the server"))

    def _finish(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(self.count)
        if self.transport is not None:
            self.transport.close()


async def _load(port: int, seconds: float, connections: int) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    # Warm-up: first-call costs (route compilation, caches, the sampler's first estimate).
    warm: asyncio.Future[int] = loop.create_future()
    await loop.create_connection(
        lambda: _Connection(request, time.perf_counter() + 0.3, warm), "127.0.0.1", port
    )
    await warm
    started = time.perf_counter()
    deadline = started + seconds
    futures: list[asyncio.Future[int]] = []
    for _ in range(connections):
        done: asyncio.Future[int] = loop.create_future()
        futures.append(done)
        await loop.create_connection(
            lambda done=done: _Connection(request, deadline, done),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
    counts = await asyncio.gather(*futures)
    return sum(counts), time.perf_counter() - started


def _run_load(port: int) -> None:
    pin_load()  # its description is printed once, by main
    count, elapsed = asyncio.run(_load(port, SECONDS, CONNECTIONS))
    print(f"DONE {count} {elapsed}", flush=True)


# --- orchestration -------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _measure(pid: int, port: int) -> tuple[float, float, int]:
    """Requests per second and server CPU µs per request under one load run."""
    before = _cpu(pid)
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("DONE "))
    _, count, elapsed = line.split()
    requests = int(count)
    cpu = _cpu(pid) - before
    return requests / float(elapsed), cpu / requests * 1e6, requests


def main(argv: Sequence[str]) -> int:
    if len(argv) > 2 and argv[1] == "--serve":
        pin_server()
        _serve(argv[2])
        return 0
    if len(argv) > 2 and argv[1] == "--load":
        _run_load(int(argv[2]))
        return 0
    print(pin_load())  # this process only waits for the load processes
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        for name in CONFIGS:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", name], stdout=subprocess.PIPE, text=True
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
                rate, cpu, _ = _measure(proc.pid, port)
                rps[name].append(rate)
                cpu_us[name].append(cpu)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)

    _report(rps, cpu_us)
    return 0


def _report(rps: dict[str, list[float]], cpu_us: dict[str, list[float]]) -> None:
    def per_round(name: str, peer: str) -> list[float]:
        return sorted(r / p for r, p in zip(rps[name], rps[peer], strict=True))

    bare_cpu = statistics.median(cpu_us["bare"])
    print(
        f"{'configuration':34} {'req/s':>7} {'ratio':>6} {'server CPU/req':>15} {'added':>9}"
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
            f"{name:34} {statistics.median(rps[name]):7.0f} {ratio:6.2f} "
            f"{cpu:12.0f} µs {cpu - bare_cpu:+7.0f} µs {bare_cpu / cpu:9.2f}"
        )
    official = "official_otel_all_sampled"
    for delay in ("_no_write_delay", ""):  # clue.log's default first, then the boutique's delay
        sampled, default = f"clue_all_sampled{delay}", f"clue_adaptive{delay}"
        spread = per_round(sampled, official)
        print(
            f"{sampled} / {official}: {statistics.median(spread):.2f} by throughput"
            f" (per round {spread[0]:.2f} to {spread[-1]:.2f});"
            f" {default} adds {added[default] / added[official]:.2f} of its server CPU"
        )
    for name in ("clue_adaptive", "clue_all_sampled", official):
        spread = per_round(name, "bare")
        print(f"{name}: ratio per round from {spread[0]:.2f} to {spread[-1]:.2f}")
    goal("core.asgi_adaptive", ratios["clue_adaptive"], ">=", 0.7)
    goal("core.asgi_all_sampled", ratios["clue_all_sampled"], ">=", 0.4)
    for label, name in (
        ("adaptive_no_write_delay", "clue_adaptive_no_write_delay"),
        ("all_sampled_no_write_delay", "clue_all_sampled_no_write_delay"),
        ("official", official),
    ):
        info(f"core.asgi_{label}", ratio_to_bare=ratios[name], added_cpu_us=added[name])
    sampled_vs_official = statistics.median(per_round("clue_all_sampled_no_write_delay", official))
    goal("core.asgi_all_sampled_vs_official", sampled_vs_official, ">=", 1.0)
    added_vs_official = added["clue_adaptive_no_write_delay"] / added[official]
    goal("core.asgi_added_cpu_vs_official", added_vs_official, "<=", 0.5)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
