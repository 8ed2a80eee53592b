"""AdminServer: one guard stands in front of every route but the open ones.

The network tests connect to this machine's non-loopback address, so the
server sees a non-loopback peer, as it would a neighbour's.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from clue import debug, log
from clue.admin import PROBE_ROUTES, AdminServer
from tests.outside import outside_address

TOKEN = "s3cret-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL_ONLY = {"error": "this endpoint only answers local callers"}


class Switch:
    """A route added through ``routes=``, like the boutique's fault switches."""

    def __init__(self) -> None:
        self.flips: list[str] = []

    async def flip(self, request: Request) -> JSONResponse:
        self.flips.append(request.query_params.get("on", ""))
        return JSONResponse({"flips": len(self.flips)})

    def route(self) -> Route:
        return Route("/faults", self.flip, methods=["GET", "POST"])


@pytest.fixture(autouse=True)
def debug_off() -> Iterator[None]:
    debug.disable()
    yield
    debug.disable()


def test_every_route_but_the_probes_refuses_a_non_loopback_peer() -> None:
    switch = Switch()
    admin = AdminServer(host="0.0.0.0", token=TOKEN, routes=[switch.route()])
    with admin:
        outside = f"http://{outside_address()}:{admin.port}"
        with httpx.Client(base_url=outside, timeout=10) as client:
            for path in ("/faults?on=1", "/metrics", "/debug?debug-logs=on", "/no/such/path"):
                for headers in ({}, AUTH):
                    for method in ("GET", "POST"):
                        response = client.request(method, path, headers=headers)
                        assert response.status_code == 403, (method, path, headers)
                        assert response.json() == LOCAL_ONLY
            for path in PROBE_ROUTES:
                assert client.get(path).status_code == 200, path
        assert switch.flips == []
        assert not log.debug_enabled()
        local = f"http://127.0.0.1:{admin.port}"
        with httpx.Client(base_url=local, timeout=10) as client:
            for path in ("/faults?on=1", "/metrics", "/no/such/path"):
                assert client.get(path).status_code == 401, path
            assert switch.flips == []
            assert client.post("/faults?on=1", headers=AUTH).json() == {"flips": 1}
            assert client.get("/metrics", headers=AUTH).status_code == 200
            assert client.get("/no/such/path", headers=AUTH).status_code == 404


def test_open_routes_is_the_explicit_choice_of_what_stays_open() -> None:
    scraped = AdminServer(
        host="0.0.0.0",
        token=TOKEN,
        routes=[Switch().route()],
        open_routes=[*PROBE_ROUTES, "/metrics"],
    )
    closed = AdminServer(host="0.0.0.0", token=TOKEN, metrics=False, open_routes=())
    with scraped, closed:
        address = outside_address()
        with httpx.Client(base_url=f"http://{address}:{scraped.port}", timeout=10) as client:
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert client.get("/faults", headers=AUTH).status_code == 403
            assert client.get("/metrics/").status_code == 403  # exact paths only
        with httpx.Client(base_url=f"http://{address}:{closed.port}", timeout=10) as client:
            for path in PROBE_ROUTES:
                assert client.get(path).status_code == 403, path
        local = httpx.get(f"http://127.0.0.1:{closed.port}/livez", timeout=10)
        assert local.status_code == 401


def test_allowed_network_still_needs_the_token_on_added_routes() -> None:
    switch = Switch()
    address = outside_address()
    admin = AdminServer(
        host="0.0.0.0", token=TOKEN, routes=[switch.route()], allow_from=[f"{address}/32"]
    )
    with admin:
        url = f"http://{address}:{admin.port}/faults?on=1"
        for headers in ({}, {"Authorization": "Bearer no"}):
            assert httpx.post(url, headers=headers, timeout=10).status_code == 401
        assert switch.flips == []
        assert httpx.post(url, headers=AUTH, timeout=10).json() == {"flips": 1}


async def test_the_guard_holds_where_the_app_is_mounted() -> None:
    switch = Switch()
    admin = AdminServer(token="", routes=[switch.route()])
    shop = Starlette(routes=[Mount("/admin", admin.app)])
    transport = httpx.ASGITransport(app=shop, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        assert (await client.get("/admin/livez")).status_code == 200
        assert (await client.get("/admin/faults")).status_code == 403
        assert (await client.get("/admin/metrics")).status_code == 403
    assert switch.flips == []


@pytest.mark.parametrize("path", ["livez", "", "x" * 500])
def test_an_open_route_must_be_a_path(path: str) -> None:
    with pytest.raises(ValueError, match="open paths must start with '/'") as caught:
        AdminServer(open_routes=[path])
    assert len(str(caught.value)) < 100
