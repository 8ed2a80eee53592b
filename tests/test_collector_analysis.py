"""clue.collector.analysis on span trees built by hand: the critical path's edge cases
(overlap, clock skew, depth), the flame graph's rows (by example and as properties
of random trees) and how compare matches repeated siblings. The browser tests
(test_collector_trace_views) cover them through OTLP and the pages."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clue.collector import analysis


def span(sid: str, parent: str, start: int, end: int, depth: int, name: str = "") -> Any:
    return {
        "span_id": sid,
        "parent_id": parent,
        "start_ns": start,
        "duration_ns": end - start,
        "service": "s",
        "name": name or sid,
        "depth": depth,
        "status": {"code": "unset", "message": ""},
    }


def trace(spans: list[Any], trace_id: str = "t") -> Any:
    start = min(s["start_ns"] for s in spans)
    end = max(s["start_ns"] + s["duration_ns"] for s in spans)
    return {
        "trace_id": trace_id,
        "spans": spans,
        "start_ns": start,
        "duration_ns": end - start,
        "span_count": len(spans),
        "error_count": 0,
    }


def critical(spans: list[Any]) -> dict[str, int]:
    analysis.critical_path(trace(spans))
    return {s["span_id"]: s["critical_ns"] for s in spans}


def test_overlapping_children_share_the_path_where_each_finished_last() -> None:
    spans = [
        span("r", "", 0, 100, 0),
        span("early", "r", 10, 70, 1),  # overlapped by late from 50 on
        span("late", "r", 50, 90, 1),
        span("inside", "r", 60, 65, 1),  # under late's shadow: off the path
    ]
    assert critical(spans) == {"r": 20, "early": 40, "late": 40, "inside": 0}


def test_skewed_children_count_only_inside_their_parent() -> None:
    spans = [
        span("r", "", 0, 100, 0),
        span("before", "r", -20, 30, 1),  # began before its parent (clock skew)
        span("after", "r", 80, 130, 1),  # ended after it
    ]
    got = critical(spans)
    assert got == {"r": 50, "before": 30, "after": 20}
    assert sum(got.values()) == 100


def test_a_deep_chain_is_walked_without_recursion() -> None:
    depth = 5000
    spans = [span(str(i), str(i - 1) if i else "", i, 2 * depth - i, i) for i in range(depth)]
    got = critical(spans)
    assert got["0"] == 2 and got[str(depth - 1)] == 2 and sum(got.values()) == 2 * depth


def test_compare_matches_repeated_siblings_by_rank() -> None:
    a = trace(
        [
            span("r", "", 0, 100, 0, "GET"),
            span("q1", "r", 0, 10, 1, "SELECT"),
            span("q2", "r", 20, 30, 1, "SELECT"),
        ]
    )
    b = trace(
        [
            span("R", "", 0, 120, 0, "GET"),
            span("Q1", "R", 0, 12, 1, "SELECT"),
            span("Q2", "R", 20, 26, 1, "SELECT"),
            span("Q3", "R", 40, 50, 1, "SELECT"),
        ]
    )
    got = analysis.compare(a, b)
    assert [(r["in"], r["diff_ns"]) for r in got["spans"]] == [
        ("both", 20),
        ("both", 2),
        ("both", -4),
        ("b", None),
    ]
    assert (got["matched"], got["only_a"], got["only_b"]) == (3, 0, 1)
    assert got["spans"][3]["b"]["span_id"] == "Q3" and got["spans"][3]["a"] is None


def rows(spans: list[Any]) -> dict[str, int]:
    count = analysis.flame_rows(trace(spans))
    assert count == 1 + max(s["flame_row"] for s in spans)
    return {s["span_id"]: s["flame_row"] for s in spans}


def test_parallel_calls_get_a_lane_each_with_their_subtrees() -> None:
    spans = [
        span("checkout", "", 0, 100, 0),
        span("cart", "checkout", 10, 60, 1),  # three gRPC calls at once
        span("redis", "cart", 15, 40, 2),
        span("quote", "checkout", 11, 50, 1),
        span("charge", "checkout", 12, 70, 1),
        span("email", "checkout", 75, 90, 1),  # after them all: back on the first lane
    ]
    assert rows(spans) == {
        "checkout": 0,
        "cart": 1,
        "redis": 2,  # cart's subtree keeps its lane two rows tall
        "quote": 3,
        "charge": 4,
        "email": 1,
    }


def test_sequential_siblings_and_orphans_share_a_row() -> None:
    spans = [
        span("r", "", 0, 50, 0),
        span("a", "r", 0, 10, 1),
        span("b", "r", 10, 20, 1),  # starts as a ends: no overlap
        span("c", "r", 20, 20, 1),  # zero length, alone at 20
        span("orphan", "gone", 60, 80, 0),  # a second root, after the first
    ]
    assert rows(spans) == {"r": 0, "a": 1, "b": 1, "c": 1, "orphan": 0}


def test_a_zero_length_span_is_not_drawn_under_a_sibling() -> None:
    spans = [
        span("r", "", 0, 50, 0),
        span("mark", "r", 10, 10, 1),
        span("work", "r", 10, 30, 1),  # starts at the same instant
    ]
    assert rows(spans) == {"r": 0, "mark": 1, "work": 2}


def test_a_child_outliving_its_parent_keeps_the_lane_busy() -> None:
    spans = [
        span("r", "", 0, 100, 0),
        span("send", "r", 0, 10, 1),
        span("async", "send", 5, 40, 2),  # ends after its parent (fire and forget)
        span("next", "r", 20, 30, 1),  # after send, but during its child
    ]
    assert rows(spans) == {"r": 0, "send": 1, "async": 2, "next": 3}


def test_a_deep_chain_gets_a_row_per_depth_without_recursion() -> None:
    depth = 5000
    spans = [span(str(i), str(i - 1) if i else "", i, 2 * depth - i, i) for i in range(depth)]
    assert rows(spans) == {str(i): i for i in range(depth)}


def tree_order(raw: list[tuple[int, int, int]]) -> list[Any]:
    """Spans from (parent index, start, duration), in the collector's tree order: depth
    first, children by start; a parent index not before the span makes it a root."""
    spans = [
        span(str(i), str(p) if 0 <= p < i else "", start, start + length, 0)
        for i, (p, start, length) in enumerate(raw)
    ]
    children: dict[str, list[Any]] = {}
    for s in sorted(spans, key=lambda s: s["start_ns"]):
        children.setdefault(s["parent_id"], []).append(s)
    ordered: list[Any] = []
    stack = [(s, 0) for s in reversed(children.get("", []))]
    while stack:
        s, depth = stack.pop()
        s["depth"] = depth
        ordered.append(s)
        stack += [(c, depth + 1) for c in reversed(children.get(s["span_id"], []))]
    return ordered


def busy(s: Any) -> tuple[int, int]:
    """The time a span takes on its row: half-open, at least 1 ns."""
    return s["start_ns"], max(s["start_ns"] + s["duration_ns"], s["start_ns"] + 1)


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    # an end sorts before a start at the same instant: half-open intervals
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 40), st.integers(0, 100), st.integers(0, 40)),
        min_size=1,
        max_size=40,
    )
)
def test_flame_rows_never_overlap_and_use_as_few_lanes_as_can_be(
    raw: list[tuple[int, int, int]],
) -> None:
    spans = tree_order(raw)
    row = rows(spans)
    by_id = {s["span_id"]: s for s in spans}
    on_row: dict[int, list[tuple[int, int]]] = {}
    for s in spans:
        on_row.setdefault(row[s["span_id"]], []).append(busy(s))
        if s["parent_id"]:
            assert row[s["span_id"]] > row[s["parent_id"]]
    for taken in on_row.values():
        assert most_at_once(taken) == 1  # no two spans of a row overlap
    # each subtree's time; siblings in parallel (by subtree) get a lane each, no more
    extent = {s["span_id"]: busy(s) for s in spans}
    for s in reversed(spans):  # children before parents
        if s["parent_id"]:
            a, b = extent[s["parent_id"]]
            c, d = extent[s["span_id"]]
            extent[s["parent_id"]] = min(a, c), max(b, d)
    siblings: dict[str, list[str]] = {}
    for s in spans:
        siblings.setdefault(s["parent_id"], []).append(s["span_id"])
    lanes = {parent: len({row[k] for k in group}) for parent, group in siblings.items()}
    for parent, group in siblings.items():
        assert lanes[parent] == most_at_once([extent[k] for k in group])
    if all(n == 1 for n in lanes.values()):  # nothing in parallel: a row per depth
        assert all(row[i] == by_id[i]["depth"] for i in row)
