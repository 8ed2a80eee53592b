"""A layered (Sugiyama-style) left-to-right layout for the service map.

Callers sit in columns left of the services they call. Every edge is cut into
one slot per column it crosses, and its label takes a slot of its own in a
column between its ends, so that, once each column is stacked without overlap,
labels never overlap each other or a node, and an edge only ever runs through
its own slots and the gaps between columns, never behind a node.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

COLUMN_GAP = 44.0  # between two columns: where edges bend
ROW_GAP = 16.0  # between two stacked items of a column
EDGE_SLOT = 10.0  # the height an edge takes where it crosses a column
SWEEPS = 8


@dataclass
class Box:
    """A node or an edge label: its size in, its position (top left) out."""

    width: float
    height: float
    x: float = 0.0
    y: float = 0.0


@dataclass
class Route:
    """An edge from ``source`` to ``target`` (node indices) and its label's size.

    After :func:`layout`, ``points`` runs from the source's right side to the
    target's left side (or, for an edge against the flow, the other way round,
    still from source to target), and ``label`` is where its text goes.
    """

    source: int
    target: int
    label: Box
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class _Item:
    """One entry of a column: a node, an edge's label, or an edge passing through."""

    height: float
    anchor: float  # where edges attach, from the item's top
    width: float = 0.0
    node: int | None = None
    label_of: Route | None = None
    y: float = 0.0  # top
    rank: int = 0
    ups: list[_Item] = field(default_factory=list)  # neighbours in the previous column
    downs: list[_Item] = field(default_factory=list)  # and in the next one

    @property
    def mid(self) -> float:
        return self.y + self.anchor


def layout(nodes: list[Box], routes: list[Route]) -> tuple[float, float]:
    """Place ``nodes`` and route ``routes`` in place; return the drawing's width and height.

    A route must join two different nodes.
    """
    if not nodes:
        return 0.0, 0.0
    kept = _cycle_free(len(nodes), routes)
    forward = [kept[id(r)] for r in routes]
    rank = _ranks(
        len(nodes),
        [
            (r.source, r.target) if f else (r.target, r.source)
            for r, f in zip(routes, forward, strict=True)
        ],
    )
    columns: list[list[_Item]] = [[] for _ in range(2 * max(rank) + 1)]
    items = [_Item(b.height, b.height / 2, b.width, node=i) for i, b in enumerate(nodes)]
    for i, item in enumerate(items):
        item.rank = 2 * rank[i]
        columns[item.rank].append(item)
    chains = []
    for r, f in zip(routes, forward, strict=True):
        first, last = (r.source, r.target) if f else (r.target, r.source)
        chain = [items[first]]
        label_rank = 2 * rank[first] + 1  # next to the caller
        for k in range(2 * rank[first] + 1, 2 * rank[last]):
            if k == label_rank:
                item = _Item(
                    r.label.height + EDGE_SLOT, r.label.height + 2, r.label.width, label_of=r
                )
            else:
                item = _Item(EDGE_SLOT, EDGE_SLOT / 2)
            item.rank = k
            columns[k].append(item)
            chain.append(item)
        chain.append(items[last])
        for a, b in itertools.pairwise(chain):
            a.downs.append(b)
            b.ups.append(a)
        chains.append(chain)
    _order(columns)
    lefts, widths = _columns_x(columns)
    height = _stack(columns)
    for item in items:
        box = nodes[item.node or 0]
        box.x = lefts[item.rank] + (widths[item.rank] - box.width) / 2
        box.y = item.y
    attach = _spread(nodes, chains)
    for r, chain in zip(routes, chains, strict=True):
        points: list[tuple[float, float]] = []
        for item in chain:
            left, right = lefts[item.rank], lefts[item.rank] + widths[item.rank]
            if item.label_of is not None:
                item.label_of.label.x = left + (right - left - item.width) / 2
                item.label_of.label.y = item.y
            if item.node is None:
                points += [(left, item.mid), (right, item.mid)]
                continue
            # a node narrower than its column: a straight stub to the column's edge,
            # so that the curve across the gap never enters the column
            box = nodes[item.node]
            if item is chain[0]:
                y = attach[id(chain), 0]
                points += [(box.x + box.width, y), (right, y)]
            else:
                y = attach[id(chain), 1]
                points += [(left, y), (box.x, y)]
        # drop zero-length stubs: the arrowhead takes its direction from the last segment
        r.points = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    for r, f in zip(routes, forward, strict=True):
        if not f:
            r.points.reverse()
    return lefts[-1] + widths[-1], height


def _spread(nodes: list[Box], chains: list[list[_Item]]) -> dict[tuple[int, int], float]:
    """Where each edge attaches to its first (0) and last (1) node: apart, in the
    order of where they go, when several share a side of a node, else at its middle."""
    sides: dict[tuple[int, int], list[tuple[float, tuple[int, int]]]] = {}
    attach: dict[tuple[int, int], float] = {}
    for chain in chains:
        route = id(chain)
        for end, (item, toward) in enumerate(((chain[0], chain[1]), (chain[-1], chain[-2]))):
            sides.setdefault((item.node or 0, end), []).append((toward.mid, (route, end)))
            attach[route, end] = item.mid
    for (node, _), ends in sides.items():
        if len(ends) < 2:
            continue
        box = nodes[node]
        ends.sort(key=lambda end: end[0])
        for i, (_, key) in enumerate(ends):
            attach[key] = box.y + box.height * (0.2 + 0.6 * i / (len(ends) - 1))
    return attach


def _cycle_free(count: int, routes: list[Route]) -> dict[int, bool]:
    """Per route: kept as is (True) or reversed (False); the back edges of a
    depth-first search, taken from nodes in index order, are the reversed ones."""
    out: dict[int, bool] = {}
    state = [0] * count  # 0 unseen, 1 on the stack, 2 done
    by_source: dict[int, list[Route]] = {}
    for r in routes:
        by_source.setdefault(r.source, []).append(r)
    for start in range(count):
        if state[start]:
            continue
        state[start] = 1
        stack = [(start, iter(by_source.get(start, [])))]
        while stack:
            node, todo = stack[-1]
            step = next(todo, None)
            if step is None:
                state[node] = 2
                stack.pop()
                continue
            out[id(step)] = state[step.target] != 1
            if state[step.target] == 0:
                state[step.target] = 1
                stack.append((step.target, iter(by_source.get(step.target, []))))
    return out


def _ranks(count: int, edges: list[tuple[int, int]]) -> list[int]:
    """Longest path from the sources: every edge goes at least one rank to the right."""
    rank = [0] * count
    for _ in range(count):
        changed = False
        for a, b in edges:
            if a != b and rank[b] < rank[a] + 1:
                rank[b] = rank[a] + 1
                changed = True
        if not changed:
            break
    return rank


def _order(columns: list[list[_Item]]) -> None:
    """Order each column by the barycentre of its neighbours, sweeping both ways,
    and keep the order with the fewest crossings."""
    best = [list(c) for c in columns]
    fewest = _crossings(columns)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for k in range(1, len(columns)) if down else range(len(columns) - 2, -1, -1):
            ref = {id(item): i for i, item in enumerate(columns[k - 1 if down else k + 1])}
            column = columns[k]
            keys = {}
            for i, item in enumerate(column):
                near = [ref[id(n)] for n in (item.ups if down else item.downs)]
                keys[id(item)] = sum(near) / len(near) if near else i
            column.sort(key=lambda item: keys[id(item)])
        count = _crossings(columns)
        if count < fewest:
            fewest, best = count, [list(c) for c in columns]
    columns[:] = best


def _crossings(columns: list[list[_Item]]) -> int:
    total = 0
    for left, right in itertools.pairwise(columns):
        pos = {id(item): i for i, item in enumerate(right)}
        ends = [(i, pos[id(d)]) for i, item in enumerate(left) for d in item.downs]
        total += sum(
            1 for a, (i, p) in enumerate(ends) for j, q in ends[a + 1 :] if (i - j) * (p - q) < 0
        )
    return total


def _columns_x(columns: list[list[_Item]]) -> tuple[list[float], list[float]]:
    widths = [max((item.width for item in c), default=0.0) for c in columns]
    lefts, x = [], 0.0
    for w in widths:
        lefts.append(x)
        x += w + COLUMN_GAP
    return lefts, widths


def _stack(columns: list[list[_Item]]) -> float:
    """Vertical positions: each item as level with its neighbours as its column
    allows, sweeping both ways; returns the drawing's height."""
    for column in columns:
        y = 0.0
        for item in column:
            item.y = y
            y += item.height + ROW_GAP
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for column in columns if down else columns[::-1]:
            wanted = []
            for item in column:
                near = item.ups + item.downs
                wanted.append(
                    sum(n.mid for n in near) / len(near) - item.anchor if near else item.y
                )
            _pack(column, wanted)
    top = min(item.y for c in columns for item in c)
    for column in columns:
        for item in column:
            item.y -= top
    return max(item.y + item.height for c in columns for item in c)


def _pack(column: list[_Item], wanted: list[float]) -> None:
    """Tops as close to ``wanted`` (least squares) as keeping the column's order
    with ``ROW_GAP`` between items allows: pool adjacent violators."""
    offsets, y = [], 0.0
    for item in column:
        offsets.append(y)
        y += item.height + ROW_GAP
    # blocks of consecutive items moved together: [first, last, top of the first]
    blocks: list[list[float]] = []
    for i, want in enumerate(wanted):
        blocks.append([i, i, want - offsets[i]])
        while len(blocks) > 1 and blocks[-2][2] >= blocks[-1][2]:
            b = blocks.pop()
            a = blocks[-1]
            n_a, n_b = a[1] - a[0] + 1, b[1] - b[0] + 1
            a[1], a[2] = b[1], (a[2] * n_a + b[2] * n_b) / (n_a + n_b)
    for first, last, base in blocks:
        for i in range(int(first), int(last) + 1):
            column[i].y = base + offsets[i]
