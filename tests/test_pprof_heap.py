"""Heap profiles over real HTTP: a deliberate allocation found in pprof and in the text table."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from tests.test_pprof_support import decode, flat, pprof_app, serve

KEPT: list[object] = []


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
def allocation_during_window() -> Iterator[None]:
    """Allocates shortly after the heap window opened, in another thread."""
    timer = threading.Timer(0.3, allocate_orders)
    timer.start()
    yield
    timer.join()
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
    assert text.startswith("Heap profile: allocations made during the last 1.")
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
