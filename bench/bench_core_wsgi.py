"""Flask JSON endpoint under gunicorn: bare against clue's WSGI stack and the official middleware.

Each configuration runs in its own gunicorn server (one sync worker, a real port
on loopback), configured in the worker the way a service would be:
``clue.configure`` (spans through the batch processor to a no-op exporter,
metrics to a no-op exporter, logs as JSON to /dev/null) and
``clue.wsgi.ClueMiddleware`` around ``app.wsgi_app`` with the route named in a
``before_request`` function (docs/integrations.md); the official
``OpenTelemetryMiddleware`` of ``opentelemetry-instrumentation-wsgi`` on the plain
OpenTelemetry SDK. gunicorn's sync worker closes each connection after its
response, so the load (separate client processes, an asyncio loop of CONNECTIONS
clients) opens a connection per request, sending the next as soon as the
previous response is complete. Configurations are measured in interleaved rounds
for SECONDS each; ratios are requests per second against the bare server of the
same round (median over rounds); the server's CPU time per request is reported
too, with the "CPU ratio" (bare CPU per request / this CPU per request: the
throughput ratio of a worker saturating its core, much less sensitive to other
load on the machine than throughput).

    .venv/bin/python bench/bench_core_wsgi.py
    CLUE_BENCH_ROUNDS=2 CLUE_BENCH_SECONDS=0.5 .venv/bin/python bench/bench_core_wsgi.py
"""

from __future__ import annotations

import asyncio
import functools
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

CONNECTIONS = 8
SECONDS = float(os.environ.get("CLUE_BENCH_SECONDS", "1.5"))
ROUNDS = int(os.environ.get("CLUE_BENCH_ROUNDS", "6"))
PATH = "/products/42"

# name: (sampler ("sdk": the plain OpenTelemetry SDK, no clue), middleware)
CONFIGS: dict[str, tuple[str, str]] = {
    "bare": ("none", "none"),
    "clue_adaptive": ("adaptive", "clue"),
    "clue_all_sampled": ("always_on", "clue"),
    "clue_all_sampled_no_write_delay": ("always_on", "clue"),
    "official_otel_all_sampled": ("sdk", "official"),
}

DESCRIPTIONS = {
    "bare": "Flask + gunicorn (one sync worker), no observability (baseline)",
    "clue_adaptive": "configure() + clue.wsgi.ClueMiddleware, adaptive sampler (default)",
    "clue_all_sampled": "configure() + clue.wsgi.ClueMiddleware, every request sampled",
    "clue_all_sampled_no_write_delay": "clue_all_sampled, each log line written at once",
    "official_otel_all_sampled": "plain SDK + official WSGI OpenTelemetryMiddleware (all sampled)",
}


# --- server side (one gunicorn per configuration) ------------------------------------------


def _app(name: str) -> Any:
    """The configuration's WSGI app, made in the worker (after the fork)."""
    from flask import Flask, request

    from clue import log
    from reference_services.common.runtime import SERVICE_LOG_WRITE_DELAY

    sampler, middleware = CONFIGS[name]
    if sampler == "sdk":
        import _null_telemetry

        _null_telemetry.configure_sdk("bench-wsgi")
    elif sampler != "none":
        import _null_telemetry

        _null_telemetry.configure("bench-wsgi", sampler)
    log.configure(
        outputs=[log.Output(open(os.devnull, "w"), format="json")],  # noqa: SIM115
        write_delay=0 if name.endswith("_no_write_delay") else SERVICE_LOG_WRITE_DELAY,
    )
    app = Flask("bench")

    @app.get("/products/<product_id>")
    def product(product_id: str) -> dict[str, Any]:
        return {"id": product_id, "name": "mug", "price": 12}

    if middleware == "clue":
        from clue.wsgi import ROUTE_KEY, ClueMiddleware

        @app.before_request
        def name_the_route() -> None:
            if request.url_rule is not None:
                request.environ[ROUTE_KEY] = request.url_rule.rule

        app.wsgi_app = ClueMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    elif middleware == "official":
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _serve(name: str) -> None:
    from gunicorn.app.base import BaseApplication

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"127.0.0.1:{port}",
                "workers": 1,
                "worker_class": "sync",
                "backlog": 256,
                "loglevel": "warning",
                "post_fork": lambda server, worker: pin_server(),
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _app(name)

    print(f"PORT {port}", flush=True)
    Server().run()


# --- load side (separate processes) --------------------------------------------------------


class _Exchange(asyncio.Protocol):
    """One request on a connection of its own; done with the status line at close."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request = request
        self.done = done
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if len(self.head) < 12:
            self.head += data[:12]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.head)


async def _client(port: int, request: bytes, deadline: float) -> int:
    """Requests one after the other until ``deadline``, each on a new connection (the sync
    worker closes it after the response); a protocol, lighter than asyncio's streams."""
    loop = asyncio.get_running_loop()
    count = 0
    while time.perf_counter() < deadline:
        done: asyncio.Future[bytes] = loop.create_future()
        await loop.create_connection(functools.partial(_Exchange, request, done), "127.0.0.1", port)
        head = await done
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response: {head!r}")
        count += 1
    return count


async def _load(port: int, seconds: float, connections: int) -> tuple[int, float]:
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    await _client(port, request.encode(), time.perf_counter() + 0.3)  # warm-up
    started = time.perf_counter()
    deadline = started + seconds
    counts = await asyncio.gather(
        *(_client(port, request.encode(), deadline) for _ in range(connections))
    )
    return sum(counts), time.perf_counter() - started


def _run_load(port: int) -> None:
    pin_load()  # its description is printed once, by main
    count, elapsed = asyncio.run(_load(port, SECONDS, CONNECTIONS))
    print(f"DONE {count} {elapsed}", flush=True)


# --- orchestration -------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    """CPU seconds of the gunicorn master ``pid`` and its worker."""
    import psutil

    master = psutil.Process(pid)
    total = 0.0
    for process in [master, *master.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def _wait_until_answering(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn on port {port} did not start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(f"GET {PATH} HTTP/1.0\r\n\r\n".encode())
                if conn.recv(64).startswith(b"HTTP/1.0 200"):  # gunicorn answers in kind
                    return
        except OSError:
            pass
        time.sleep(0.1)


def _measure(pid: int, port: int) -> tuple[float, float]:
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
    return requests / float(elapsed), cpu / requests * 1e6


def main(argv: Sequence[str]) -> int:
    if len(argv) > 2 and argv[1] == "--serve":
        _serve(argv[2])
        return 0
    if len(argv) > 2 and argv[1] == "--load":
        _run_load(int(argv[2]))
        return 0
    print(pin_load())  # this process only waits for the load processes
    for name, description in DESCRIPTIONS.items():
        print(f"  {name}: {description}")
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        for name in CONFIGS:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", name],
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("PORT "):
                raise RuntimeError(f"server {name} did not start: {line!r}")
            servers[name] = (proc, int(line.split()[1]))
            _wait_until_answering(servers[name][1], proc)
        rps: dict[str, list[float]] = {name: [] for name in CONFIGS}
        cpu_us: dict[str, list[float]] = {name: [] for name in CONFIGS}
        names = list(servers)
        for round_ in range(ROUNDS):  # each round starts with another configuration
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                proc, port = servers[name]
                rate, cpu = _measure(proc.pid, port)
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
    print(f"{'configuration':34} {'req/s':>7} {'ratio':>6} {'server CPU/req':>15} {'added':>9}")
    ratios: dict[str, float] = {}
    added: dict[str, float] = {}
    for name in CONFIGS:
        ratios[name] = statistics.median(per_round(name, "bare"))
        cpu = statistics.median(cpu_us[name])
        added[name] = cpu - bare_cpu
        print(
            f"{name:34} {statistics.median(rps[name]):7.0f} {ratios[name]:6.2f} "
            f"{cpu:12.0f} µs {cpu - bare_cpu:+7.0f} µs"
        )
    official = "official_otel_all_sampled"
    for name in ("clue_adaptive", "clue_all_sampled_no_write_delay", official):
        spread = per_round(name, "bare")
        print(f"{name}: ratio per round from {spread[0]:.2f} to {spread[-1]:.2f}")
    # bare CPU per request over this one's: the throughput ratio of a worker saturating its
    # core, far less sensitive than throughput to what else runs on the machine
    cpu_ratio = {name: bare_cpu / statistics.median(cpu_us[name]) for name in CONFIGS}
    goal("core.wsgi_adaptive", ratios["clue_adaptive"], ">=", 0.7)
    for label, name in (
        ("all_sampled", "clue_all_sampled"),
        ("all_sampled_no_write_delay", "clue_all_sampled_no_write_delay"),
        ("official", official),
    ):
        info(
            f"core.wsgi_{label}",
            ratio_to_bare=ratios[name],
            added_cpu_us=added[name],
            cpu_ratio=cpu_ratio[name],
        )
    info("core.wsgi_adaptive_cpu", cpu_ratio=cpu_ratio["clue_adaptive"])
    sampled_cpu = statistics.median(cpu_us["clue_all_sampled_no_write_delay"])
    info("core.wsgi_vs_official_cpu", ratio=statistics.median(cpu_us[official]) / sampled_cpu)
    vs_official = statistics.median(per_round("clue_all_sampled_no_write_delay", official))
    goal("core.wsgi_vs_official", vs_official, ">=", 1.0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
