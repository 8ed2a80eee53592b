"""Inline SVG drawings: metric line charts and the service map."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

PALETTE = ["#2f6fdb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5f3dc4"]


def label(labels: dict[str, Any]) -> str:
    """``key=value`` text of a series' labels."""
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "(no attributes)"


def _nice(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.4g}"


def line_chart(series: list[dict[str, Any]], unit: str, width: int = 900, height: int = 320) -> str:
    """Lines of ``[[time_ns, value], ...]`` point lists on shared axes."""
    points = [p for s in series for p in s["points"]]
    left, right, top, bottom = 70, 20, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="metric chart">'
    ]
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text>')
        return "".join([*parts, "</svg>"])
    t0: float = min(p[0] for p in points)
    t1: float = max(p[0] for p in points)
    v0: float = min(0.0, *(p[1] for p in points))
    v1: float = max(p[1] for p in points)
    t1, v1 = (t1 if t1 > t0 else t0 + 1), (v1 if v1 > v0 else v0 + 1)

    def x(t: float) -> float:
        return left + plot_w * (t - t0) / (t1 - t0)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - v0) / (v1 - v0))

    for i in range(5):
        v = v0 + (v1 - v0) * i / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
            f"{_nice(v)}</text>"
        )
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        stamp = datetime.fromtimestamp(t / 1e9).strftime("%H:%M:%S")
        anchor = ("start", "middle", "middle", "middle", "end")[i]
        parts.append(
            f'<text class="axis" x="{x(t):.1f}" y="{height - 12}" text-anchor="{anchor}">'
            f"{stamp}</text>"
        )
    parts.append(
        f'<text class="axis" x="6" y="{top + 4}" text-anchor="start">{escape(unit)}</text>'
    )
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s["points"])
        title = escape(label(s["labels"]))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}">'
            f"<title>{title}</title></polyline>"
        )
        for t, v in s["points"]:
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                f"<title>{title}: {_nice(v)}</title></circle>"
            )
    return "".join([*parts, "</svg>"])


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Column of each service: callers left of the services they call (cycles tolerated)."""
    layer = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):
        changed = False
        for parent, child in edges:
            if parent != child and layer[child] < layer[parent] + 1 <= len(nodes):
                layer[child] = layer[parent] + 1
                changed = True
        if not changed:
            break
    return layer


def service_map(deps: dict[str, Any], color: Callable[[str], str]) -> str:
    """Services as boxes in caller → callee columns, calls as labelled arrows."""
    names = [n["service"] for n in deps["nodes"]]
    if not names:
        return (
            '<svg class="map" viewBox="0 0 600 80"><text x="300" y="45" '
            'text-anchor="middle">no spans yet</text></svg>'
        )
    edges = [(e["parent"], e["child"]) for e in deps["edges"]]
    layer = _layers(names, edges)
    columns: dict[int, list[str]] = {}
    for name in names:
        columns.setdefault(layer[name], []).append(name)
    box_w, box_h, gap_x, gap_y = 190, 58, 110, 34
    width = 40 + len(columns) * (box_w + gap_x) - gap_x
    height = 40 + max(len(c) for c in columns.values()) * (box_h + gap_y) - gap_y
    pos: dict[str, tuple[float, float]] = {}
    for col, members in columns.items():
        column_h = len(members) * (box_h + gap_y) - gap_y
        for row, name in enumerate(members):
            pos[name] = (
                20 + col * (box_w + gap_x),
                (height - column_h) / 2 + row * (box_h + gap_y),
            )
    parts = [
        f'<svg class="map" viewBox="0 0 {width} {height}" width="{width}" role="img" '
        'aria-label="service map"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" '
        'refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>'
    ]
    for e in deps["edges"]:
        (px, py), (cx, cy) = pos[e["parent"]], pos[e["child"]]
        x1, y1 = px + box_w, py + box_h / 2
        x2, y2 = cx, cy + box_h / 2
        if cx <= px:  # a call back to an earlier column: go around below
            x1, x2 = px + box_w / 2, cx + box_w / 2
            y1, y2 = py + box_h, cy + box_h
        mid = (x1 + x2) / 2
        bend = 0 if cx > px else 40 + abs(x1 - x2) / 6
        path = (
            f"M {x1:.0f} {y1:.0f} C {mid:.0f} {y1 + bend:.0f}, "
            f"{mid:.0f} {y2 + bend:.0f}, {x2:.0f} {y2:.0f}"
        )
        label_x, label_y = (x2 - 52, y2 - 7) if cx > px else (mid, (y1 + y2) / 2 + bend * 0.75)
        erroring = e["errors"] > 0
        text = f"{e['call_rate']:.3g}/s" + (f", {e['errors']} err" if erroring else "")
        parts.append(
            f'<g class="edge{" error" if erroring else ""}" data-parent="{escape(e["parent"])}" '
            f'data-child="{escape(e["child"])}"><path d="{path}" fill="none" '
            f'stroke="{"#c92a2a" if erroring else "#555"}" stroke-width="{_stroke(e["calls"])}" '
            f'marker-end="url(#arrow)"/><text x="{label_x:.0f}" y="{label_y:.0f}" '
            f'text-anchor="middle">{escape(text)}</text>'
            f"<title>{escape(e['parent'])} → {escape(e['child'])}: {e['calls']} calls, "
            f"{e['errors']} errors</title></g>"
        )
    for n in deps["nodes"]:
        x, y = pos[n["service"]]
        name = escape(n["service"])
        errors = f", {n['errors']} err" if n["errors"] else ""
        link = escape(quote(n["service"]))
        parts.append(
            f'<g class="node" data-service="{name}"><a href="/?service={link}">'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="white" '
            f'stroke="{color(n["service"])}" stroke-width="3"/>'
            f'<text x="{x + box_w / 2}" y="{y + 24}" text-anchor="middle" class="name">'
            f"{name}</text>"
            f'<text x="{x + box_w / 2}" y="{y + 44}" text-anchor="middle" class="stats">'
            f"{n['request_rate']:.3g} req/s{errors}</text></a></g>"
        )
    return "".join([*parts, "</svg>"])


def _stroke(calls: int) -> float:
    return round(1.5 + min(math.log10(max(calls, 1)), 3), 1)
