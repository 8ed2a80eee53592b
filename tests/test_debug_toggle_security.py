"""Who may reach /debug*: bearer token (CLUE_ADMIN_TOKEN) and loopback-only peers."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from clue import debug, health, log
from clue.admin import AdminServer
from tests.outside import outside_address

TOKEN = "s3cret-t0ken"


@pytest.fixture(autouse=True)
def debug_off() -> Iterator[None]:
    debug.disable()
    yield
    debug.disable()


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    """An admin server started with CLUE_ADMIN_TOKEN set."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLUE_ADMIN_TOKEN", TOKEN)
        server = AdminServer(metrics=False)
    with server:
        yield server.url


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        "Bearer  wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        TOKEN,
    ],
)
def test_missing_or_wrong_token_is_401(guarded: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.get(guarded + "/debug?debug-logs=on", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"error": "missing or wrong bearer token"}
    assert not log.debug_enabled()


def test_right_token_is_let_through(guarded: str) -> None:
    for scheme in ("Bearer", "bearer"):
        headers = {"Authorization": f"{scheme} {TOKEN}"}
        response = httpx.get(guarded + "/debug?debug-logs=on", headers=headers)
        assert response.status_code == 200
        assert log.debug_enabled()
        debug.disable()


def test_health_stays_open(guarded: str) -> None:
    for path in ("/livez", "/healthz", "/readyz"):
        assert httpx.get(guarded + path).status_code == 200


def app(**options: object) -> Starlette:
    return Starlette(
        routes=[*health.routes(), *debug.routes(pprof=False, **options)]  # type: ignore[arg-type]
    )


async def call(app: Starlette, peer: str | None, path: str = "/debug?debug-logs=on") -> int:
    client = None if peer is None else (peer, 40000)
    transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        return (await http.get(path)).status_code


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_loopback_peers_are_served(peer: str) -> None:
    assert await call(app(token=""), peer) == 200


@pytest.mark.parametrize("peer", ["203.0.113.7", "10.1.2.3", "2001:db8::1", "testclient", None])
async def test_other_peers_are_refused(peer: str | None) -> None:
    assert await call(app(token=""), peer) == 403
    assert not log.debug_enabled()
    assert await call(app(token=""), peer, "/healthz") == 200  # health stays open


async def test_allow_from_admits_networks() -> None:
    allowing = app(token="", allow_from=["10.0.0.0/8", "2001:db8::/32"])
    assert await call(allowing, "10.1.2.3") == 200
    assert await call(allowing, "2001:db8::1") == 200
    assert await call(allowing, "203.0.113.7") == 403


async def test_allowed_remote_peer_still_needs_the_token() -> None:
    allowing = app(token=TOKEN, allow_from=["0.0.0.0/0"])
    assert await call(allowing, "203.0.113.7") == 401
    assert not log.debug_enabled()


def test_bad_allow_from_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        debug.routes(allow_from=["10.0.0.0/33"])


async def test_websockets_are_guarded_too() -> None:
    reached: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["client"][0])

    guard = debug.Guard(inner, token=TOKEN)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    def scope(peer: str, authorization: bytes = b"") -> dict[str, Any]:
        headers = [(b"authorization", authorization)] if authorization else []
        return {"type": "websocket", "path": "/debug", "client": (peer, 1), "headers": headers}

    await guard(scope("203.0.113.7", b"Bearer " + TOKEN.encode()), receive, send)
    await guard(scope("127.0.0.1"), receive, send)
    assert [m["code"] for m in sent] == [1008, 1008]
    await guard(scope("127.0.0.1", b"Bearer " + TOKEN.encode()), receive, send)
    assert reached == ["127.0.0.1"]


async def test_pprof_is_mounted_behind_the_same_guard() -> None:
    guarded = Starlette(routes=debug.routes(token=TOKEN))
    assert await call(guarded, "203.0.113.7", "/debug/pprof/") == 403
    assert await call(guarded, "127.0.0.1", "/debug/pprof/") == 401
    transport = httpx.ASGITransport(app=guarded, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/debug/pprof/", headers=headers)).status_code == 200
        threads = await http.get("/debug/pprof/threads", headers=headers)
        assert threads.status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/heap?seconds=1"],
)
def test_pprof_over_http_needs_the_token(guarded: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(guarded + path, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == {"error": "missing or wrong bearer token"}
    assert not [t for t in threading.enumerate() if t.name == "clue-cpu-sampler"]
    assert not tracemalloc.is_tracing()
    right = httpx.get(guarded + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert right.status_code == 200


def test_a_real_non_loopback_peer_is_refused_and_allow_from_admits_it() -> None:
    address = outside_address()
    exposed = AdminServer(host="0.0.0.0", metrics=False, token="")
    admitting = AdminServer(host="0.0.0.0", metrics=False, token="", allow_from=[f"{address}/32"])
    with exposed, admitting:
        # The request leaves from (and arrives at) the machine's own outside address.
        url = f"http://{address}:{exposed.port}"
        for path in ("/debug?debug-logs=on", "/debug/pprof/", "/debug/pprof/threads"):
            response = httpx.get(url + path, timeout=10)
            assert response.status_code == 403, path
            assert response.json() == {"error": "this endpoint only answers local callers"}
        assert not log.debug_enabled()
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{exposed.port}/debug").status_code == 200
        allowed = f"http://{address}:{admitting.port}"
        assert httpx.get(allowed + "/debug/pprof/threads", timeout=10).status_code == 200
