"""/healthz latency over real HTTP with slow and hanging dependencies.

Goals (measured in the same run against a single ping of one dependency):
- ops.healthz_10x100ms: /healthz over 10 HTTP dependencies that each take
  100 ms to answer, in ms: under 150 (pings run concurrently, so about one
  dependency's latency, not ten);
- ops.healthz_hang: the same plus one dependency that accepts and never
  answers (timeout 1 s): milliseconds beyond the timeout, under 50.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
from _goal import goal

from clue import health, log
from clue.admin import AdminServer

DEPENDENCIES = 10
DELAY = 0.1
TIMEOUT = 1.0


async def slow_livez(_: Request) -> PlainTextResponse:
    await asyncio.sleep(DELAY)
    return PlainTextResponse("OK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dependency_server() -> Iterator[str]:
    """A service whose /livez takes DELAY seconds, on its own thread and loop."""
    port = free_port()
    app = Starlette(routes=[Route("/livez", slow_livez)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def healthz(client: httpx.Client, url: str) -> Callable[[], object]:
    def call() -> object:
        response = client.get(url + "/healthz")
        assert response.status_code in (200, 503), response.status_code
        return response

    return call


def main() -> None:
    log.configure(outputs=[log.Output(open(os.devnull, "w"), format="json")])  # noqa: SIM115
    with dependency_server() as dep, silent_server() as silent, httpx.Client() as client:
        one_ping = median_ms(lambda: client.get(dep + "/livez"), 20)
        pingers = [health.HTTPPinger(f"dep{i}", dep) for i in range(DEPENDENCIES)]
        fast = AdminServer(checker=health.Checker(*pingers, timeout=TIMEOUT), metrics=False)
        hanging_pingers = [*pingers, health.HTTPPinger("hangs", silent)]
        hanging = AdminServer(
            checker=health.Checker(*hanging_pingers, timeout=TIMEOUT), metrics=False
        )
        with fast, hanging:
            healthz(client, fast.url)()  # warm the pingers' connection pools
            ten = median_ms(healthz(client, fast.url), 30)
            with_hang = median_ms(healthz(client, hanging.url), 7)
            assert client.get(hanging.url + "/healthz").json()["status"]["hangs"] == "NOT OK"
    print(f"one dependency ping over HTTP: {one_ping:.1f} ms (baseline)")
    print(f"/healthz over {DEPENDENCIES} such dependencies: {ten:.1f} ms", end=" ")
    print(f"= {ten / one_ping:.2f}x one ping")
    print(f"/healthz with one hanging dependency: {with_hang:.1f} ms (timeout {TIMEOUT:g} s)")
    goal("ops.healthz_10x100ms", ten, "<", 150, "ms")
    goal("ops.healthz_hang", with_hang - TIMEOUT * 1000, "<", 50, "ms")


if __name__ == "__main__":
    main()
