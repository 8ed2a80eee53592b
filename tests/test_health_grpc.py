"""grpc.health.v1 servicer: Kubernetes-style Check probes and Watch over real gRPC."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clue import health

Status = health_pb2.HealthCheckResponse
UP = {"db": True}


def db_ping() -> None:
    if not UP["db"]:
        raise ConnectionError("database is down")


async def serve(servicer: health.AsyncHealthServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    servicer.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, health.AsyncHealthServicer]]:
    """A servicer checking "db", answering for "" and "shop.Cart"."""
    UP["db"] = True
    checker = health.Checker(health.pinger("db", db_ping))
    servicer = health.AsyncHealthServicer(checker, services=["shop.Cart"], watch_interval=0.05)
    server, address = await serve(servicer)
    yield address, servicer
    await server.stop(None)
    UP["db"] = True


@pytest.fixture
async def hanging_target() -> AsyncIterator[str]:
    """A servicer whose only dependency hangs for 10 s (checker timeout 5 s)."""
    release = threading.Event()
    checker = health.Checker(health.pinger("hangs", lambda: release.wait(10)), timeout=5)
    server, address = await serve(health.AsyncHealthServicer(checker))
    yield address
    release.set()
    await server.stop(None)


async def check(target: str, service: str = "", timeout: float = 1.0) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return int(response.status)


async def test_check_like_a_kubernetes_probe(
    target: tuple[str, health.AsyncHealthServicer],
) -> None:
    address, _ = target
    assert await check(address) == Status.SERVING
    assert await check(address, "shop.Cart") == Status.SERVING
    UP["db"] = False
    assert await check(address) == Status.NOT_SERVING
    assert await check(address, "shop.Cart") == Status.NOT_SERVING


async def test_check_unknown_service_is_not_found(
    target: tuple[str, health.AsyncHealthServicer],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await check(target[0], "shop.Nothing")
    assert error.value.code() is grpc.StatusCode.NOT_FOUND
    assert "shop.Nothing" in (error.value.details() or "")


async def test_check_answers_within_the_probe_deadline(hanging_target: str) -> None:
    start = time.monotonic()
    status = await check(hanging_target, timeout=1.0)  # no DEADLINE_EXCEEDED: an answer
    assert status == Status.NOT_SERVING
    assert time.monotonic() - start < 1.0


async def test_watch_sees_changes(target: tuple[str, health.AsyncHealthServicer]) -> None:
    address, servicer = target
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        call = stub.Watch(health_pb2.HealthCheckRequest(service="shop.Cart"))
        updates = call.__aiter__()
        assert (await asyncio.wait_for(updates.__anext__(), 2)).status == Status.SERVING
        UP["db"] = False
        assert (await asyncio.wait_for(updates.__anext__(), 2)).status == Status.NOT_SERVING
        UP["db"] = True
        assert (await asyncio.wait_for(updates.__anext__(), 2)).status == Status.SERVING
        servicer.enter_graceful_shutdown()
        assert (await asyncio.wait_for(updates.__anext__(), 2)).status == Status.NOT_SERVING
        call.cancel()
    assert await check(address) == Status.NOT_SERVING


async def test_watch_unknown_service(target: tuple[str, health.AsyncHealthServicer]) -> None:
    async with grpc.aio.insecure_channel(target[0]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        call = stub.Watch(health_pb2.HealthCheckRequest(service="shop.Nothing"))
        first = await asyncio.wait_for(call.__aiter__().__anext__(), 2)
        assert first.status == Status.SERVICE_UNKNOWN
        call.cancel()


async def test_grpc_pinger_chains_to_the_servicer(
    target: tuple[str, health.AsyncHealthServicer],
) -> None:
    checker = health.Checker(health.GRPCPinger("cart", target[0], service="shop.Cart"))
    assert (await checker.acheck()).ok
    UP["db"] = False
    assert not (await checker.acheck()).ok
    await checker.aclose()


def test_bad_watch_interval() -> None:
    with pytest.raises(ValueError, match="watch_interval"):
        health.AsyncHealthServicer(watch_interval=0)


@pytest.fixture
def sync_target() -> Iterator[tuple[str, health.HealthServicer]]:
    """A thread-pool grpc.server with the sync servicer checking "db"."""
    UP["db"] = True
    checker = health.Checker(health.pinger("db", db_ping))
    servicer = health.HealthServicer(checker, services=["shop.Cart"], watch_interval=0.05)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)
    servicer.close()
    UP["db"] = True


def test_sync_servicer_check_and_watch(
    sync_target: tuple[str, health.HealthServicer],
) -> None:
    address, servicer = sync_target
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def check(service: str = "") -> int:
            request = health_pb2.HealthCheckRequest(service=service)
            return int(stub.Check(request, timeout=2).status)

        assert check() == Status.SERVING
        assert check("shop.Cart") == Status.SERVING
        with pytest.raises(grpc.RpcError) as error:
            check("shop.Nothing")
        assert error.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

        watch = stub.Watch(health_pb2.HealthCheckRequest(service="shop.Cart"), timeout=5)
        assert next(watch).status == Status.SERVING
        UP["db"] = False
        assert next(watch).status == Status.NOT_SERVING
        assert check() == Status.NOT_SERVING
        UP["db"] = True
        assert next(watch).status == Status.SERVING
        servicer.enter_graceful_shutdown()
        assert next(watch).status == Status.NOT_SERVING
        watch.cancel()
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="shop.Nothing"), timeout=5)
        assert next(unknown).status == Status.SERVICE_UNKNOWN
        unknown.cancel()


@pytest.mark.parametrize("length", [65, 3_000_000])
async def test_a_long_unknown_name_is_quoted_short(
    target: tuple[str, health.AsyncHealthServicer], length: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await check(target[0], "x" * length, timeout=10)
    assert error.value.code() is grpc.StatusCode.NOT_FOUND
    assert error.value.details() == f"unknown service {'x' * 64!r}..."
