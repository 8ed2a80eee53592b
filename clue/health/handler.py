"""ASGI endpoints: ``/healthz`` and ``/readyz`` (dependencies) and ``/livez`` (process)."""

from __future__ import annotations

import json
import time
from xml.etree import ElementTree

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clue.health.checker import Checker, Report

STARTED = time.monotonic()
"""When the process imported clue.health: the origin of the reported uptime."""


def routes(checker: Checker | None = None, version: str = "") -> list[BaseRoute]:
    """Starlette routes for ``/healthz``, ``/readyz`` and ``/livez``.

    ``/healthz`` and ``/readyz`` ping the checker's dependencies; ``/livez``
    only says the process answers. Each answers 200 when all is OK and 503
    otherwise, with ``{"status": {"<dep>": "OK" | "NOT OK"}, "uptime": <s>,
    "version": "<version>"}`` as JSON, or as XML when the client prefers
    ``application/xml``. Why a dependency failed goes to the log only.
    """
    checker = checker or Checker()

    async def dependencies(request: Request) -> Response:
        return _render(request, await checker.acheck(), version)

    async def process(request: Request) -> Response:
        return _render(request, Report({}), version)

    return [
        Route("/healthz", dependencies, methods=["GET"], name="healthz"),
        Route("/readyz", dependencies, methods=["GET"], name="readyz"),
        Route("/livez", process, methods=["GET"], name="livez"),
    ]


def app(checker: Checker | None = None, version: str = "") -> Starlette:
    """A standalone ASGI app serving `routes`."""
    return Starlette(routes=routes(checker, version))


def _render(request: Request, report: Report, version: str) -> Response:
    code = 200 if report.ok else 503
    uptime = int(time.monotonic() - STARTED)
    headers = {"Cache-Control": "no-store"}
    if _wants_xml(request.headers.get("accept", "")):
        root = ElementTree.Element("health")
        status = ElementTree.SubElement(root, "status")
        for name, value in report.status().items():
            ElementTree.SubElement(status, "dependency", name=name).text = value
        ElementTree.SubElement(root, "uptime").text = str(uptime)
        ElementTree.SubElement(root, "version").text = version
        body = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
        return Response(body, code, headers, media_type="application/xml")
    payload = {"status": report.status(), "uptime": uptime, "version": version}
    return Response(json.dumps(payload), code, headers, media_type="application/json")


def _wants_xml(accept: str) -> bool:
    """True when the Accept header ranks an XML type above JSON."""
    best = {"json": 0.0, "xml": 0.0}
    for rank, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        kind = {"application/json": "json", "application/xml": "xml", "text/xml": "xml"}.get(
            media.strip().lower()
        )
        if kind is None:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # Earlier entries win ties, as most clients list their preference first.
        score = q - rank * 1e-6
        best[kind] = max(best[kind], score)
    return best["xml"] > best["json"]
