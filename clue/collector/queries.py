"""Read side of the store: the answers behind every /api endpoint and UI page.

Every function returns plain JSON-able data; the JSON API serializes it as it
is and the HTML pages render it, so both always show the same thing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from clue._semconv import MESSAGING_DESTINATION_NAME
from clue.collector import percentiles
from clue.collector.store import Store

Json = dict[str, Any]
KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"]
STATUS = ["unset", "ok", "error"]
PRODUCER, CONSUMER = KINDS.index("producer"), KINDS.index("consumer")
# the attribute's name, from OpenTelemetry's messaging semantic conventions
DESTINATION = MESSAGING_DESTINATION_NAME
# a trace with a missing parent span counts as still receiving for this long after its
# last span ended; then it is shown as it is (the parent may never come: a remote caller)
RECEIVING_NS = 60 * 1_000_000_000


@dataclass
class TraceFilter:
    """What a trace search asks for; a trace matches if one of its spans matches all."""

    service: str | None = None
    operation: str | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    errors_only: bool = False
    start_ns: int | None = None
    end_ns: int | None = None
    attributes: list[tuple[str, str]] = field(default_factory=list)
    limit: int = 20


def services(store: Store) -> list[Json]:
    """Every service seen (spans, logs or metrics), with the span names it reported."""
    ops: dict[str, list[str]] = {}
    for row in store.query("SELECT service, name FROM operations ORDER BY service, name"):
        ops.setdefault(row["service"], []).append(row["name"])
    for row in store.query("SELECT DISTINCT service FROM resources"):
        ops.setdefault(row["service"], [])
    return [{"name": name, "operations": ops[name]} for name in sorted(ops)]


def trace_where(f: TraceFilter) -> tuple[str, list[Any]]:
    """SQL condition (and its arguments) on ``spans`` rows matching *f*."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("service", f.service), ("name", f.operation)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if f.min_duration_ns is not None:
        clauses.append("duration_ns >= ?")
        args.append(f.min_duration_ns)
    if f.max_duration_ns is not None:
        clauses.append("duration_ns <= ?")
        args.append(f.max_duration_ns)
    if f.errors_only:
        clauses.append("status = 2")
    if f.start_ns is not None:
        clauses.append("start_ns >= ?")
        args.append(f.start_ns)
    if f.end_ns is not None:
        clauses.append("start_ns <= ?")
        args.append(f.end_ns)
    for key, value in f.attributes:
        clause, more = attribute_match("spans", key, value)
        clauses.append(clause)
        args += more
    return " AND ".join(clauses) or "1", args


def attribute_match(table: str, key: str, value: str) -> tuple[str, list[Any]]:
    """SQL (and its arguments) true when a row of *table* (``spans`` or ``logs``) has the
    attribute *key* = *value*, or its resource has it (``service.name``, ``host.name``...).

    json_each rather than json_extract: a JSON path cannot name every key (a '"' in it).
    The resource side is a subquery over the small ``resources`` table, run once.
    """
    text = _attribute_text(value)
    clause = (
        f"(EXISTS (SELECT 1 FROM json_each({table}.attributes) "
        "WHERE key = ? AND CAST(value AS TEXT) = ?) "
        f"OR {table}.resource IN (SELECT r.key FROM resources r, json_each(r.attributes) a "
        "WHERE a.key = ? AND CAST(a.value AS TEXT) = ?))"
    )
    return clause, [key, text, key, text]


def _attribute_text(value: str) -> str:
    """Booleans are stored as JSON true/false, which SQLite reads back as 1/0."""
    return {"true": "1", "false": "0"}.get(value, value)


def search_traces(store: Store, f: TraceFilter) -> list[Json]:
    """Summaries of the most recent traces matching *f*, newest first."""
    where, args = trace_where(f)
    # newest first along an index on start time, so the scan stops after `limit` traces
    # (never a plan that sorts every matching span); with a service, along that service's
    # spans only (a search that matches little then reads one service, not the store)
    index = "spans_by_service" if f.service is not None else "spans_by_start"
    ids = store.first(
        f"SELECT trace_id FROM spans INDEXED BY {index} WHERE {where} ORDER BY start_ns DESC",
        args,
        f.limit,
    )
    return summaries(store, ids)


def summaries(store: Store, ids: list[str]) -> list[Json]:
    """Summaries of the traces *ids*, in that order (those no longer stored left out)."""
    if not ids:
        return []
    rows = store.query(
        "SELECT trace_id, span_id, parent_id, service, name, start_ns, duration_ns, status "
        f"FROM spans WHERE trace_id IN ({','.join('?' * len(ids))})",
        ids,
    )
    by_trace: dict[str, list[Any]] = {}
    for row in rows:
        by_trace.setdefault(row["trace_id"], []).append(row)
    return [_summary(trace_id, by_trace[trace_id]) for trace_id in ids if trace_id in by_trace]


def receiving(spans: list[Any], now_ns: int | None = None) -> bool:
    """Whether a trace is still receiving spans, by the rule documented in collector.md:
    a span's parent is missing (exporters send a parent after its children, the root
    last) and the trace's last span ended less than :data:`RECEIVING_NS` ago."""
    span_ids = {s["span_id"] for s in spans}
    if all(not s["parent_id"] or s["parent_id"] in span_ids for s in spans):
        return False
    end = max(s["start_ns"] + s["duration_ns"] for s in spans)
    return bool((now_ns if now_ns is not None else time.time_ns()) - end < RECEIVING_NS)


def _summary(trace_id: str, spans: list[Any]) -> Json:
    span_ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if s["parent_id"] not in span_ids] or spans
    root = min(roots, key=lambda s: (s["parent_id"] != "", s["start_ns"]))
    start = min(s["start_ns"] for s in spans)
    end = max(s["start_ns"] + s["duration_ns"] for s in spans)
    per_service: dict[str, int] = {}
    for s in spans:
        per_service[s["service"]] = per_service.get(s["service"], 0) + 1
    return {
        "trace_id": trace_id,
        "root": {"service": root["service"], "name": root["name"]},
        "services": [{"name": k, "spans": v} for k, v in sorted(per_service.items())],
        "span_count": len(spans),
        "error_count": sum(1 for s in spans if s["status"] == 2),
        "start_ns": start,
        "duration_ns": end - start,
        "receiving": receiving(spans),
    }


def trace(store: Store, trace_id: str) -> Json | None:
    """One trace: spans in tree order (with depth), resources and the trace's logs."""
    rows = store.query("SELECT * FROM spans WHERE trace_id = ?", (trace_id,))
    if not rows:
        return None
    keys = sorted({row["resource"] for row in rows})
    resources = {
        r["key"]: json.loads(r["attributes"])
        for r in store.query(
            f"SELECT key, attributes FROM resources WHERE key IN ({','.join('?' * len(keys))})",
            keys,
        )
    }
    spans = [_span(row, resources.get(row["resource"], {})) for row in rows]
    percentiles.operation_stats(store, spans)
    ordered = _tree_order(spans)
    start = min(s["start_ns"] for s in spans)
    end = max(s["start_ns"] + s["duration_ns"] for s in spans)
    return {
        "trace_id": trace_id,
        "start_ns": start,
        "duration_ns": end - start,
        "services": sorted({s["service"] for s in spans}),
        "span_count": len(spans),
        "error_count": sum(1 for s in spans if s["status"]["code"] == "error"),
        "receiving": receiving(spans),
        "spans": ordered,
        "logs": logs(store, trace_id=trace_id, limit=10_000, newest_first=False),
    }


def _span(row: Any, resource: Json) -> Json:
    return {
        "span_id": row["span_id"],
        "parent_id": row["parent_id"],
        "service": row["service"],
        "name": row["name"],
        "kind": KINDS[row["kind"]] if 0 <= row["kind"] < len(KINDS) else str(row["kind"]),
        "start_ns": row["start_ns"],
        "duration_ns": row["duration_ns"],
        "status": {
            "code": STATUS[row["status"]] if 0 <= row["status"] < 3 else str(row["status"]),
            "message": row["status_message"],
        },
        "attributes": json.loads(row["attributes"]),
        "events": json.loads(row["events"]) if row["events"] != "[]" else [],
        "links": json.loads(row["links"]) if row["links"] != "[]" else [],
        "scope": row["scope"],
        "resource": resource,
    }


def _tree_order(spans: list[Json]) -> list[Json]:
    """Depth-first order, children by start time; orphans start their own subtree."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[Json]] = {}
    roots = []
    for s in sorted(spans, key=lambda s: s["start_ns"]):
        if s["parent_id"] and s["parent_id"] in ids and s["parent_id"] != s["span_id"]:
            children.setdefault(s["parent_id"], []).append(s)
        else:
            roots.append(s)
    ordered: list[Json] = []
    seen: set[str] = set()
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:
            continue
        seen.add(span["span_id"])
        span["depth"] = depth
        ordered.append(span)
        stack += [(child, depth + 1) for child in reversed(children.get(span["span_id"], []))]
    for span in spans:  # parents naming each other: the cycle shown flat at the end
        if span["span_id"] not in seen:
            span["depth"] = 0
            ordered.append(span)
    return ordered


def logs(
    store: Store,
    *,
    service: str | None = None,
    min_severity: int | None = None,
    text: str | None = None,
    trace_id: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    attributes: list[tuple[str, str]] | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[Json]:
    """Log records matching every given filter (an attribute of the record or its resource)."""
    where, args = log_where(
        service=service,
        min_severity=min_severity,
        text=text,
        trace_id=trace_id,
        start_ns=start_ns,
        end_ns=end_ns,
        attributes=attributes,
    )
    order = "DESC" if newest_first else "ASC"
    rows = store.query(
        f"SELECT {LOG_COLUMNS} FROM logs WHERE {where} "
        f"ORDER BY time_ns {order}, rowid {order} LIMIT ?",
        [*args, limit],
    )
    return [log_json(row) for row in rows]


LOG_COLUMNS = "time_ns, service, severity, severity_text, body, attributes, trace_id, span_id"


def log_where(
    *,
    service: str | None = None,
    min_severity: int | None = None,
    text: str | None = None,
    trace_id: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    attributes: list[tuple[str, str]] | None = None,
) -> tuple[str, list[Any]]:
    """SQL condition (and its arguments) on ``logs`` rows matching every given filter."""
    clauses: list[str] = []
    args: list[Any] = []
    for key, value in attributes or []:
        clause, more = attribute_match("logs", key, value)
        clauses.append(clause)
        args += more
    if service is not None:
        clauses.append("service = ?")
        args.append(service)
    if min_severity is not None:
        clauses.append("severity >= ?")
        args.append(min_severity)
    if text is not None:
        clauses.append("(instr(lower(body), ?) > 0 OR instr(lower(attributes), ?) > 0)")
        args += [text.lower(), text.lower()]
    if trace_id is not None:
        clauses.append("trace_id = ?")
        args.append(trace_id)
    if start_ns is not None:
        clauses.append("time_ns >= ?")
        args.append(start_ns)
    if end_ns is not None:
        clauses.append("time_ns <= ?")
        args.append(end_ns)
    return " AND ".join(clauses) or "1", args


def log_json(row: Any) -> Json:
    """A ``logs`` row (of :data:`LOG_COLUMNS`) as the API shows it."""
    return {
        "time_ns": row["time_ns"],
        "service": row["service"],
        "severity": row["severity"],
        "severity_text": row["severity_text"] or severity_name(row["severity"]),
        "body": row["body"],
        "attributes": json.loads(row["attributes"]),
        "trace_id": row["trace_id"],
        "span_id": row["span_id"],
    }


def severity_name(number: int) -> str:
    """OTLP severity number to its short name (``INFO``, ``WARN2``...)."""
    if not 1 <= number <= 24:
        return "UNSPECIFIED"
    names = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    base, step = divmod(number - 1, 4)
    return names[base] + (str(step + 1) if step else "")


def dependencies(store: Store, start_ns: int | None = None) -> Json:
    """Service map: services with request/error rates and the calls between them.

    A request of a service is a span entering it (a root span, or one whose
    parent belongs to another service); an edge A → B counts spans of B whose
    parent span is in A. An edge is asynchronous when a CONSUMER span's parent is
    a PRODUCER span: A published a message that B consumed, through the broker
    destination named by ``messaging.destination.name``; one edge per
    destination. Rates are per second over the stored time window.
    """
    since = start_ns if start_ns is not None else 0
    rows = store.query(
        "SELECT c.service AS child, p.service AS parent, "
        f"coalesce(p.kind = {PRODUCER} AND c.kind = {CONSUMER}, 0) AS async, "
        f"CASE WHEN p.kind = {PRODUCER} AND c.kind = {CONSUMER} THEN coalesce("
        f"json_extract(c.attributes, '$.\"{DESTINATION}\"'), "
        f"json_extract(p.attributes, '$.\"{DESTINATION}\"')) END AS destination, "
        "count(*) AS calls, sum(c.status = 2) AS errors "
        "FROM spans c LEFT JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_id "
        "WHERE c.start_ns >= ? AND (p.service IS NULL OR p.service != c.service) "
        "GROUP BY c.service, p.service, async, destination",
        (since,),
    )
    window = store.query(
        "SELECT min(start_ns) AS first, max(start_ns + duration_ns) AS last FROM spans "
        "WHERE start_ns >= ?",
        (since,),
    )[0]
    seconds = max(((window["last"] or 0) - (window["first"] or 0)) / 1e9, 1.0)
    nodes: dict[str, Json] = {}
    edges = []
    for row in rows:
        node = nodes.setdefault(row["child"], {"service": row["child"], "requests": 0, "errors": 0})
        node["requests"] += row["calls"]
        node["errors"] += row["errors"]
        if row["parent"] is not None:
            nodes.setdefault(row["parent"], {"service": row["parent"], "requests": 0, "errors": 0})
            edges.append(
                {
                    "parent": row["parent"],
                    "child": row["child"],
                    "calls": row["calls"],
                    "errors": row["errors"],
                    "call_rate": row["calls"] / seconds,
                    "error_rate": row["errors"] / seconds,
                    "async": bool(row["async"]),
                    "destination": _text_or_none(row["destination"]),
                }
            )
    for node in nodes.values():
        node["request_rate"] = node["requests"] / seconds
        node["error_rate"] = node["errors"] / seconds
    return {
        "window_s": seconds,
        "nodes": sorted(nodes.values(), key=lambda n: n["service"]),
        "edges": sorted(
            edges, key=lambda e: (e["parent"], e["child"], e["async"], e["destination"] or "")
        ),
    }


def _text_or_none(value: Any) -> str | None:
    """A destination attribute as text (a producer may have set a number)."""
    return None if value is None else str(value)
