"""The /debug toggle seen in the logs of the next real HTTP request and gRPC call."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import clue.grpc
from clue import debug, health, log
from clue.admin import AdminServer
from clue.asgi import ClueMiddleware
from tests.conftest import free_port


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"echo": await request.json()})


@pytest.fixture
def web() -> Iterator[str]:
    """A Starlette app behind ClueMiddleware, served by uvicorn from a thread."""
    port = free_port()
    app = ClueMiddleware(Starlette(routes=[Route("/echo", echo, methods=["POST"])]))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
async def rpc_target() -> AsyncIterator[str]:
    """A grpc.aio server with clue's interceptors, serving grpc.health.v1."""
    server = grpc.aio.server(interceptors=clue.grpc.async_server_interceptors())
    health.AsyncHealthServicer(services=["shop.Cart"]).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    debug.disable()
    buffer = io.StringIO()
    log.configure(outputs=[log.Output(buffer, format="json")])
    yield buffer
    log.configure()
    debug.disable()


class Entries:
    """The JSON entries written to a buffer, read in order as they are written."""

    def __init__(self, buffer: io.StringIO) -> None:
        self.buffer = buffer
        self.offset = 0  # where the next read starts: never truncated under a writer

    def through_request_line(self, path: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The entries written since the last read, once the access line of the HTTP
        request to ``path`` is among them.

        The middleware logs a request's payloads, then its access line, after the
        response has been sent (the line holds the whole duration): the client can
        read the response before they are written, from the server's thread.
        ``log.sync()`` writes what waits for a write delay, such as the lines the
        RPC logged before its response.
        """
        deadline = time.monotonic() + timeout
        while True:
            log.sync()
            text = self.buffer.getvalue()
            end = text.rfind("\n") + 1  # complete lines only
            entries = [json.loads(line) for line in text[self.offset : end].splitlines()]
            if any(e["msg"] == "request" and e.get("path") == path for e in entries):
                self.offset = end
                return entries
            assert time.monotonic() < deadline, f"no request line for {path}: {entries}"
            time.sleep(0.01)


def payloads(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["msg"] in ("request payload", "response payload")]


async def test_toggle_reaches_the_next_request_and_rpc(
    web: str, rpc_target: str, logs: io.StringIO
) -> None:
    async def traffic() -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(web + "/echo", json={"sku": "OLJCESPC7Z"})
            assert response.status_code == 200
        async with grpc.aio.insecure_channel(rpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service="shop.Cart"))

    entries = Entries(logs)
    async with AdminServer(metrics=False, token="") as admin, httpx.AsyncClient() as client:
        await traffic()
        assert payloads(entries.through_request_line("/echo")) == []

        assert (await client.get(admin.url + "/debug?debug-logs=on")).status_code == 200
        await traffic()
        seen = payloads(entries.through_request_line("/echo"))
        http_request = next(e for e in seen if e.get("path") == "/echo")
        assert json.loads(http_request["payload"]) == {"sku": "OLJCESPC7Z"}
        rpc = [e for e in seen if e.get("method") == "/grpc.health.v1.Health/Check"]
        assert [e["msg"] for e in rpc] == ["request payload", "response payload"]
        assert json.loads(rpc[0]["payload"]) == {"service": "shop.Cart"}
        assert json.loads(rpc[1]["payload"]) == {"status": "SERVING"}

        assert (await client.get(admin.url + "/debug?debug-logs=off")).status_code == 200
        await traffic()
        assert payloads(entries.through_request_line("/echo")) == []
