"""Helpers of the pprof tests: a real uvicorn server, busy threads, pprof decoding."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route

from clue.debug import pprof
from clue.debug.pprof.profile_pb2 import Profile
from tests.conftest import free_port


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


def pprof_app(*extra: BaseRoute) -> Starlette:
    """The routes mounted standalone, the way the debug engineer mounts them."""
    return Starlette(
        routes=[Mount("/debug/pprof", routes=pprof.routes()), Route("/ping", ping), *extra]
    )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """``app`` on uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def spin_hot_loop(stop: threading.Event) -> None:
    """Deliberately CPU-bound until ``stop`` is set."""
    total = 0
    while not stop.is_set():
        for i in range(20_000):
            total += i * i % 7


@contextmanager
def running(target: Callable[[threading.Event], None], name: str) -> Iterator[threading.Thread]:
    """``target(stop)`` in a thread named ``name`` for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)


def decode(body: bytes) -> Profile:
    """A gzipped pprof body decoded with clue's own profile.proto."""
    return Profile.FromString(gzip.decompress(body))


def flat(profile: Profile, sample_type: str) -> dict[str, int]:
    """Each leaf function's total of ``sample_type`` (pprof's "flat" column)."""
    strings = profile.string_table
    index = [strings[t.type] for t in profile.sample_type].index(sample_type)
    names = {f.id: strings[f.name] for f in profile.function}
    leaf_function = {loc.id: names[loc.line[0].function_id] for loc in profile.location}
    totals: dict[str, int] = {}
    for sample in profile.sample:
        name = leaf_function[sample.location_id[0]]
        totals[name] = totals.get(name, 0) + sample.value[index]
    return totals
