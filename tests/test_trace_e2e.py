"""One trace across two services in two processes, exported over real OTLP/gRPC.

Process A is a Starlette app on uvicorn wrapped in ``clue.asgi.ClueMiddleware``;
its handler calls process B, a ``grpc.aio`` server with
``clue.grpc.async_server_interceptors()``, through ``clue.grpc.async_insecure_channel``. Both
run ``clue.configure`` with the OTLP exporters pointed (by the standard
environment variables) at the test's OTLP/gRPC receiver. The test asserts one
trace ``A SERVER -> A CLIENT -> B SERVER`` and log records from both processes
carrying its trace id.

The services are this module run as a script: ``python -m tests.test_trace_e2e a|b``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.otlp_receiver import LogRecord, OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
METHOD = "/e2e.Inventory/Reserve"
SERVER, CLIENT = 2, 3  # opentelemetry.proto SpanKind values


# --- the two services (run in child processes) -------------------------------------------


def _listening_socket() -> socket.socket:
    # IPPROTO_TCP so that asyncio turns Nagle off on accepted connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _stdin_closed() -> None:
    """Return when the parent closes our stdin (the signal to stop)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _serve_inventory() -> None:
    """Service B: grpc.aio, one unary method echoing the requested item."""
    import grpc
    import grpc.aio
    from google.protobuf.wrappers_pb2 import StringValue

    import clue
    import clue.grpc
    from clue import log

    clue.configure("inventory", "2.0.0")

    async def reserve(request: StringValue, context: Any) -> StringValue:
        log.info("reserving", item=request.value)
        return StringValue(value=f"reserved {request.value}")

    handler = grpc.unary_unary_rpc_method_handler(
        reserve,
        request_deserializer=StringValue.FromString,
        response_serializer=StringValue.SerializeToString,
    )
    server = grpc.aio.server(interceptors=clue.grpc.async_server_interceptors())
    service, method = METHOD.lstrip("/").split("/")
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {method: handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await _stdin_closed()
    await server.stop(None)


async def _serve_shop(inventory: str) -> None:
    """Service A: Starlette on uvicorn, calling B for every checkout."""
    import uvicorn
    from google.protobuf.wrappers_pb2 import StringValue
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import clue
    import clue.grpc
    from clue import log
    from clue.asgi import ClueMiddleware

    clue.configure("shop", "1.0.0")
    channel = clue.grpc.async_insecure_channel(inventory)
    reserve = channel.unary_unary(
        METHOD,
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )

    async def checkout(request: Request) -> JSONResponse:
        item = request.path_params["item"]
        log.info("checking out", item=item)
        reply = await reserve(StringValue(value=item))
        return JSONResponse({"reply": reply.value})

    app = ClueMiddleware(Starlette(routes=[Route("/checkout/{item}", checkout)]))
    sock = _listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await _stdin_closed()
    server.should_exit = True
    await serving
    await channel.close()


def _child_main(argv: list[str]) -> None:
    from clue import log

    log.configure(outputs=[log.Output(sys.stderr, format="json")])
    if argv[0] == "b":
        asyncio.run(_serve_inventory())
    else:
        asyncio.run(_serve_shop(argv[1]))


# --- the test -----------------------------------------------------------------------------


class Service:
    """A child process running one of the services above until its stdin closes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.test_trace_e2e", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def port(self) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            _, errors = self.proc.communicate(timeout=10)
            raise AssertionError(f"service did not start: {line!r}\n{errors}")
        return int(line.split()[1])

    def stop(self) -> str:
        """Close stdin, wait for a clean exit (clue.shutdown flushes at exit), return stderr."""
        _, errors = self.proc.communicate(input="", timeout=20)
        assert self.proc.returncode == 0, errors
        return errors

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def test_one_trace_across_asgi_and_grpc_processes(receiver: OTLPReceiver) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_METRICS_EXPORTER="none",
        PYTHONPATH=str(ROOT),
    )
    inventory = Service(env, "b")
    shop: Service | None = None
    try:
        inventory_port = inventory.port()
        shop = Service(env, "a", f"127.0.0.1:{inventory_port}")
        shop_port = shop.port()
        response = httpx.get(f"http://127.0.0.1:{shop_port}/checkout/mug", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"reply": "reserved mug"}
        shop_lines = shop.stop()
        inventory_lines = inventory.stop()
    finally:
        for service in (shop, inventory):
            if service is not None:
                service.kill()

    spans = receiver.wait_for(lambda r: r.spans() if len(r.spans()) >= 3 else None)
    by_kind = {(s.service_name, s.kind): s for s in spans}
    a_server = by_kind[("shop", SERVER)]
    a_client = by_kind[("shop", CLIENT)]
    b_server = by_kind[("inventory", SERVER)]
    assert len(spans) == 3, [(s.service_name, s.name) for s in spans]

    # One trace, chained A SERVER -> A CLIENT -> B SERVER.
    assert {s.trace_id for s in spans} == {a_server.trace_id}
    assert a_server.parent_span_id == ""
    assert a_client.parent_span_id == a_server.span_id
    assert b_server.parent_span_id == a_client.span_id
    assert a_server.name == "GET /checkout/{item}"
    assert a_server.attributes["http.route"] == "/checkout/{item}"
    assert a_server.attributes["http.response.status_code"] == 200
    assert a_client.name == b_server.name == "e2e.Inventory/Reserve"
    assert b_server.attributes["rpc.service"] == "e2e.Inventory"
    assert b_server.attributes["rpc.grpc.status_code"] == 0

    # Log records from both processes carry that trace id, each with its own span.
    logs: list[LogRecord] = receiver.wait_for(
        lambda r: r.logs() if {g.service_name for g in r.logs()} >= {"shop", "inventory"} else None
    )
    by_body = {(g.service_name, g.body): g for g in logs}
    checking_out = by_body[("shop", "checking out")]
    reserving = by_body[("inventory", "reserving")]
    assert checking_out.trace_id == reserving.trace_id == a_server.trace_id
    assert checking_out.span_id == a_server.span_id
    assert reserving.span_id == b_server.span_id
    request_lines = [g for g in logs if g.body == "request"]
    assert {g.service_name for g in request_lines} == {"shop", "inventory"}
    assert all(g.trace_id == a_server.trace_id for g in request_lines)
    # The lines written on each service's own output carry the trace id too.
    assert a_server.trace_id in shop_lines and a_server.trace_id in inventory_lines


if __name__ == "__main__":
    _child_main(sys.argv[1:])
