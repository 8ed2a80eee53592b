"""Analyses of stored traces: the critical path of one, its flame graph's rows, and
two of them compared.

Both work on the trace dicts :func:`clue.collector.queries.trace` returns (spans in
tree order, each with its ``depth``), so the JSON API and the pages agree.
"""

from __future__ import annotations

import heapq
from typing import Any

Json = dict[str, Any]


def critical_path(trace: Json) -> Json:
    """Mark the spans that decided the root span's duration, as documented in collector.md.

    Walking back from the root's end: the root's time is on the path until the child
    that finished last (its end clamped to the cursor); that child's time, walked the
    same way, is on the path down to its start; then the parent again, back to the
    child that finished last before that start, and so on to the parent's start.
    Children that start before their parent's window count only inside it. Each span
    gets ``critical_ns``, its own time on the path (0 when off it); they sum to the
    root's duration. Returns ``{"span_ids": [...], "duration_ns": ...}`` (tree order).
    """
    spans: list[Json] = trace["spans"]
    for s in spans:
        s["critical_ns"] = 0
    if not spans:
        return {"span_ids": [], "duration_ns": 0}
    root = spans[0]
    children: dict[str, list[Json]] = {}
    for s in spans[1:]:
        if s["parent_id"]:
            children.setdefault(s["parent_id"], []).append(s)
    for group in children.values():
        group.sort(key=_end, reverse=True)
    # frames of [span, cursor, floor, next child index]: iterative, a trace may be deep
    frames: list[list[Any]] = [[root, _end(root), root["start_ns"], 0]]
    while frames:
        frame = frames[-1]
        span, cursor, floor, i = frame
        group = children.get(span["span_id"], [])
        while i < len(group) and group[i]["start_ns"] >= cursor:
            i += 1  # wholly after the cursor: off the path, and the cursor only moves back
        if i < len(group) and _end(group[i]) > floor:
            child = group[i]
            child_end = min(_end(child), cursor)
            span["critical_ns"] += cursor - child_end
            frame[1], frame[3] = max(child["start_ns"], floor), i + 1
            frames.append([child, child_end, max(child["start_ns"], floor), 0])
        else:
            span["critical_ns"] += max(cursor - floor, 0)
            frames.pop()
    return {
        "span_ids": [s["span_id"] for s in spans if s["critical_ns"] > 0],
        "duration_ns": root["duration_ns"],
    }


def _end(span: Json) -> int:
    return int(span["start_ns"] + span["duration_ns"])


def flame_rows(trace: Json) -> int:
    """Give each span its ``flame_row`` (0 at the top); return how many rows there are.

    A span's children go below it in lanes. In order of when their subtrees start,
    each child takes, with its whole subtree, the first lane whose subtrees have all
    ended by then, so that sequential siblings share a row and siblings running in
    parallel get one each. A lane is as tall as its tallest subtree; lanes follow one
    another. The roots (the trace's root and any orphan) are laid out the same way.
    Times are half-open ``[start, end)``, a span taking at least 1 ns: no two spans
    on a row overlap, and with nothing in parallel a span's row is its depth.
    """
    spans: list[Json] = trace["spans"]
    parent = [-1] * len(spans)
    children: list[list[int]] = [[] for _ in spans]
    roots: list[int] = []
    ancestors: list[int] = []  # of the span at hand, one per depth: spans come in tree order
    for i, s in enumerate(spans):
        del ancestors[s.get("depth", 0) :]
        if ancestors:
            parent[i] = ancestors[-1]
            children[parent[i]].append(i)
        else:
            roots.append(i)
        ancestors.append(i)
    # each subtree's time and height, children before parents
    first = [int(s["start_ns"]) for s in spans]
    last = [max(_end(s), s["start_ns"] + 1) for s in spans]
    height = [1] * len(spans)
    below = [0] * len(spans)  # a span's row under the first row below its parent
    for i in reversed(range(len(spans))):
        group = children[i]
        if group:  # most spans are leaves
            height[i] += _lanes(group, first, last, height, below)
            first[i] = min(first[i], *(first[c] for c in group))
            last[i] = max(last[i], *(last[c] for c in group))
    rows = _lanes(roots, first, last, height, below)
    for i, s in enumerate(spans):  # parents before children
        s["flame_row"] = below[i] + (spans[parent[i]]["flame_row"] + 1 if parent[i] >= 0 else 0)
    return rows


def _lanes(
    group: list[int], first: list[int], last: list[int], height: list[int], below: list[int]
) -> int:
    """Put the subtrees in *group* (siblings) in lanes, setting each one's ``below``;
    return the rows the lanes take."""
    free: list[int] = []  # lanes whose subtrees have ended, lowest first
    busy: list[tuple[int, int]] = []  # (when the lane's last subtree ends, lane)
    lane_of: dict[int, int] = {}
    tall: list[int] = []  # each lane's height
    for c in sorted(group, key=lambda c: (first[c], c)):
        while busy and busy[0][0] <= first[c]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lane = heapq.heappop(free) if free else len(tall)
        if lane == len(tall):
            tall.append(0)
        tall[lane] = max(tall[lane], height[c])
        heapq.heappush(busy, (last[c], lane))
        lane_of[c] = lane
    tops = [0]
    for h in tall:
        tops.append(tops[-1] + h)
    for c, lane in lane_of.items():
        below[c] = tops[lane]
    return tops[-1]


def compare(a: Json, b: Json) -> Json:
    """Spans of traces *a* and *b* matched by their place in the tree.

    A span's key is its parent's key and its (service, name, n): the n-th of its
    siblings with that service and name, in start order. Rows come in tree order of
    both traces merged; ``diff_ns`` is b's duration minus a's (None when in one only).
    """
    keyed_a, keyed_b = _keys(a["spans"]), _keys(b["spans"])
    order: list[str] = []
    children: dict[str, list[str]] = {}
    for keyed in (keyed_a, keyed_b):
        for key, (parent, _) in keyed.items():
            if key not in children:
                children[key] = []
                (children.setdefault(parent, []) if parent else order).append(key)
    rows: list[Json] = []
    stack = [(key, 0) for key in reversed(order)]
    while stack:
        key, depth = stack.pop()
        sa, sb = keyed_a.get(key, (None, None))[1], keyed_b.get(key, (None, None))[1]
        some = sa or sb
        assert some is not None
        diff = sb["duration_ns"] - sa["duration_ns"] if sa and sb else None
        rows.append(
            {
                "service": some["service"],
                "name": some["name"],
                "depth": depth,
                "in": "both" if sa and sb else ("a" if sa else "b"),
                "a": _side(sa),
                "b": _side(sb),
                "diff_ns": diff,
                "diff_ratio": diff / sa["duration_ns"]
                if diff is not None and sa and sa["duration_ns"]
                else None,
            }
        )
        stack += [(child, depth + 1) for child in reversed(children.get(key, []))]
    return {
        "a": _summary(a),
        "b": _summary(b),
        "same_operation": _root(a) == _root(b),
        "duration_diff_ns": b["duration_ns"] - a["duration_ns"],
        "matched": sum(1 for r in rows if r["in"] == "both"),
        "only_a": sum(1 for r in rows if r["in"] == "a"),
        "only_b": sum(1 for r in rows if r["in"] == "b"),
        "spans": rows,
    }


def _keys(spans: list[Json]) -> dict[str, tuple[str, Json]]:
    """Each span's key (see :func:`compare`) -> (its parent's key, the span), in tree order."""
    key_of: dict[str, str] = {}
    seen: dict[tuple[str, str, str], int] = {}
    out: dict[str, tuple[str, Json]] = {}
    for s in spans:  # tree order: a parent before its children, siblings by start
        parent = key_of.get(s["parent_id"], "") if s["depth"] else ""
        n = seen.get((parent, s["service"], s["name"]), 0)
        seen[(parent, s["service"], s["name"])] = n + 1
        key = f"{parent}\x1e{s['service']}\x1f{s['name']}\x1f{n}"
        key_of[s["span_id"]] = key
        out[key] = (parent, s)
    return out


def _side(span: Json | None) -> Json | None:
    if span is None:
        return None
    return {
        "span_id": span["span_id"],
        "duration_ns": span["duration_ns"],
        "error": span["status"]["code"] == "error",
    }


def _root(trace: Json) -> tuple[str, str]:
    return trace["spans"][0]["service"], trace["spans"][0]["name"]


def _summary(trace: Json) -> Json:
    service, name = _root(trace)
    return {
        "trace_id": trace["trace_id"],
        "root": {"service": service, "name": name},
        "start_ns": trace["start_ns"],
        "duration_ns": trace["duration_ns"],
        "span_count": trace["span_count"],
        "error_count": trace["error_count"],
    }
