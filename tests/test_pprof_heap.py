"""Heap profiles over real HTTP: a deliberate allocation found in pprof and in the text table."""

from __future__ import annotations

import re
import threading
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from clue.debug.pprof.heap import HeapProfile, HeapRecorder
from tests.test_pprof_support import decode, flat, pprof_app, serve

KEPT: list[object] = []
WAIT = 30  # seconds: a generous bound on waits that take milliseconds on an idle machine


class Order:
    def __init__(self, number: int) -> None:
        self.number = number
        self.lines = [number, number + 1]


def allocate_orders() -> None:
    """Deliberately allocates (and keeps) many objects."""
    KEPT.extend(Order(n) for n in range(10_000))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(pprof_app()) as url:
        yield url


@pytest.fixture
def allocation_during_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Allocates in another thread once the server's heap window is open, and keeps the window
    open until that is done: on a busy machine a timer may fire before the window opens, and
    10,000 traced allocations may take longer than the window (over a second under load)."""
    opened, allocated = threading.Event(), threading.Event()
    start, stop = HeapRecorder.start, HeapRecorder.stop

    def start_and_signal(recorder: HeapRecorder) -> None:
        start(recorder)
        opened.set()

    def stop_once_allocated(recorder: HeapRecorder) -> HeapProfile:
        allocated.wait(WAIT)
        return stop(recorder)

    def allocate_in_window() -> None:
        if opened.wait(WAIT):
            allocate_orders()
        allocated.set()

    monkeypatch.setattr(HeapRecorder, "start", start_and_signal)
    monkeypatch.setattr(HeapRecorder, "stop", stop_once_allocated)
    allocator = threading.Thread(target=allocate_in_window, name="allocator")
    allocator.start()
    yield
    allocator.join(WAIT)
    assert opened.is_set(), "the heap window never opened"
    KEPT.clear()


def test_heap_pprof_finds_the_allocation(base_url: str, allocation_during_window: None) -> None:
    assert not tracemalloc.is_tracing()
    response = httpx.get(f"{base_url}/debug/pprof/heap?seconds=1", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    profile = decode(response.content)
    strings = profile.string_table
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    assert strings[profile.default_sample_type] == "inuse_space"
    space = flat(profile, "inuse_space")
    objects = flat(profile, "inuse_objects")
    top = max(space, key=lambda name: space[name])
    assert top in ("Order.__init__", "allocate_orders", "allocate_orders.<locals>.<genexpr>")
    held = sum(v for k, v in space.items() if "Order" in k or "allocate_orders" in k)
    assert held > 10_000 * 100  # each Order with its dict and list is well over 100 bytes
    assert sum(objects.values()) >= 10_000
    assert max(len(sample.location_id) for sample in profile.sample) <= 16  # default depth
    comments = [strings[i] for i in profile.comment]
    assert any(c.startswith("allocated during the window and still alive") for c in comments)
    assert not tracemalloc.is_tracing()  # started for the profile, stopped after


def test_heap_text_table(base_url: str, allocation_during_window: None) -> None:
    response = httpx.get(
        f"{base_url}/debug/pprof/heap?seconds=1&format=text&top=5&frames=2", timeout=30
    )
    assert response.status_code == 200, response.text
    text = response.text
    heading = r"Heap profile: allocations made during the last (\d+\.\d) s and still alive\n"
    window = re.match(heading, text)
    assert window is not None, text
    assert float(window[1]) >= 1.0  # seconds=1, held open longer while the allocation runs
    assert "(started for this profile, 2 frames)" in text
    rows = text.split("function (file:line)\n", 1)[1].splitlines()
    assert 1 <= len(rows) <= 5
    assert "test_pprof_heap.py" in rows[0]
    assert any(name in rows[0] for name in ("Order.__init__", "allocate_orders"))


def test_heap_leaves_existing_tracing_alone(base_url: str, allocation_during_window: None) -> None:
    tracemalloc.start(5)
    try:
        response = httpx.get(f"{base_url}/debug/pprof/heap?seconds=1&format=text", timeout=30)
        assert response.status_code == 200
        assert "(already tracing, 5 frames)" in response.text
        assert "test_pprof_heap.py" in response.text
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_a_second_concurrent_heap_profile_gets_409(base_url: str) -> None:
    results: list[int] = []
    first = threading.Thread(
        target=lambda: results.append(
            httpx.get(f"{base_url}/debug/pprof/heap?seconds=1", timeout=30).status_code
        )
    )
    first.start()
    deadline = time.monotonic() + 10
    while not tracemalloc.is_tracing() and time.monotonic() < deadline:  # the first one began
        time.sleep(0.01)
    second = httpx.get(f"{base_url}/debug/pprof/heap?seconds=1", timeout=30)
    assert "already" in second.json()["error"]
    first.join(30)
    assert second.status_code == 409
    assert results == [200]
    assert not tracemalloc.is_tracing()
