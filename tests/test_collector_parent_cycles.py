"""A trace whose spans name each other as parents (a broken or hostile exporter) is
stored and shown like any other: the spans of the cycle flat at the end, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.test_collector_support import CollectorProcess
from tests.test_collector_trace_views import send

# (name, service, parent index, start ms, end ms, error, attributes): "a" and "b" are
# each other's parent
CYCLE = [
    ("GET /", "web", None, 0, 100, False, {}),
    ("a", "web", 2, 10, 40, False, {}),
    ("b", "web", 1, 12, 30, False, {}),
]


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess()
    try:
        yield c
    finally:
        assert c.stop() == 0


def test_a_parent_cycle_is_shown_flat_and_compared(collector: CollectorProcess) -> None:
    trace_id, ids = send(collector, CYCLE)
    trace = collector.api(f"/api/traces/{trace_id}")
    depths = {s["span_id"]: s["depth"] for s in trace["spans"]}
    assert depths == {ids[0]: 0, ids[1]: 0, ids[2]: 0}
    assert trace["spans"][0]["span_id"] == ids[0]  # the root first
    page = httpx.get(f"{collector.ui}/trace/{trace_id}", timeout=10)
    assert page.status_code == 200 and "GET /" in page.text
    compared = collector.api("/api/compare", a=trace_id, b=trace_id)
    assert compared
