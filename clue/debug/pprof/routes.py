"""The ``/debug/pprof/`` endpoints, as Starlette routes relative to their mount point."""

from __future__ import annotations

import asyncio
import html
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Collection
from typing import cast

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from clue.debug._text import quoted
from clue.debug.pprof import dumps
from clue.debug.pprof.encode_pprof import cpu_pprof, heap_pprof
from clue.debug.pprof.encode_stacks import collapsed, speedscope
from clue.debug.pprof.flamegraph import flamegraph
from clue.debug.pprof.heap import DEFAULT_FRAMES, MAX_FRAMES, HeapRecorder, heap_text
from clue.debug.pprof.sampler import (
    MODES,
    CPUProfile,
    CPUSampler,
    Mode,
    SignalModeUnavailable,
)

DEFAULT_SECONDS = 30
MAX_SECONDS = 300
MAX_TOP = 1000
_POLL = 0.25  # how often a running profile checks whether its client went away

_cpu_busy = threading.Lock()
_heap_busy = threading.Lock()

_NO_STORE = {"Cache-Control": "no-store"}

_CPU_FORMATS: dict[str, tuple[Callable[[CPUProfile], str | bytes], str, str | None]] = {
    "pprof": (cpu_pprof, "application/octet-stream", "profile.pb.gz"),
    "collapsed": (collapsed, "text/plain; charset=utf-8", None),
    "speedscope": (speedscope, "application/json", "profile.speedscope.json"),
    "flamegraph": (flamegraph, "text/html; charset=utf-8", None),
}

INDEX = [
    (
        "profile?seconds=30",
        "CPU profile of every busy thread, sampled at 100 Hz for <code>seconds</code> "
        "(1-300, default 30). <code>format=pprof</code> (gzipped protobuf, default), "
        "<code>collapsed</code>, <code>speedscope</code> or <code>flamegraph</code>; "
        "<code>idle=include</code> keeps idle threads; <code>mode=auto</code> (default), "
        "<code>signal</code> or <code>thread</code> picks what drives the sampler.",
    ),
    ("profile?seconds=10&format=flamegraph", "The same as an interactive flame graph."),
    (
        "heap?seconds=30",
        "Memory allocated during <code>seconds</code> (1-300, default 30) and still alive, "
        "traced by tracemalloc keeping <code>frames</code> frames (1-64, default 16), as "
        "gzipped pprof (<code>inuse_objects</code>, <code>inuse_space</code>). Allocations "
        "run many times slower meanwhile.",
    ),
    ("heap?seconds=10&format=text&top=20", "The same as a table of the top lines."),
    ("threads", "Every thread's stack (<code>format=json</code> for JSON)."),
    ("tasks", "Every asyncio task with its coroutine stack (<code>format=json</code>)."),
    ("cmdline", "The process command line, one argument per line."),
]


class BadRequest(Exception):
    """A query parameter the endpoint cannot take; the message says why."""


Endpoint = Callable[[Request], Awaitable[Response]]


def routes() -> list[BaseRoute]:
    """The profiling endpoints, to mount at ``/debug/pprof``.

    ``Mount("/debug/pprof", routes=routes())`` serves the index page at
    ``/debug/pprof/`` and ``profile``, ``heap``, ``threads``, ``tasks`` and
    ``cmdline`` below it.
    """
    return [
        Route("/", _rejecting(index), name="pprof-index"),
        Route("/profile", _rejecting(profile), name="pprof-profile"),
        Route("/heap", _rejecting(heap), name="pprof-heap"),
        Route("/threads", _rejecting(threads), name="pprof-threads"),
        Route("/tasks", _rejecting(tasks), name="pprof-tasks"),
        Route("/cmdline", _rejecting(cmdline), name="pprof-cmdline"),
    ]


async def index(request: Request) -> Response:
    """An HTML page linking every profile with what it does."""
    _params(request, ())
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(link)}">{html.escape(link.split("?")[0])}</a></td>'
        f"<td>{text}</td></tr>"
        for link, text in INDEX
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>/debug/pprof/</title><style>body{font:14px system-ui,sans-serif;margin:2em}"
        "td{padding:4px 12px 4px 0;vertical-align:top}</style></head><body>"
        "<h1>/debug/pprof/</h1><table>"
        f"{rows}</table><p>Python {html.escape(sys.version.split()[0])}</p></body></html>\n"
    )
    return HTMLResponse(page, headers=_NO_STORE)


async def profile(request: Request) -> Response:
    """``profile?seconds=N&format=...&idle=exclude|include&mode=auto|signal|thread``: CPU."""
    params = _params(request, ("seconds", "format", "idle", "mode"))
    seconds = _int(params, "seconds", DEFAULT_SECONDS, 1, MAX_SECONDS)
    encode, media_type, filename = _CPU_FORMATS[_choice(params, "format", _CPU_FORMATS, "pprof")]
    include_idle = _choice(params, "idle", ("exclude", "include"), "exclude") == "include"
    mode = cast(Mode, _choice(params, "mode", MODES, "auto"))
    sampler = CPUSampler(include_idle=include_idle, mode=mode)
    if not _cpu_busy.acquire(blocking=False):
        return _error(409, "a CPU profile is already being taken; retry when it is done")
    try:
        _start(sampler)
        try:
            finished = await _wait(request, seconds)
        except BaseException:
            sampler.stop()
            raise
        result = await _stop(sampler)
        if not finished:
            return Response(status_code=499)
        body = await asyncio.to_thread(encode, result)
    finally:
        _cpu_busy.release()
    return _download(body, media_type, filename)


def _start(sampler: CPUSampler) -> None:
    """Start ``sampler``; ``mode=signal`` where SIGPROF cannot be used is a bad request."""
    try:
        sampler.start()
    except SignalModeUnavailable as exc:
        raise BadRequest(str(exc)) from exc


async def _stop(sampler: CPUSampler) -> CPUProfile:
    """Signal mode stops on this loop, in the main thread that started it; thread mode
    joins its thread (up to one period) off the loop."""
    if sampler.used_mode == "signal":
        return sampler.stop()
    return await asyncio.to_thread(sampler.stop)


async def heap(request: Request) -> Response:
    """``heap?seconds=N&format=pprof|text&top=N&frames=N``: live memory allocated in the window."""
    params = _params(request, ("seconds", "format", "top", "frames"))
    seconds = _int(params, "seconds", DEFAULT_SECONDS, 1, MAX_SECONDS)
    frames = _int(params, "frames", DEFAULT_FRAMES, 1, MAX_FRAMES)
    text = _choice(params, "format", ("pprof", "text"), "pprof") == "text"
    top = _int(params, "top", 20, 1, MAX_TOP)
    if "top" in params and not text:
        raise BadRequest("top only goes with format=text")
    if not _heap_busy.acquire(blocking=False):
        return _error(409, "a heap profile is already being taken; retry when it is done")
    try:
        recorder = HeapRecorder(frames)
        await asyncio.to_thread(recorder.start)
        try:
            finished = await _wait(request, seconds)
        except BaseException:
            recorder.cancel()
            raise
        result = await asyncio.to_thread(recorder.stop)
        if not finished:
            return Response(status_code=499)
        if text:
            table = await asyncio.to_thread(heap_text, result, top)
            return PlainTextResponse(table, headers=_NO_STORE)
        body = await asyncio.to_thread(heap_pprof, result)
    finally:
        _heap_busy.release()
    return _download(body, "application/octet-stream", "heap.pb.gz")


async def threads(request: Request) -> Response:
    """``threads?format=text|json``: every thread's stack."""
    params = _params(request, ("format",))
    as_json = _choice(params, "format", ("text", "json"), "text") == "json"
    found = dumps.threads()
    if as_json:
        return JSONResponse({"threads": dumps.as_json(found)}, headers=_NO_STORE)
    return PlainTextResponse(await asyncio.to_thread(dumps.threads_text, found), headers=_NO_STORE)


async def tasks(request: Request) -> Response:
    """``tasks?format=text|json``: every asyncio task and its coroutine stack."""
    params = _params(request, ("format",))
    as_json = _choice(params, "format", ("text", "json"), "text") == "json"
    found = dumps.tasks()
    if as_json:
        return JSONResponse({"tasks": dumps.as_json(found)}, headers=_NO_STORE)
    return PlainTextResponse(await asyncio.to_thread(dumps.tasks_text, found), headers=_NO_STORE)


async def cmdline(request: Request) -> Response:
    """The command line that started the process, one argument per line."""
    _params(request, ())
    return PlainTextResponse("".join(arg + "\n" for arg in sys.orig_argv), headers=_NO_STORE)


def _rejecting(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` answering 400 with the message of any `BadRequest` it raises."""

    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except BadRequest as exc:
            return _error(400, str(exc))

    handle.__name__ = handle.__qualname__ = endpoint.__name__
    handle.__doc__ = endpoint.__doc__
    return handle


def _params(request: Request, allowed: Collection[str]) -> dict[str, str]:
    names = [name for name, _ in request.query_params.multi_items()]
    for name in names:
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise BadRequest(f"unknown parameter {quoted(name)}; this endpoint takes {takes}")
        if names.count(name) > 1:
            raise BadRequest(f"{name} given more than once")
    return dict(request.query_params)


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    value = int(text) if re.fullmatch(r"[0-9]{1,6}", text) else None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, got {quoted(text)}")
    return value


def _choice(params: dict[str, str], name: str, choices: Collection[str], default: str) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}; got {quoted(value)}")
    return value


async def _wait(request: Request, seconds: int) -> bool:
    """Sleep ``seconds`` unless the client goes away first (then False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(left, _POLL))
        if await request.is_disconnected():
            return False
    return True


def _download(body: str | bytes, media_type: str, filename: str | None) -> Response:
    """The profile as a download named by this process (a worker of a pre-fork server):
    ``profile.pb.gz`` is saved as ``profile-<pid>.pb.gz``."""
    headers = dict(_NO_STORE)
    headers["X-Process-Id"] = str(os.getpid())
    if filename is not None:
        stem, dot, extensions = filename.partition(".")
        named = f"{stem}-{os.getpid()}{dot}{extensions}"
        headers["Content-Disposition"] = f'attachment; filename="{named}"'
    return Response(body, media_type=media_type, headers=headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)
