"""Pingers against real dependencies: PostgreSQL, Redis, HTTP, gRPC, a silent TCP peer."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
import redis
import redis.asyncio
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer as StandardHealthServicer
from grpc_health.v1.health_pb2_grpc import add_HealthServicer_to_server
from psycopg.conninfo import make_conninfo
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from clue import health
from clue.admin import AdminServer
from tests.conftest import free_port


def closed_port() -> int:
    """A loopback port nobody listens on."""
    return free_port()


async def test_postgres_pinger(postgres_url: str) -> None:
    dsn = make_conninfo(postgres_url, connect_timeout=2)

    async def ping_postgres() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await conn.execute("SELECT 1")

    async def wrong_database() -> None:
        dsn_elsewhere = make_conninfo(dsn, dbname="no_such_database")
        async with await psycopg.AsyncConnection.connect(dsn_elsewhere) as conn:
            await conn.execute("SELECT 1")

    def sync_postgres() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")

    checker = health.Checker(
        health.pinger("postgres", ping_postgres),
        health.pinger("postgres-sync", sync_postgres),
        health.pinger("postgres-missing-db", wrong_database),
        timeout=3,
    )
    report = await checker.acheck()
    assert report.status() == {
        "postgres": "OK",
        "postgres-sync": "OK",
        "postgres-missing-db": "NOT OK",
    }


async def test_redis_pinger(redis_url: str) -> None:
    up = redis.asyncio.Redis.from_url(redis_url)
    no_retry = Retry(NoBackoff(), 0)  # fail at once rather than retry until the timeout
    down = redis.asyncio.Redis(host="127.0.0.1", port=closed_port(), retry=no_retry)
    blocking = redis.Redis.from_url(redis_url)
    try:
        checker = health.Checker(
            health.pinger("redis", up.ping),
            health.pinger("redis-sync", blocking.ping),
            health.pinger("redis-down", down.ping),
            timeout=5,
        )
        report = await checker.acheck()
    finally:
        await up.aclose()
        await down.aclose()
        blocking.close()
    assert report.status() == {"redis": "OK", "redis-sync": "OK", "redis-down": "NOT OK"}


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_pinger_to_a_server_that_never_answers(silent_server: int) -> None:
    def raw_socket() -> None:
        with socket.create_connection(("127.0.0.1", silent_server)) as conn:
            conn.sendall(b"PING\r\n")
            conn.recv(1)  # blocks: the server never answers

    http = health.HTTPPinger("http", f"http://127.0.0.1:{silent_server}")
    checker = health.Checker(
        health.pinger("tcp", raw_socket),
        http,
        health.GRPCPinger("grpc", f"127.0.0.1:{silent_server}"),
        health.pinger("fine", lambda: None),
        timeout=0.3,
    )
    start = time.monotonic()
    report = await checker.acheck()
    elapsed = time.monotonic() - start
    await checker.aclose()
    assert report.status() == {
        "tcp": "NOT OK",
        "http": "NOT OK",
        "grpc": "NOT OK",
        "fine": "OK",
    }
    assert 0.3 <= elapsed < 1.5  # abandoned at the timeout, not held by the silent peer


async def test_http_pinger_healthy_on_2xx_only() -> None:
    def status(code: int) -> Response:
        return PlainTextResponse("x", status_code=code)

    routes = [
        Route("/ok/livez", lambda _: status(204)),
        Route("/broken/livez", lambda _: status(500)),
        Route("/moved/livez", lambda _: RedirectResponse("/ok/livez")),
        Route("/custom/ready", lambda _: status(200)),
    ]
    async with AdminServer(routes=routes, metrics=False, debug=False) as server:
        pingers = [
            health.HTTPPinger("ok", server.url + "/ok"),
            health.HTTPPinger("broken", server.url + "/broken/"),
            health.HTTPPinger("moved", server.url + "/moved"),
            health.HTTPPinger("missing", server.url + "/nothing"),
            health.HTTPPinger("custom", server.url + "/custom", path="ready"),
            health.HTTPPinger("livez-of-admin", server.url),
            health.HTTPPinger("refused", f"http://127.0.0.1:{closed_port()}"),
        ]
        checker = health.Checker(*pingers, timeout=5)
        report = await checker.acheck()
        again = await checker.acheck()  # the pooled client is reused
        await checker.aclose()
    expected = {
        "ok": "OK",
        "broken": "NOT OK",
        "moved": "NOT OK",
        "missing": "NOT OK",
        "custom": "OK",
        "livez-of-admin": "OK",
        "refused": "NOT OK",
    }
    assert report.status() == expected
    assert again.status() == expected


def test_http_pinger_works_from_successive_event_loops() -> None:
    server = AdminServer(metrics=False, debug=False)
    with server:
        checker = health.Checker(health.HTTPPinger("admin", server.url))
        assert asyncio.run(checker.acheck()).ok
        assert asyncio.run(checker.acheck()).ok  # a new loop gets a new client


def test_blocking_check_keeps_its_pooled_connection_until_closed() -> None:
    """``Checker.check`` from a thread without a loop: the pings run on the checker's
    own loop, so its HTTP client (one connection) serves every check until close."""
    peers: list[int] = []

    def livez(request: Request) -> Response:
        assert request.client is not None
        peers.append(request.client.port)
        return PlainTextResponse("ok")

    def loop_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "clue-health-checks"}

    others = loop_threads()  # other tests' checkers may still have theirs
    with AdminServer(routes=[Route("/counted/livez", livez)], metrics=False, debug=False) as server:
        checker = health.Checker(health.HTTPPinger("admin", server.url + "/counted"), timeout=5)
        assert all(checker.check().ok for _ in range(3))
        assert len(peers) == 3 and len(set(peers)) == 1
        assert len(loop_threads() - others) == 1
        checker.close()
        deadline = time.monotonic() + 10
        while loop_threads() - others:
            assert time.monotonic() < deadline, "the checker's loop thread did not stop"
            time.sleep(0.01)
        assert checker.check().ok  # a later check starts another loop and client
        assert len(set(peers)) == 2
        checker.close()


def test_http_pinger_bad_arguments() -> None:
    with pytest.raises(ValueError, match="http"):
        health.HTTPPinger("x", "localhost:8080")
    with pytest.raises(ValueError, match="http"):
        health.HTTPPinger("x", "ftp://host")
    with pytest.raises(ValueError, match="non-empty"):
        health.HTTPPinger("", "http://host")
    with pytest.raises(ValueError, match="timeout"):
        health.HTTPPinger("x", "http://host", timeout=0)


async def test_grpc_pinger_against_a_real_health_server() -> None:
    standard = StandardHealthServicer()
    await standard.set("shop.Cart", health_pb2.HealthCheckResponse.SERVING)
    await standard.set("shop.Payment", health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.aio.server()
    add_HealthServicer_to_server(standard, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    try:
        checker = health.Checker(
            health.GRPCPinger("server", target),
            health.GRPCPinger("cart", target, service="shop.Cart"),
            health.GRPCPinger("payment", target, service="shop.Payment"),
            health.GRPCPinger("unknown", target, service="shop.Nothing"),
            health.GRPCPinger("nobody", f"127.0.0.1:{closed_port()}", timeout=0.5),
            timeout=5,
        )
        report = await checker.acheck()
        await standard.set("shop.Payment", health_pb2.HealthCheckResponse.SERVING)
        later = await checker.acheck()
        await checker.aclose()
    finally:
        await server.stop(None)
    assert report.status() == {
        "server": "OK",
        "cart": "OK",
        "payment": "NOT OK",
        "unknown": "NOT OK",
        "nobody": "NOT OK",
    }
    assert later.healthy["payment"]


def test_grpc_pinger_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target"):
        health.GRPCPinger("x", "")
    with pytest.raises(ValueError, match="timeout"):
        health.GRPCPinger("x", "127.0.0.1:1", timeout=-2)


async def test_grpc_pinger_sees_a_server_back_within_a_second_or_two() -> None:
    """After a six-second outage gRPC's default back-off would wait about four seconds
    more before reconnecting; the pinger's channel retries at most a second apart."""
    port = free_port()
    target = f"127.0.0.1:{port}"

    async def serve() -> grpc.aio.Server:
        standard = StandardHealthServicer()
        await standard.set("", health_pb2.HealthCheckResponse.SERVING)
        server = grpc.aio.server()
        add_HealthServicer_to_server(standard, server)
        server.add_insecure_port(target)
        await server.start()
        return server

    checker = health.Checker(health.GRPCPinger("dependency", target, timeout=0.5), timeout=5)
    server = await serve()
    try:
        assert (await checker.acheck()).healthy["dependency"]
        await server.stop(None)
        down = time.monotonic()
        while time.monotonic() - down < 6:  # failing checks grow the channel's back-off
            assert not (await checker.acheck()).healthy["dependency"]
            await asyncio.sleep(0.2)
        server = await serve()
        back = time.monotonic()
        while not (await checker.acheck()).healthy["dependency"]:
            assert time.monotonic() - back < 2.0, "the pinger did not see the server's return"
            await asyncio.sleep(0.05)
    finally:
        await checker.aclose()
        await server.stop(None)
