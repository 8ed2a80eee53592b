"""Inline SVG drawings: metric line charts and the service map."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from clue.collector import layout

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


CHAR_W = {"label": 7.8, "name": 9.6, "stats": 7.8}  # generous widths of a character, in px
LABEL_H, NODE_H = 16.0, 58.0


def _edge_text(e: dict[str, Any]) -> str:
    text = f"{e['call_rate']:.3g}/s" + (f", {e['errors']} err" if e["errors"] else "")
    if e["async"]:
        return f"✉ {e['destination'] or 'async'} · {text}"
    return text


def _node_width(n: dict[str, Any]) -> float:
    stats = len(_node_stats(n)) * CHAR_W["stats"]
    return max(150.0, len(n["service"]) * CHAR_W["name"] + 24, stats + 24)


def _node_stats(n: dict[str, Any]) -> str:
    return f"{n['request_rate']:.3g} req/s" + (f", {n['errors']} err" if n["errors"] else "")


def _path(points: list[tuple[float, float]]) -> str:
    """Straight runs where the layout goes level (through a column), and curves with
    level ends across the gaps between columns, which keep them inside the gap."""
    (x, y), *rest = points
    out = [f"M {x:.1f} {y:.1f}"]
    for nx, ny in rest:
        if ny == y:
            out.append(f"L {nx:.1f} {ny:.1f}")
        else:
            mid = (x + nx) / 2
            out.append(f"C {mid:.1f} {y:.1f}, {mid:.1f} {ny:.1f}, {nx:.1f} {ny:.1f}")
        x, y = nx, ny
    return " ".join(out)


def service_map(deps: dict[str, Any], color: Callable[[str], str]) -> str:
    """Services as boxes in a layered layout, calls as labelled arrows (dashed when
    asynchronous, through a message broker, and labelled with the destination)."""
    if not deps["nodes"]:
        return (
            '<svg class="map" viewBox="0 0 600 80"><text x="300" y="45" '
            'text-anchor="middle">no spans yet</text></svg>'
        )
    index = {n["service"]: i for i, n in enumerate(deps["nodes"])}
    boxes = [layout.Box(_node_width(n), NODE_H) for n in deps["nodes"]]
    texts = [_edge_text(e) for e in deps["edges"]]
    routes = [
        layout.Route(
            index[e["parent"]], index[e["child"]], layout.Box(len(t) * CHAR_W["label"], LABEL_H)
        )
        for e, t in zip(deps["edges"], texts, strict=True)
    ]
    width, height = layout.layout(boxes, routes)
    pad = 12
    parts = [
        f'<svg class="map" viewBox="{-pad} {-pad} {width + 2 * pad:.0f} {height + 2 * pad:.0f}" '
        f'width="{width + 2 * pad:.0f}" role="img" aria-label="service map"><defs>'
        + "".join(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
            f'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
            f'fill="{fill}"/></marker>'
            for name, fill in (("call", "#555"), ("error", "#c92a2a"), ("async", "#7048e8"))
        )
        + "</defs>"
    ]
    for e, text, route in zip(deps["edges"], texts, routes, strict=True):
        kind = "error" if e["errors"] else "async" if e["async"] else "call"
        classes = "edge" + (" async" if e["async"] else "") + (" error" if e["errors"] else "")
        dashes = ' stroke-dasharray="7 5"' if e["async"] else ""
        through = f" through {e['destination']}" if e["async"] and e["destination"] else ""
        verb = "messages" if e["async"] else "calls"
        stroke = {"error": "#c92a2a", "async": "#7048e8", "call": "#555"}[kind]
        box = route.label
        parts.append(
            f'<g class="{classes}" data-parent="{escape(e["parent"])}" '
            f'data-child="{escape(e["child"])}" '
            f'data-destination="{escape(e["destination"] or "")}">'
            f'<path d="{_path(route.points)}" fill="none" stroke="{stroke}" '
            f'stroke-width="{_stroke(e["calls"])}"{dashes} marker-end="url(#arrow-{kind})"/>'
            f'<text x="{box.x + box.width / 2:.1f}" y="{box.y + box.height - 4:.1f}" '
            f'text-anchor="middle">{escape(text)}</text>'
            f"<title>{escape(e['parent'])} → {escape(e['child'])}{escape(through)}: "
            f"{e['calls']} {verb}, {e['errors']} errors</title></g>"
        )
    for n, b in zip(deps["nodes"], boxes, strict=True):
        name = escape(n["service"])
        link = escape(quote(n["service"]))
        parts.append(
            f'<g class="node" data-service="{name}"><a href="/?service={link}">'
            f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.width:.1f}" height="{b.height:.1f}" '
            f'rx="8" fill="white" stroke="{color(n["service"])}" stroke-width="3"/>'
            f'<text x="{b.x + b.width / 2:.1f}" y="{b.y + 24:.1f}" text-anchor="middle" '
            f'class="name">{name}</text>'
            f'<text x="{b.x + b.width / 2:.1f}" y="{b.y + 44:.1f}" text-anchor="middle" '
            f'class="stats">{escape(_node_stats(n))}</text></a></g>'
        )
    return "".join([*parts, "</svg>"])


def _stroke(calls: int) -> float:
    return round(1.5 + min(math.log10(max(calls, 1)), 3), 1)
