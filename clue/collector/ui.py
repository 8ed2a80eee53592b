"""The web UI: server-rendered pages over the same queries as the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from clue.collector import api, charts, queries, series, tail
from clue.collector.params import SEVERITIES, BadParameter, Params
from clue.collector.store import Store

LOOKBACKS = ["5m", "15m", "1h", "6h", "24h", "7d"]
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("clue.collector", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


SERVICE_COLORS = [
    "#2f6fdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#a0522d", "#0c8599", "#f08c00", "#5f3dc4",
    "#74b816", "#d6336c", "#1971c2", "#845ef7", "#099268", "#e67700", "#495057", "#a61e4d",
]  # fmt: skip


def service_colors(store: Store) -> dict[str, str]:
    """A distinct colour per known service, in name order, the same on every page."""
    names = [row["service"] for row in store.query("SELECT DISTINCT service FROM resources")]
    return {name: SERVICE_COLORS[i % len(SERVICE_COLORS)] for i, name in enumerate(sorted(names))}


@jinja2.pass_context
def _color(context: Any, name: str) -> str:
    colors: dict[str, str] = context.get("colors", {})
    return colors.get(name, SERVICE_COLORS[-2])


def duration(ns: float) -> str:
    """Human duration: ``850µs``, ``12.3ms``, ``1.52s``."""
    if ns < 1_000:
        return f"{ns:.0f}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"


def clock(ns: int) -> str:
    """Local wall-clock time with milliseconds."""
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def rate(per_second: float) -> str:
    return f"{per_second:.3g}/s"


_env.filters.update(duration=duration, clock=clock, color=_color, rate=rate)
_env.globals.update(lookbacks=LOOKBACKS)


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**context), status)


def _page(store: Store, template: str, build: Any) -> Any:
    """An endpoint rendering *template* with ``build(request)``; bad input is a 400 page."""

    def context_of(request: Request) -> dict[str, Any]:
        return {"colors": service_colors(store), **build(request)}

    async def endpoint(request: Request) -> Response:
        try:
            context = await run_in_threadpool(context_of, request)
        except BadParameter as exc:
            return render("error.html", 400, title="Bad request", message=str(exc))
        except api.NotFound as exc:
            return render("error.html", 404, title="Not found", message=str(exc))
        return render(template, **context)

    return endpoint


def routes(store: Store) -> list[Route]:
    """Starlette routes of the HTML pages."""

    def search(request: Request) -> dict[str, Any]:
        q = request.query_params
        p = Params(q, api.TRACE_SEARCH)
        f = api.trace_filter(p)
        traces = queries.search_traces(store, f)
        longest = max((t["duration_ns"] for t in traces), default=1) or 1
        return {
            "page": "traces",
            "services": queries.services(store),
            "form": dict(q),
            "attrs": [f"{k}={v}" for k, v in f.attributes],
            "traces": traces,
            "longest": longest,
            "searched": bool(q),
        }

    def trace_page(request: Request) -> dict[str, Any]:
        Params(request.query_params, set())
        trace = api.get_trace(store, request.path_params["trace_id"])
        rows = waterfall_rows(trace, service_colors(store))
        return {"page": "traces", "trace": trace, "title": _trace_title(trace), "rows": rows}

    def compare_page(request: Request) -> dict[str, Any]:
        data = api.get_comparison(store, Params(request.query_params, {"a", "b"}))
        return {"page": "traces", "cmp": data, "longest": _longest(data)}

    def logs_page(request: Request) -> dict[str, Any]:
        p = Params(request.query_params, api.LOG_SEARCH)
        return {
            "page": "logs",
            "services": queries.services(store),
            "form": dict(request.query_params),
            "attrs": [f"{k}={v}" for k, v in p.attributes("attr")],
            "logs": api.log_search(store, p),
            "severities": list(SEVERITIES),
        }

    def tail_logs(request: Request) -> dict[str, Any]:
        # validated here too: a bad filter is a 400 page, not a stream that never opens
        p = Params(request.query_params, tail.LOG_TAIL)
        api.log_filters(p)
        return {
            "page": "logs",
            "services": queries.services(store),
            "form": dict(request.query_params),
            "attrs": [f"{k}={v}" for k, v in p.attributes("attr")],
            "severities": list(SEVERITIES),
        }

    def tail_traces(request: Request) -> dict[str, Any]:
        p = Params(request.query_params, tail.TRACE_TAIL)
        f = api.trace_filter(p)
        return {
            "page": "traces",
            "services": queries.services(store),
            "form": dict(request.query_params),
            "attrs": [f"{k}={v}" for k, v in f.attributes],
        }

    def map_page(request: Request) -> dict[str, Any]:
        start, _ = Params(request.query_params, {"lookback"}).time_range()
        deps = queries.dependencies(store, start)
        colors = service_colors(store)
        svg = charts.service_map(deps, lambda name: colors.get(name, SERVICE_COLORS[-2]))
        return {"page": "map", "deps": deps, "svg": Markup(svg), "form": dict(request.query_params)}

    def metrics_page(request: Request) -> dict[str, Any]:
        p = Params(request.query_params, {"service"})
        return {
            "page": "metrics",
            "services": queries.services(store),
            "form": dict(request.query_params),
            "metrics": series.metric_list(store, p.text("service")),
        }

    def metric_page(request: Request) -> dict[str, Any]:
        p = Params(request.query_params, api.TIME | {"service"})
        data = api.get_series(store, request.path_params["name"], p)
        return {
            "page": "metrics",
            "metric": data,
            "svg": Markup(charts.line_chart(data["series"], data["unit"])),
            "legend": [
                (charts.PALETTE[i % len(charts.PALETTE)], charts.label(s["labels"]))
                for i, s in enumerate(data["series"])
            ],
            "form": dict(request.query_params),
            "query": request.url.query,
        }

    return [
        Route("/", _page(store, "search.html", search)),
        Route("/trace/{trace_id}", _page(store, "trace.html", trace_page)),
        Route("/compare", _page(store, "compare.html", compare_page)),
        Route("/logs", _page(store, "logs.html", logs_page)),
        Route("/tail/logs", _page(store, "tail_logs.html", tail_logs)),
        Route("/tail/traces", _page(store, "tail_traces.html", tail_traces)),
        Route("/map", _page(store, "map.html", map_page)),
        Route("/metrics", _page(store, "metrics.html", metrics_page)),
        Route("/metrics/{name}", _page(store, "metric.html", metric_page)),
        # for what asks the conventional address without reading the page's <link rel="icon">
        Route("/favicon.ico", lambda _: RedirectResponse("/static/favicon.svg", 301)),
    ]


def waterfall_rows(trace: dict[str, Any], colors: dict[str, str]) -> Markup:
    """The waterfall's span rows (built here rather than in Jinja: a trace may have
    thousands of spans, and this is the page's hot loop)."""
    total = trace["duration_ns"] or 1
    parents = {s["parent_id"] for s in trace["spans"] if s["depth"]}
    out = []
    for s in trace["spans"]:
        left = 100 * (s["start_ns"] - trace["start_ns"]) / total
        width = max(100 * s["duration_ns"] / total, 0.15)
        service, name = escape(s["service"]), escape(s["name"])
        color = colors.get(s["service"], SERVICE_COLORS[-2])
        failed = s["status"]["code"] == "error"
        mark = (
            f'<span class="error-mark" title="{escape(s["status"]["message"])}">✖</span>'
            if failed
            else ""
        )
        classes = (
            "span-row" + (" error" if failed else "") + (" critical" if s["critical_ns"] else "")
        )
        # the duration after the bar; before it when the bar ends near the right edge,
        # inside its end when it fills most of the row
        end = left + width
        if end < 72:
            place = f"left:{end:.3f}%"
        elif left > 20:
            place = f"right:{100 - left:.3f}%"
        else:
            place = f"right:{100 - end:.3f}%;color:#fff"
        badge = where = ""
        if s["kind"] in MESSAGING:
            classes += f" {s['kind']}"
            badge, where = _messaging_marks(s)
        # a span with children gets a collapse toggle, in the place a leaf leaves blank
        toggle = TOGGLE if s["span_id"] in parents else ""
        indent = 6 + s["depth"] * 14 + (0 if toggle else 14)
        out.append(
            f'<div class="{classes}" data-span-id="{s["span_id"]}" data-depth="{s["depth"]}" '
            f'tabindex="0"><div class="wf-name" style="padding-left:{indent}px" '
            f'title="{service}: {name}">{toggle}<span class="chip" style="background:{color}">'
            f'</span>{badge}<span class="svc">{service}</span> <span class="op">{name}</span>'
            f"{mark}</div>"
            f'<div class="wf-time"><div class="bar" style="left:{left:.3f}%;width:{width:.3f}%;'
            f'background-color:{color}"></div><span class="bar-label" style="{place}">'
            f"{duration(s['duration_ns'])}{where}</span>"
            "</div></div>"
        )
    return Markup("\n".join(out))


TOGGLE = '<button type="button" class="toggle" title="collapse or expand"></button>'
MESSAGING = {"producer": "⇢ producer", "consumer": "⇠ consumer"}


def _messaging_marks(span: dict[str, Any]) -> tuple[str, str]:
    """A producer or consumer span's badge, and the destination it sent to or read from."""
    kind = span["kind"]
    destination = span["attributes"].get(queries.DESTINATION)
    where = (
        f' · <span class="dest" title="{queries.DESTINATION}">{escape(str(destination))}</span>'
        if destination is not None
        else ""
    )
    return f'<span class="kind-mark {kind}" title="{kind} span">{MESSAGING[kind]}</span>', where


def _longest(comparison: dict[str, Any]) -> int:
    """The longest span duration of a comparison, both sides: the scale of its bars."""
    sides = (row[side] for row in comparison["spans"] for side in ("a", "b"))
    return max((side["duration_ns"] for side in sides if side), default=1) or 1


def _trace_title(trace: dict[str, Any]) -> str:
    root = trace["spans"][0]
    return f"{root['service']}: {root['name']}"
