"""The launcher: port plan, start order, and the ``up|status|down|demo`` commands for real."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reference_services.launcher import (
    ADDRESS_VARIABLES,
    SERVICES,
    Boutique,
    LaunchError,
    alive,
    levels,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


def command(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference_services", *args, "--data-dir", str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def addresses(output: str) -> dict[str, tuple[str, str]]:
    """process -> (gRPC address, admin URL), from the table ``demo``, ``up`` or ``status``
    prints (``status`` puts the pid between the name and the address)."""
    rows = re.findall(
        r"^\s*(\w+)\s+(?:\d+\s+)?(127\.0\.0\.1:\d+|-)\s+(http://\S+)", output, re.MULTILINE
    )
    return {name: (address, admin) for name, address, admin in rows}


def serving(address: str) -> bool:
    """Whether a real gRPC health check at ``address`` answers SERVING."""
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_levels_start_callees_before_callers() -> None:
    order = [name for group in levels() for name in group]
    assert sorted(order) == sorted(SERVICES)
    position = {name: i for i, group in enumerate(levels()) for name in group}
    for name, callees in SERVICES.items():
        assert all(position[c] < position[name] for c in callees), name
    assert levels()[-1] == ["frontend"]


def test_port_plan_and_environment(tmp_path: Path) -> None:
    boutique = Boutique(tmp_path, base_port=20000, collector=False, env={"CLUE_LOG_FORMAT": "json"})
    ports = [p for proc in boutique.processes.values() for p in (proc.port, proc.admin_port)]
    # the services, then (after a spare port) the event broker's client and monitoring ports
    end = 20000 + 2 * len(SERVICES)
    assert ports == [*range(20000, end), end + 1, end + 2]
    env = boutique.service_environment("checkout")
    assert env["PORT"] == str(boutique.processes["checkout"].port)
    assert env["ADMIN_PORT"] == str(boutique.processes["checkout"].admin_port)
    assert env["PAYMENT_SERVICE_ADDR"] == f"127.0.0.1:{boutique.processes['payment'].port}"
    assert env["DATA_DIR"] == str(tmp_path.resolve())
    assert env["OTEL_SERVICE_NAME"] == "checkout" and env["CLUE_LOG_FORMAT"] == "json"
    assert env["OTEL_TRACES_EXPORTER"] == "none"  # no viewer: telemetry stays local
    assert "AD_SERVICE_ADDR" not in env  # only what checkout calls
    assert env["NATS_URL"] == f"nats://127.0.0.1:{end + 1}"
    assert ("event broker", f"nats://127.0.0.1:{end + 1}") in boutique.urls()
    # its orders are user-scoped: it verifies tokens with the user service's keys
    assert env["USER_SERVICE_ADDR"] == f"127.0.0.1:{boutique.processes['user'].port}"
    frontend = boutique.service_environment("frontend")
    assert {ADDRESS_VARIABLES[s] for s in SERVICES["frontend"]} <= frontend.keys()
    viewer = Boutique(tmp_path, base_port=20000, collector=True)
    assert viewer.service_environment("cart")["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
        f"http://127.0.0.1:{viewer.processes['collector'].port}"
    )
    assert ("trace viewer", f"http://127.0.0.1:{viewer.processes['collector'].admin_port}") in (
        viewer.urls()
    )


def test_the_callers_environment_reaches_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `CART_STORE=redis://... make demo` relies on; the caller's OTEL_* are replaced
    monkeypatch.setenv("CART_STORE", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "not-this")
    env = Boutique(tmp_path, base_port=20000, collector=False).service_environment("cart")
    assert env["CART_STORE"] == "redis://127.0.0.1:6379/0"
    assert env["OTEL_SERVICE_NAME"] == "cart"


def test_a_configured_broker_is_used_instead_of_an_own_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.7:4222")
    boutique = Boutique(tmp_path, base_port=20000, collector=False)
    assert "nats" not in boutique.processes
    assert boutique.service_environment("checkout")["NATS_URL"] == "nats://10.0.0.7:4222"
    assert ("event broker", "nats://10.0.0.7:4222") in boutique.urls()


def test_a_service_with_bad_configuration_stops_the_start_cleanly(tmp_path: Path) -> None:
    boutique = Boutique(
        tmp_path, base_port=0, collector=False, service_env={"cart": {"PORT": "seventy"}}
    )
    with pytest.raises(LaunchError, match=r"cart exited with code 2:[\s\S]*PORT"):
        boutique.start()
    for proc in boutique.processes.values():
        assert (
            proc.pid == 0
            or not psutil.pid_exists(proc.pid)
            or (psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE)
        )


def test_up_status_down(tmp_path: Path) -> None:
    up = command("up", "--base-port", "0", "--no-collector", data=tmp_path)
    assert up.returncode == 0, up.stderr
    shop = re.search(r"shop\s+(http://\S+)", up.stdout)
    assert shop and addresses(up.stdout).keys() == SERVICES.keys()
    try:
        assert httpx.get(shop.group(1) + "/_healthz", timeout=10).text == "ok"
        status = command("status", data=tmp_path)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") == len(SERVICES) + 1  # and the broker
        broker = re.search(
            r"^nats\s+\d+\s+(nats://\S+)\s+(http://\S+)\s+healthy", status.stdout, re.M
        )
        assert broker, status.stdout
        assert httpx.get(broker.group(2) + "/jsz", timeout=10).json()["config"]["store_dir"] == (
            str(tmp_path.resolve() / "nats" / "jetstream")
        )
        again = command("up", "--base-port", "0", "--no-collector", data=tmp_path)
        assert again.returncode == 1 and "already up" in again.stderr
        pids = [int(p) for p in re.findall(r"^\w+\s+(\d+)\s", status.stdout, re.MULTILINE)]
        assert len(pids) == len(SERVICES) + 1
    finally:
        down = command("down", data=tmp_path)
    assert down.returncode == 0 and down.stdout.count("stopped") == len(SERVICES) + 1
    assert down.stdout.rstrip().splitlines()[-1].startswith("stopped nats")  # the broker last
    assert not any(alive(pid) for pid in pids)
    assert not (tmp_path / "state.json").exists()
    gone = command("status", data=tmp_path)
    assert gone.returncode == 3 and "not up" in gone.stdout


def test_demo_prints_every_port_status_sees_it_and_down_stops_it(tmp_path: Path) -> None:
    args = ["demo", "--base-port", "0", "--data-dir", str(tmp_path)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "reference_services", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "demo ended early:\n" + "".join(lines)
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "frontend healthy" in output  # progress while it starts
        shop = re.search(r"shop\s+(http://\S+)", output)
        viewer = re.search(r"trace viewer\s+(http://\S+)", output)
        assert shop and viewer, output
        assert httpx.get(shop.group(1), timeout=10).status_code == 200
        assert httpx.get(viewer.group(1), timeout=10).status_code == 200
        printed = addresses(output)
        assert printed.keys() == {*SERVICES, "collector"}, output
        for name, (address, admin) in printed.items():
            if name not in ("frontend", "collector"):  # the shop serves HTTP; the viewer OTLP
                assert serving(address), name
            if name != "collector":
                assert httpx.get(admin + "/livez", timeout=10).status_code == 200, name
        children = psutil.Process(demo.pid).children()
        assert len(children) == len(SERVICES) + 2  # and the viewer, the broker

        status = command("status", data=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"demo (pid {demo.pid}) running" in status.stdout
        assert addresses(status.stdout) == printed
        assert status.stdout.count("healthy") == len(SERVICES) + 2
        again = command("up", "--base-port", "0", data=tmp_path)
        assert again.returncode == 1 and "already up" in again.stderr

        down = command("down", data=tmp_path)  # SIGTERM to the demo, as Ctrl-C
        assert down.returncode == 0, down.stderr
        assert down.stdout.count("stopped ") == len(SERVICES) + 3  # the viewer, broker, demo
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGTERM)
            demo.communicate(timeout=60)
    assert demo.returncode == 0
    assert "Stopped." in rest
    assert not any(child.is_running() and child.status() != "zombie" for child in children)
    assert not (tmp_path / "state.json").exists()
    gone = command("status", data=tmp_path)
    assert gone.returncode == 3 and "not up" in gone.stdout
