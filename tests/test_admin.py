"""AdminServer: one in-process uvicorn serving health, metrics, debug and extra routes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from clue import debug, health, log
from clue.admin import AdminServer
from tests.conftest import free_port


async def fault(request: Request) -> JSONResponse:
    return JSONResponse({"fault": request.query_params.get("on", "off")})


def listening_address(port: int) -> str:
    for conn in psutil.Process(os.getpid()).net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            return str(conn.laddr.ip)
    raise AssertionError(f"nothing of ours listens on port {port}")


async def test_serves_everything_on_its_own_port() -> None:
    checker = health.Checker(health.pinger("db", lambda: None))
    admin = AdminServer(
        checker=checker, version="9.9", port=free_port(), routes=[Route("/fault", fault)]
    )
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    await admin.astart()
    try:
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
        assert listening_address(admin.port) == "127.0.0.1"
        async with httpx.AsyncClient(base_url=admin.url) as client:
            healthz = await client.get("/healthz")
            assert healthz.json()["status"] == {"db": "OK"}
            assert healthz.json()["version"] == "9.9"
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/livez")).status_code == 200
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert (await client.get("/debug")).json() == {"debug-logs": "off"}
            assert (await client.get("/fault?on=latency")).json() == {"fault": "latency"}
            pprof = await client.get("/debug/pprof/")
            assert pprof.status_code == 200
    finally:
        await admin.astop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(admin.url + "/livez")


async def test_in_flight_requests_finish_on_stop() -> None:
    arrived = asyncio.Event()

    async def slow(_: Request) -> PlainTextResponse:
        arrived.set()
        await asyncio.sleep(0.3)
        return PlainTextResponse("done")

    admin = AdminServer(metrics=False, routes=[Route("/slow", slow)])
    await admin.astart()
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.get(admin.url + "/slow"))
        await asyncio.wait_for(arrived.wait(), 10)
        await admin.astop()
        response = await request
    assert response.text == "done"


async def test_port_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("CLUE_ADMIN_PORT", str(port))
    async with AdminServer(metrics=False, debug=False) as admin:
        assert admin.port == port
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/livez")).status_code == 200


@pytest.mark.parametrize("value", ["abc", "-1", "70000", "80.5"])
def test_bad_port_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLUE_ADMIN_PORT", value)
    with pytest.raises(ValueError, match="CLUE_ADMIN_PORT must be a port number"):
        AdminServer(metrics=False)


def test_bad_port_argument() -> None:
    with pytest.raises(ValueError, match="port must be between 0 and 65535"):
        AdminServer(port=65536, metrics=False)


async def test_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        admin = AdminServer(port=port, metrics=False)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            await admin.astart()
        with pytest.raises(OSError, match="cannot listen"):
            admin.start()


async def test_start_twice_is_refused() -> None:
    async with AdminServer(metrics=False) as admin:
        with pytest.raises(RuntimeError, match="already running"):
            await admin.astart()
        with pytest.raises(RuntimeError, match="already running"):
            admin.start()
    with AdminServer(metrics=False) as admin:
        with pytest.raises(RuntimeError, match="already running"):
            admin.start()
        with pytest.raises(RuntimeError, match="already running"):
            await admin.astart()


async def test_stopping_the_other_way_is_a_clear_error() -> None:
    """A server started on the loop is not stopped by the blocking stop(), nor the
    reverse: each says which call stops it, and the server keeps serving."""
    async with AdminServer(metrics=False, debug=False) as admin:
        with pytest.raises(RuntimeError, match=r"await astop\(\)"):
            admin.stop()
        async with httpx.AsyncClient() as client:
            assert (await client.get(admin.url + "/livez")).status_code == 200
    with AdminServer(metrics=False, debug=False) as admin:
        with pytest.raises(RuntimeError, match=r"call stop\(\)"):
            await admin.astop()
        async with httpx.AsyncClient() as client:
            assert (await client.get(admin.url + "/livez")).status_code == 200


def test_sync_service_runs_it_in_a_thread() -> None:
    admin = AdminServer(metrics=False, host="localhost", routes=[Route("/fault", fault)])
    admin.start()
    try:
        assert httpx.get(admin.url + "/livez").status_code == 200
        assert httpx.get(admin.url + "/fault?on=errors").json() == {"fault": "errors"}
        response = httpx.get(admin.url + "/debug?debug-logs=on")
        assert response.json() == {"debug-logs": "on"} and log.debug_enabled()
    finally:
        debug.disable()
        admin.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(admin.url + "/livez")


def test_with_block_serves_from_a_thread() -> None:
    with AdminServer(metrics=False, debug=False) as admin:
        assert httpx.get(admin.url + "/livez").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(admin.url + "/livez")


async def test_app_mounts_in_another_server() -> None:
    admin = AdminServer(metrics=False, version="2")
    shop = Starlette(routes=[Mount("/admin", admin.app)])
    transport = httpx.ASGITransport(app=shop, client=("127.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        assert (await client.get("/admin/healthz")).json()["version"] == "2"
        assert (await client.get("/admin/debug")).json() == {"debug-logs": "off"}


async def test_uvicorn_lifecycle_lines_stay_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with AdminServer(metrics=False):
        pass
    assert [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"] == []
    logging.getLogger("uvicorn.error").info("the service's own uvicorn still logs")
    assert [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"] == [
        "the service's own uvicorn still logs"
    ]
