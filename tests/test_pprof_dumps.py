"""Thread and task dumps of a busy server, the command line and the index page, over HTTP."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.test_pprof_support import pprof_app, running, serve, spin_hot_loop


class Shop:
    """A slow endpoint whose requests stay parked in a coroutine chain until released."""

    def __init__(self) -> None:
        self.parked = 0
        self.release = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def wait_for_payment(self) -> None:
        self.parked += 1
        await self.release.wait()

    async def checkout(self, request: Request) -> PlainTextResponse:
        self.loop = asyncio.get_running_loop()
        await self.wait_for_payment()
        return PlainTextResponse("paid")


def other_loop_worker(stop: threading.Event) -> None:
    """A second event loop, in its own thread, with a task of its own."""

    async def reconcile_ledger() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)

    asyncio.run(reconcile_ledger())


@pytest.fixture(scope="module")
def shop() -> Shop:
    return Shop()


@pytest.fixture(scope="module")
def base_url(shop: Shop) -> Iterator[str]:
    with serve(pprof_app(Route("/checkout", shop.checkout))) as url:
        yield url


def test_threads_dump_shows_a_busy_thread(base_url: str) -> None:
    with running(spin_hot_loop, "busy-worker") as thread:
        text = httpx.get(f"{base_url}/debug/pprof/threads", timeout=10)
        as_json = httpx.get(f"{base_url}/debug/pprof/threads?format=json", timeout=10)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    block = text.text.split('Thread "busy-worker"', 1)[1].split("\nThread ", 1)[0]
    assert f"ident {thread.ident}, native id {thread.native_id}, daemon" in block
    assert "in spin_hot_loop" in block and "total += i * i % 7" in block  # source lines too
    assert text.text.split("\n\n", 1)[1].startswith('Thread "MainThread"')

    threads = {t["name"]: t for t in as_json.json()["threads"]}
    busy = threads["busy-worker"]
    assert busy["ident"] == thread.ident and busy["daemon"] is True
    assert [f["function"] for f in busy["stack"]][-1] in ("spin_hot_loop", "Event.is_set")
    assert any(f["function"] == "spin_hot_loop" for f in busy["stack"])
    assert busy["stack"][0]["function"] == "Thread._bootstrap"  # root first
    assert threads["uvicorn"]["daemon"] is True


def test_tasks_dump_shows_parked_requests_and_other_loops(base_url: str, shop: Shop) -> None:
    checkouts = [
        threading.Thread(target=httpx.get, args=(f"{base_url}/checkout",), kwargs={"timeout": 30})
        for _ in range(2)
    ]
    with running(other_loop_worker, "ledger-loop"):
        for thread in checkouts:
            thread.start()
        deadline = time.monotonic() + 10
        while shop.parked < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        text = httpx.get(f"{base_url}/debug/pprof/tasks", timeout=10).text
        tasks = httpx.get(f"{base_url}/debug/pprof/tasks?format=json", timeout=10).json()["tasks"]
    assert shop.loop is not None
    shop.loop.call_soon_threadsafe(shop.release.set)
    for thread in checkouts:
        thread.join(10)

    parked = [t for t in tasks if any(f["function"] == "Shop.checkout" for f in t["stack"])]
    assert len(parked) == 2
    functions = [f["function"] for f in parked[0]["stack"]]
    # The coroutine chain, outermost (uvicorn's request cycle) first, down to the awaited event.
    assert parked[0]["coroutine"] == "RequestResponseCycle.run_asgi" == functions[0]
    assert functions.index("Shop.checkout") < functions.index("Shop.wait_for_payment")
    assert functions[-1] == "Event.wait"
    assert parked[0]["state"] == "waiting" and parked[0]["thread"] == "uvicorn"
    assert parked[0]["awaiting"].startswith("<Future pending")

    serving_loop = parked[0]["loop"]
    # The task serving the dump request itself is the running one.
    assert any(t["state"] == "running" and t["loop"] == serving_loop for t in tasks)
    ledger = [t for t in tasks if t["coroutine"].endswith("reconcile_ledger")]
    assert ledger and ledger[0]["thread"] == "ledger-loop" and ledger[0]["loop"] != serving_loop

    assert "coroutine RequestResponseCycle.run_asgi" in text
    assert "in Shop.wait_for_payment" in text and "await self.release.wait()" in text
    assert 'in thread "ledger-loop"' in text


def test_cmdline(base_url: str) -> None:
    response = httpx.get(f"{base_url}/debug/pprof/cmdline", timeout=10)
    assert response.status_code == 200
    assert response.text.splitlines() == sys.orig_argv


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value for name, value in attrs if tag == "a" and name == "href" and value]


def test_index_links_every_profile(base_url: str) -> None:
    redirect = httpx.get(f"{base_url}/debug/pprof", timeout=10)
    assert redirect.status_code in (301, 307, 308)
    page = httpx.get(f"{base_url}/debug/pprof/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = Links()
    links.feed(page.text)
    targets = [urljoin(f"{base_url}/debug/pprof/", href) for href in links.hrefs]
    paths = {httpx.URL(t).path for t in targets}
    assert paths == {
        f"/debug/pprof/{name}" for name in ("profile", "heap", "threads", "tasks", "cmdline")
    }
    for target in targets:  # the quick ones answer; the profiles take 10 to 30 seconds
        if "seconds=" not in target:
            assert httpx.get(target, timeout=10).status_code == 200, target
    assert "CPU profile" in page.text and "tracemalloc" in page.text
