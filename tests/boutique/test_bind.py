"""Every service listens on the address in ``HOST`` only: loopback unless told otherwise.

Each check starts the service as a real process and connects to this
machine's non-loopback address, as a neighbour would.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reference_services.launcher import ADDRESS_VARIABLES, SERVICES
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.test_runtime import ROOT, service_env, start, stop, wait_ready
from tests.conftest import free_port
from tests.outside import outside_address

GRPC_SERVICES = [name for name in SERVICES if name != "frontend"]
ANSWERS = (  # either is an answer: callees (not running here) decide which
    health_pb2.HealthCheckResponse.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING,
)


def environment(name: str, data: Path, **extra: str) -> tuple[dict[str, str], int, int]:
    """The service's environment without ``HOST`` (unless given); its two ports."""
    port, admin_port = free_port(), free_port()
    env = {k: v for k, v in service_env().items() if k != "HOST"}
    env.update(PORT=str(port), ADMIN_PORT=str(admin_port), DATA_DIR=str(data))
    env.update({ADDRESS_VARIABLES[dep]: "127.0.0.1:1" for dep in SERVICES[name]})
    env.update(extra)
    return env, port, admin_port


def refused(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is refused."""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def health_check(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        return int(reply.status)


@pytest.mark.parametrize("name", GRPC_SERVICES)
async def test_grpc_service_listens_on_loopback_by_default(name: str, tmp_path: Path) -> None:
    outside = outside_address()
    env, port, admin_port = environment(name, tmp_path)
    proc = start(name, env)
    try:
        await wait_ready(proc, f"http://127.0.0.1:{admin_port}")
        assert await health_check(f"127.0.0.1:{port}") in ANSWERS
        assert refused(outside, port), f"{name} answers on {outside}:{port}"
        assert refused(outside, admin_port), f"{name}'s admin port answers on {outside}"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_check(f"{outside}:{port}")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        code, output = stop(proc)
    assert code == 0, output


async def test_cart_of_another_session_is_out_of_a_neighbours_reach(tmp_path: Path) -> None:
    outside = outside_address()
    env, port, admin_port = environment("cart", tmp_path)
    proc = start("cart", env)
    try:
        await wait_ready(proc, f"http://127.0.0.1:{admin_port}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.CartServiceStub(channel)
            await stub.GetCart(pb.GetCartRequest(user_id="victim"), timeout=10)  # served locally
        async with grpc.aio.insecure_channel(f"{outside}:{port}") as channel:
            stub = pb_grpc.CartServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetCart(pb.GetCartRequest(user_id="victim"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        code, output = stop(proc)
    assert code == 0, output


@pytest.mark.parametrize("host", ["0.0.0.0", "outside"])
async def test_grpc_service_listens_where_host_says(host: str, tmp_path: Path) -> None:
    outside = outside_address()
    given = outside if host == "outside" else host
    env, port, admin_port = environment("cart", tmp_path, HOST=given)
    proc = start("cart", env)
    try:
        await wait_ready(proc, f"http://127.0.0.1:{admin_port}")  # admin stays on loopback
        assert await health_check(f"{outside}:{port}") in ANSWERS
        if host == "outside":
            assert refused("127.0.0.1", port)
        else:
            assert await health_check(f"127.0.0.1:{port}") in ANSWERS
        assert refused(outside, admin_port)
    finally:
        code, output = stop(proc)
    assert code == 0, output


async def test_frontend_listens_on_loopback_by_default_and_where_host_says(
    tmp_path: Path,
) -> None:
    outside = outside_address()
    for host in (None, outside):
        extra = {} if host is None else {"HOST": host}
        env, port, admin_port = environment("frontend", tmp_path, **extra)
        proc = start("frontend", env)
        try:
            await wait_ready(proc, f"http://127.0.0.1:{admin_port}")
            assert refused(outside, admin_port)
            listening, closed = ("127.0.0.1", outside) if host is None else (outside, "127.0.0.1")
            async with httpx.AsyncClient() as client:
                probe = await client.get(f"http://{listening}:{port}/_healthz")
            assert probe.text == "ok"
            assert refused(closed, port)
        finally:
            code, output = stop(proc)
        assert code == 0, output


@pytest.mark.parametrize("name", ["cart", "frontend"])
@pytest.mark.parametrize("host", ["0.0.0.0:80", "a host", "x" * 300])
def test_a_bad_host_stops_the_start_with_one_line(name: str, host: str, tmp_path: Path) -> None:
    env, _, _ = environment(name, tmp_path, HOST=host)
    proc = subprocess.run(
        [sys.executable, "-m", f"reference_services.{name}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert f"HOST={host[:40]!r} is not an IP address or host name" in line
    assert len(line) < 120


def test_the_trace_viewer_listens_on_loopback_as_launched() -> None:
    """The launcher starts ``clue.collector`` without a host: its flags default to loopback."""
    outside = outside_address()
    grpc_port, http_port, ui_port = free_port(), free_port(), free_port()
    command = [sys.executable, "-m", "clue.collector", "--grpc-port", str(grpc_port)]
    command += ["--http-port", str(http_port), "--ui-port", str(ui_port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while refused("127.0.0.1", ui_port):
            assert proc.poll() is None and time.monotonic() < deadline, "viewer did not start"
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{ui_port}/api/status", timeout=10).status_code == 200
        for port in (grpc_port, http_port, ui_port):
            assert refused(outside, port), port
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
