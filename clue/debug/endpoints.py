"""The ``/debug`` endpoint and `routes`, which guards it and mounts ``/debug/pprof``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route, Router, request_response
from starlette.types import ASGIApp

from clue import log, telemetry
from clue.debug import toggle
from clue.debug._text import quoted
from clue.debug.guard import Guard


def routes(
    *,
    path: str = "/debug",
    param: str = "debug-logs",
    ttl_param: str = "ttl",
    max_ttl: float = toggle.MAX_TTL,
    token: str | None = None,
    allow_from: Iterable[str] = (),
    pprof: bool = True,
) -> list[BaseRoute]:
    """Routes for the debug toggle at ``path`` and the profiler at ``path/pprof/``.

    ``GET|POST path?<param>=on|off[&<ttl_param>=<duration>]`` turns clue.log
    debug logs on or off for the process (off again after the ttl); without
    parameters it answers the state. Both are wrapped in a `Guard`: callers
    must be on loopback or in ``allow_from``, and carry the bearer ``token``
    (default ``CLUE_ADMIN_TOKEN``) when one is set.
    """
    allowed = tuple(allow_from)

    def guard(app: ASGIApp) -> Guard:
        return Guard(app, token=token, allow_from=allowed)

    return _routes(path, param, ttl_param, max_ttl, pprof, guard)


def unguarded_routes(
    *,
    path: str = "/debug",
    param: str = "debug-logs",
    ttl_param: str = "ttl",
    max_ttl: float = toggle.MAX_TTL,
    pprof: bool = True,
) -> list[BaseRoute]:
    """The same routes without a guard, for an app guarded as a whole (`clue.admin`)."""
    return _routes(path, param, ttl_param, max_ttl, pprof, None)


def _routes(
    path: str,
    param: str,
    ttl_param: str,
    max_ttl: float,
    pprof: bool,
    guard: Callable[[ASGIApp], Guard] | None,
) -> list[BaseRoute]:
    toggle_endpoint = _toggle_endpoint(param, ttl_param, max_ttl)
    # A Route calls a plain function as a request handler and an object as an ASGI app.
    endpoint = toggle_endpoint if guard is None else guard(request_response(toggle_endpoint))
    result: list[BaseRoute] = [Route(path, endpoint, methods=["GET", "POST"], name="debug")]
    if pprof:
        from clue.debug.pprof import routes as profiling

        profiles = Router(routes=profiling())
        app = profiles if guard is None else guard(profiles)
        result.append(Mount(path + "/pprof", app=app, name="pprof"))
    return result


def _toggle_endpoint(param: str, ttl_param: str, max_ttl: float) -> Any:
    async def debug_toggle(request: Request) -> JSONResponse:
        names = [key for key, _ in request.query_params.multi_items()]
        unknown = sorted(set(names) - {param, ttl_param})
        if unknown:
            return _bad(
                f"unknown parameter {quoted(unknown[0])}: use {param}=on|off and {ttl_param}"
            )
        for name in (param, ttl_param):
            if names.count(name) > 1:
                return _bad(f"{name} given more than once")
        value = request.query_params.get(param)
        ttl_text = request.query_params.get(ttl_param)
        if value is None:
            if ttl_text is not None:
                return _bad(f"{ttl_param} only goes with {param}=on")
            return _state(param)
        if value not in ("on", "off"):
            return _bad(f'{param} must be "on" or "off", got {quoted(value)}')
        if ttl_text is not None and value == "off":
            return _bad(f"{ttl_param} only goes with {param}=on")
        try:
            ttl = None if ttl_text is None else toggle.parse_ttl(ttl_text, max_ttl)
        except ValueError as exc:  # "ttl must be ...", in the caller's parameter name
            return _bad(ttl_param + str(exc).removeprefix("ttl"))
        if value == "on":
            toggle.enable(ttl)
        else:
            toggle.disable()
        client = request.client.host if request.client else None
        log.print("debug logs toggled", debug_logs=value, ttl=ttl, peer=client)
        shared = telemetry.workers_dir()
        if shared is not None:  # the other workers of a pre-fork server too
            await telemetry.ask_others(shared, f"debug {value} {'' if ttl is None else ttl}")
        return _state(param)

    return debug_toggle


def _from_another_worker(argument: str) -> bytes:
    """A toggle made through another worker of the server (``CLUE_WORKERS_DIR``)."""
    value, _, ttl = argument.partition(" ")
    if value == "on":
        toggle.enable(float(ttl) if ttl else None)
    elif value == "off":
        toggle.disable()
    else:
        return b"unknown"
    log.print("debug logs toggled by another worker", debug_logs=value)
    return b"ok"


telemetry.on_command("debug", _from_another_worker)


def _state(param: str) -> JSONResponse:
    current = toggle.status()
    body: dict[str, Any] = {param: "on" if current.on else "off"}
    if current.expires_in is not None:
        body["expires_in"] = current.expires_in
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)
