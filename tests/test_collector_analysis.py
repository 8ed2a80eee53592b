"""clue.collector.analysis on span trees built by hand: the critical path's edge cases
(overlap, clock skew, depth) and how compare matches repeated siblings. The browser
tests (test_collector_trace_views) cover both through OTLP and the pages."""

from __future__ import annotations

from typing import Any

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
