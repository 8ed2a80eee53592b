"""The JSON API under ``/api/``: the data behind the UI, for scripts as well."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clue.collector import analysis, queries, series
from clue.collector.config import quote
from clue.collector.params import BadParameter, Params, checked_length, parse_trace_id
from clue.collector.store import Store

TIME = {"start", "end", "lookback"}
TRACE_SEARCH = TIME | {
    "service",
    "operation",
    "min_duration",
    "max_duration",
    "errors",
    "attr",
    "limit",
}
LOG_SEARCH = TIME | {"service", "severity", "q", "trace_id", "attr", "limit"}


class NotFound(LookupError):
    """The requested trace or metric is not stored (answered with 404)."""


def trace_filter(p: Params) -> queries.TraceFilter:
    """A :class:`queries.TraceFilter` from validated search parameters."""
    start, end = p.time_range()
    return queries.TraceFilter(
        service=p.text("service"),
        operation=p.text("operation"),
        min_duration_ns=p.duration_ns("min_duration"),
        max_duration_ns=p.duration_ns("max_duration"),
        errors_only=p.flag("errors"),
        start_ns=start,
        end_ns=end,
        attributes=p.attributes("attr"),
        limit=p.integer("limit", 20, 1, 1000),
    )


def log_filters(p: Params) -> dict[str, Any]:
    """The filters of a log search or tail (all but the time range and limit), validated."""
    return {
        "service": p.text("service"),
        "min_severity": p.severity("severity"),
        "text": p.text("q"),
        "trace_id": p.trace_id("trace_id"),
        "attributes": p.attributes("attr"),
    }


def log_search(store: Store, p: Params) -> list[dict[str, Any]]:
    """Logs matching validated log-search parameters, newest first."""
    start, end = p.time_range()
    return queries.logs(
        store,
        **log_filters(p),
        start_ns=start,
        end_ns=end,
        limit=p.integer("limit", 100, 1, 10_000),
    )


def get_trace(store: Store, raw_id: str, name: str = "trace_id") -> dict[str, Any]:
    """One trace with its critical path and flame graph rows, or :class:`NotFound`."""
    found = queries.trace(store, parse_trace_id(raw_id, name))
    if found is None:
        shown = "" if name == "trace_id" else f"{name}="
        raise NotFound(f"trace {shown}{raw_id} not found (never received, or evicted by retention)")
    found["critical_path"] = analysis.critical_path(found)
    found["flame_rows"] = analysis.flame_rows(found)
    return found


def get_comparison(store: Store, p: Params) -> dict[str, Any]:
    """Traces ``a`` and ``b`` compared span by span (both required)."""
    raw = {}
    for name in ("a", "b"):
        value = p.text(name)
        if value is None:
            raise BadParameter(name, "is required: the id of a trace to compare")
        parse_trace_id(value, name)
        raw[name] = value
    return analysis.compare(get_trace(store, raw["a"], "a"), get_trace(store, raw["b"], "b"))


def get_series(store: Store, name: str, p: Params) -> dict[str, Any]:
    checked_length("name", name)
    start, end = p.time_range()
    found = series.series(store, name, service=p.text("service"), start_ns=start, end_ns=end)
    if found is None:
        raise NotFound(f"no points of metric {quote(name)} for this selection")
    return found


Handler = Callable[[Request], Any]


def _json(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run *handler* off the event loop; map validation errors to 400 and misses to 404."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(handler, request))
        except BadParameter as exc:
            return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
        except NotFound as exc:
            return JSONResponse({"error": str(exc)}, 404)

    return endpoint


def routes(store: Store, status: Callable[[], dict[str, Any]]) -> list[Route]:
    """Starlette routes of the JSON API."""

    def services(request: Request) -> Any:
        Params(request.query_params, set())
        return {"services": queries.services(store)}

    def traces(request: Request) -> Any:
        return {
            "traces": queries.search_traces(
                store, trace_filter(Params(request.query_params, TRACE_SEARCH))
            )
        }

    def one_trace(request: Request) -> Any:
        Params(request.query_params, set())
        return get_trace(store, request.path_params["trace_id"])

    def compare(request: Request) -> Any:
        return get_comparison(store, Params(request.query_params, {"a", "b"}))

    def logs(request: Request) -> Any:
        return {"logs": log_search(store, Params(request.query_params, LOG_SEARCH))}

    def deps(request: Request) -> Any:
        start, _ = Params(request.query_params, {"lookback", "start"}).time_range()
        return queries.dependencies(store, start)

    def metrics(request: Request) -> Any:
        p = Params(request.query_params, {"service"})
        return {"metrics": series.metric_list(store, p.text("service"))}

    def metric_series(request: Request) -> Any:
        p = Params(request.query_params, TIME | {"service"})
        return get_series(store, request.path_params["name"], p)

    def get_status(request: Request) -> Any:
        Params(request.query_params, set())
        return status()

    return [
        Route("/api/services", _json(services)),
        Route("/api/traces", _json(traces)),
        Route("/api/traces/{trace_id}", _json(one_trace)),
        Route("/api/compare", _json(compare)),
        Route("/api/logs", _json(logs)),
        Route("/api/dependencies", _json(deps)),
        Route("/api/metrics", _json(metrics)),
        Route("/api/metrics/{name}/series", _json(metric_series)),
        Route("/api/status", _json(get_status)),
    ]
