"""Metric listing and time series: counters as rates, histograms as percentiles."""

from __future__ import annotations

import json
import math
from typing import Any

from clue.collector.store import Store

Json = dict[str, Any]
PERCENTILES = (0.5, 0.9, 0.99)
CUMULATIVE = 2
MAX_POINTS = 500  # per series: more would not show on a chart anyway


def metric_list(store: Store, service: str | None = None) -> list[Json]:
    """Every stored metric (per service) with its kind, unit and number of points."""
    where, args = ("WHERE service = ?", [service]) if service else ("", [])
    rows = store.query(
        "SELECT service, name, kind, unit, description, monotonic, count(*) AS points, "
        f"max(time_ns) AS last_ns FROM points {where} "
        "GROUP BY service, name ORDER BY service, name",
        args,
    )
    return [
        {
            "service": r["service"],
            "name": r["name"],
            "kind": r["kind"],
            "unit": r["unit"],
            "description": r["description"],
            "monotonic": bool(r["monotonic"]),
            "points": r["points"],
            "last_ns": r["last_ns"],
            "shown_as": shown_as(r["kind"], bool(r["monotonic"])),
        }
        for r in rows
    ]


def shown_as(kind: str, monotonic: bool) -> str:
    """How a metric is charted: ``rate``, ``percentiles`` or ``value``."""
    if kind == "sum" and monotonic:
        return "rate"
    if kind in ("histogram", "exponential_histogram", "summary"):
        return "percentiles"
    return "value"


def series(
    store: Store,
    name: str,
    *,
    service: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Json | None:
    """Chartable series of metric *name*: one per attribute set (and percentile),
    each thinned to at most about :data:`MAX_POINTS` points."""
    clauses: list[str] = ["name = ?"]
    args: list[str | int] = [name]
    for clause, value in (("service = ?", service), ("time_ns >= ?", start_ns)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    if end_ns is not None:
        clauses.append("time_ns <= ?")
        args.append(end_ns)
    rows = store.query(
        "SELECT * FROM points WHERE " + " AND ".join(clauses) + " ORDER BY time_ns", args
    )
    if not rows:
        return None
    first = rows[0]
    display = shown_as(first["kind"], bool(first["monotonic"]))
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        if row["kind"] != first["kind"]:
            continue  # the same name with another kind (another service): not chartable together
        groups.setdefault((row["service"], row["attributes"]), []).append(row)
    out: list[Json] = []
    for (svc, attrs), points in sorted(groups.items()):
        labels = {"service.name": svc, **json.loads(attrs)}
        if display == "rate":
            out.append({"labels": labels, "points": _rates(points)})
        elif display == "percentiles":
            for q, pts in _percentiles(points).items():
                out.append({"labels": {**labels, "quantile": q}, "points": pts})
        else:
            out.append({"labels": labels, "points": [[p["time_ns"], p["value"]] for p in points]})
    for s in out:  # NaN is stored as NULL; neither it nor ±inf can be charted or sent as JSON
        s["points"] = thin([p for p in s["points"] if p[1] is not None and math.isfinite(p[1])])
    unit = first["unit"] + ("/s" if display == "rate" else "")
    return {"name": name, "kind": first["kind"], "unit": unit, "shown_as": display, "series": out}


def thin(points: list[list[float]], most: int = MAX_POINTS) -> list[list[float]]:
    """At most about *most* evenly spaced points, always keeping the last one."""
    if len(points) <= most:
        return points
    step = -(-len(points) // most)
    kept = points[::step]
    return kept if kept[-1] is points[-1] else [*kept, points[-1]]


def _rates(points: list[Any]) -> list[list[float]]:
    out: list[list[float]] = []
    previous = None
    for p in points:
        if p["value"] is None:
            continue
        if p["temporality"] != CUMULATIVE:
            seconds = (p["time_ns"] - p["start_ns"]) / 1e9
            if seconds > 0:
                out.append([p["time_ns"], p["value"] / seconds])
        elif previous is not None and p["time_ns"] > previous["time_ns"]:
            delta = p["value"] - previous["value"]
            if delta >= 0:  # a drop is a counter reset: no rate for that interval
                out.append([p["time_ns"], delta / ((p["time_ns"] - previous["time_ns"]) / 1e9)])
        previous = p
    return out


def _percentiles(points: list[Any]) -> dict[float, list[list[float]]]:
    out: dict[float, list[list[float]]] = {}
    previous: list[int] | None = None
    for p in points:
        bounds, counts = json.loads(p["bounds"]), json.loads(p["buckets"])
        if p["kind"] == "summary":
            for q, v in zip(bounds, counts, strict=False):
                out.setdefault(q, []).append([p["time_ns"], v])
            continue
        interval = counts
        if p["temporality"] == CUMULATIVE and previous is not None and len(previous) == len(counts):
            diff = [c - d for c, d in zip(counts, previous, strict=True)]
            if all(d >= 0 for d in diff):
                interval = diff
        previous = counts
        if sum(interval) == 0:
            continue
        for q in PERCENTILES:
            out.setdefault(q, []).append([p["time_ns"], quantile(bounds, interval, q)])
    return out


def quantile(bounds: list[float], counts: list[int], q: float) -> float:
    """Estimate quantile *q* of an explicit-bucket histogram by linear interpolation.

    ``counts[i]`` counts values in ``(bounds[i-1], bounds[i]]``; the last bucket is
    unbounded above and reported at its lower bound.
    """
    total = sum(counts)
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(bounds):
                return float(bounds[-1]) if bounds else 0.0
            low = bounds[i - 1] if i > 0 else min(0.0, bounds[0])
            return float(low + (bounds[i] - low) * (rank - seen) / count)
        seen += count
    return float(bounds[-1]) if bounds else 0.0
