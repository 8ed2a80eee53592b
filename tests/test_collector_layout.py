"""The service map's layered layout, on arbitrary graphs (cycles, parallel edges,
long edges): nodes and labels never overlap, and every edge runs from its
source's side to its target's side without passing through a node or another
edge's label."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from clue.collector.layout import Box, Route, layout


def _overlap(a: Box, b: Box) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def _inside(x: float, y: float, box: Box, margin: float = 0.5) -> bool:
    return (
        box.x + margin < x < box.x + box.width - margin
        and box.y + margin < y < box.y + box.height - margin
    )


def _cubic(a: float, b: float, c: float, d: float, t: float) -> float:
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d


def _samples(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points along the edge as the map draws it: level runs straight, the rest
    cubic curves with level ends."""
    out = []
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        mid = (x1 + x2) / 2
        for t in (step / 20 for step in range(21)):
            if y1 != y2:
                out.append((_cubic(x1, mid, mid, x2, t), _cubic(y1, y1, y2, y2, t)))
            else:
                out.append((x1 + (x2 - x1) * t, y1))
    return out


graphs = st.integers(min_value=2, max_value=9).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(st.floats(60, 260), st.floats(30, 70)), min_size=n, max_size=n),
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(10, 200)).filter(
                lambda e: e[0] != e[1]
            ),
            max_size=14,
        ),
    )
)


@settings(max_examples=150, deadline=None)
@given(graphs)
def test_layout_keeps_nodes_labels_and_edges_apart(
    graph: tuple[list[tuple[float, float]], list[tuple[int, int, float]]],
) -> None:
    sizes, edges = graph
    nodes = [Box(w, h) for w, h in sizes]
    routes = [Route(a, b, Box(w, 16)) for a, b, w in edges]
    width, height = layout(nodes, routes)

    boxes = nodes + [r.label for r in routes]
    for i, a in enumerate(boxes):
        assert a.x >= 0 and a.x + a.width <= width + 1e-6
        assert a.y >= 0 and a.y + a.height <= height + 1e-6
        for b in boxes[i + 1 :]:
            assert not _overlap(a, b), (a, b)
    for r in routes:
        (x0, y0), (x1, y1) = r.points[0], r.points[-1]
        source, target = nodes[r.source], nodes[r.target]
        assert x0 in (source.x, source.x + source.width)
        assert source.y <= y0 <= source.y + source.height
        assert x1 in (target.x, target.x + target.width)
        assert target.y <= y1 <= target.y + target.height
        for x, y in _samples(r.points):
            for k, node in enumerate(nodes):
                assert not _inside(x, y, node), f"edge {r.source}→{r.target} crosses node {k}"
            for other in routes:
                if other is not r:
                    assert not _inside(x, y, other.label), "an edge crosses another's label"


def test_a_chain_reads_left_to_right_and_a_cycle_still_lays_out() -> None:
    nodes = [Box(100, 40) for _ in range(3)]
    routes = [Route(0, 1, Box(30, 16)), Route(1, 2, Box(30, 16)), Route(2, 0, Box(30, 16))]
    layout(nodes, routes)
    assert nodes[0].x < nodes[1].x < nodes[2].x
    back = routes[2]
    assert back.points[0][0] == nodes[2].x  # leaves its source leftwards
    assert back.points[-1][0] == nodes[0].x + nodes[0].width  # enters its target from the right
    assert layout([], []) == (0.0, 0.0)
