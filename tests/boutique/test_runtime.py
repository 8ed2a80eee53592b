"""The shared runtime: config helpers, fault switches, and services as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from reference_services.cart import service as cart
from reference_services.cart.store import SQLCartStore
from reference_services.checkout import service as checkout
from reference_services.common.config import (
    ConfigError,
    env_addr,
    env_host,
    env_int,
    env_port,
    env_str,
)
from reference_services.common.database import SQLite
from reference_services.common.faults import FaultError, Faults, Flag, Millis, Rate
from reference_services.common.runtime import GrpcService
from reference_services.currency import service as currency
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.recommendation import service as recommendation
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_DOWNSTREAM = ("CART", "PRODUCT_CATALOG", "CURRENCY", "SHIPPING", "PAYMENT", "EMAIL")


def test_env_helpers() -> None:
    env = {"A": " 8080 ", "B": "x", "C": "localhost:7070", "D": "", "E": "70000", "F": "h:p"}
    assert env_int("A", env=env) == 8080 and env_port("A", env=env) == 8080
    assert env_str("B", env=env) == "x" and env_str("D", "dflt", env=env) == "dflt"
    assert env_addr("C", env=env) == "localhost:7070"
    for call, message in [
        (lambda: env_str("MISSING", env=env), "MISSING is not set"),
        (lambda: env_str("D", env=env), "D is not set"),
        (lambda: env_int("B", env=env), "B='x' is not an integer"),
        (lambda: env_port("E", env=env), "E=70000 is above the maximum 65535"),
        (lambda: env_addr("F", env=env), "F='h:p' is not a host:port address"),
        (lambda: env_addr("B", env=env), "B='x' is not a host:port address"),
    ]:
        with pytest.raises(ConfigError) as caught:
            call()
        assert str(caught.value) == message


def test_fault_switches_validate_everything_before_changing_anything() -> None:
    faults = Faults(Rate("rate", "r"), Millis("delay", "d"), Flag("bug", "b"))
    assert faults.describe()["rate"] == {
        "value": 0.0,
        "accepts": "a number between 0 and 1",
        "doc": "r",
    }
    assert faults.set({"rate": "0.25", "delay": "40", "bug": "on"}) == {
        "rate": 0.25,
        "delay": 40.0,
        "bug": True,
    }
    for bad in (
        {"rate": "1.5"},
        {"rate": "nan"},
        {"delay": "-1"},
        {"delay": "soon"},
        {"bug": "yes please"},
        {"other": "1"},
        {"rate": "0.5", "bug": "sometimes"},
    ):
        with pytest.raises(FaultError):
            faults.set(bad)
    assert (faults.rate("rate"), faults.value("delay"), faults.on("bug")) == (0.25, 40.0, True)
    faults.set({"rate": "1"})
    assert faults.roll("rate")
    faults.reset()
    assert not faults.roll("rate") and not faults.on("bug")


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", **extra)
    env.update(OTEL_LOGS_EXPORTER="none", CLUE_LOG_FORMAT="json")
    return env


def start(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", f"reference_services.{name}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def wait_ready(proc: subprocess.Popen[str], admin: str) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if (await client.get(f"{admin}/livez")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("service did not start")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=20)
    return proc.returncode, output


async def test_cart_process_health_sigterm_and_durable_cart(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    env = service_env(PORT=str(port), ADMIN_PORT=str(admin_port), DATA_DIR=str(tmp_path))
    item = pb.CartItem(product_id="OLJCESPC7Z", quantity=2)
    proc = start("cart", env)
    try:
        await wait_ready(proc, admin)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.CartServiceStub(channel)
            await stub.AddItem(pb.AddItemRequest(user_id="sam", item=item))
            reply = await stub.GetCart(pb.GetCartRequest(user_id="sam"))
            assert [(i.product_id, i.quantity) for i in reply.items] == [("OLJCESPC7Z", 2)]
        async with httpx.AsyncClient() as client:
            healthz = await client.get(f"{admin}/healthz")
            assert healthz.status_code == 200
            assert healthz.json()["status"] == {"cart-store": "OK"}
            faults = (await client.get(f"{admin}/faults")).json()
            assert faults["store_failure_rate"]["value"] == 0
            metrics = (await client.get(f"{admin}/metrics")).text
            samples = {
                sample.name: sample.value
                for family in text_string_to_metric_families(metrics)
                for sample in family.samples
            }
            assert samples["boutique_cart_items_added_total"] == 2  # one AddItem of 2
            assert samples["boutique_cart_size_count"] == 1  # one GetCart
            assert samples["boutique_cart_size_sum"] == 2
    finally:
        code, output = stop(proc)
    assert code == 0, output
    assert "cart stopped" in output
    # the cart was committed to $DATA_DIR/cart.db: a new store object reads it back
    store = SQLCartStore(SQLite(tmp_path / "cart.db"))
    assert await store.get("sam") == [("OLJCESPC7Z", 2)]
    await store.close()


async def test_frontend_process_stops_on_sigterm_with_exit_0() -> None:
    port, admin_port = free_port(), free_port()
    nowhere = {  # the shop starts without its services; its probe and admin port still answer
        var: "127.0.0.1:1"
        for var in (
            "PRODUCT_CATALOG_SERVICE_ADDR",
            "CURRENCY_SERVICE_ADDR",
            "CART_SERVICE_ADDR",
            "RECOMMENDATION_SERVICE_ADDR",
            "SHIPPING_SERVICE_ADDR",
            "CHECKOUT_SERVICE_ADDR",
            "AD_SERVICE_ADDR",
            "USER_SERVICE_ADDR",
        )
    }
    env = service_env(PORT=str(port), ADMIN_PORT=str(admin_port), HOST="127.0.0.1", **nowhere)
    proc = start("frontend", env)
    try:
        await wait_ready(proc, f"http://127.0.0.1:{admin_port}")
        async with httpx.AsyncClient() as client:
            probe = await client.get(f"http://127.0.0.1:{port}/_healthz")
            assert probe.text == "ok"
    finally:
        code, output = stop(proc)
    assert code == 0, output  # not killed by the signal uvicorn raises again
    assert "frontend stopped" in output


async def test_in_flight_call_finishes_after_sigterm() -> None:
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    proc = start("productcatalog", service_env(PORT=str(port), ADMIN_PORT=str(admin_port)))
    try:
        await wait_ready(proc, admin)
        async with httpx.AsyncClient() as client:
            await client.post(f"{admin}/faults", params={"extra_latency_ms": "700"})
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ProductCatalogServiceStub(channel)
            call = asyncio.ensure_future(stub.GetProduct(pb.GetProductRequest(id="6E92ZMYYFZ")))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            product = await call
        assert product.name == "Mug"
    finally:
        code, output = stop(proc)
    assert code == 0, output


def test_bad_configuration_exits_2_with_one_line() -> None:
    env = {k: v for k, v in service_env().items() if not k.endswith(("PORT", "_ADDR", "STORE"))}
    proc = subprocess.run(
        [sys.executable, "-m", "reference_services.checkout"],
        cwd=ROOT,
        env={**env, "PORT": "5050", "ADMIN_PORT": "15050"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == "checkout: configuration error: CART_SERVICE_ADDR is not set\n"


@pytest.mark.parametrize(
    ("main", "env", "message"),
    [
        (cart.ENTRY.run, {"ADMIN_PORT": "9"}, "cart: configuration error: PORT is not set"),
        (
            currency.ENTRY.run,
            {"PORT": "abc", "ADMIN_PORT": "9"},
            "currency: configuration error: PORT='abc' is not an integer",
        ),
        (
            cart.ENTRY.run,
            {"PORT": "1", "ADMIN_PORT": "2", "CART_STORE": "mysql://db/carts"},
            "cart: configuration error: CART_STORE must be a URL starting with one of: "
            "sqlite:///..., postgresql://..., postgres://..., redis://..., rediss://...",
        ),
        (
            recommendation.ENTRY.run,
            {"PORT": "1", "ADMIN_PORT": "2", "PRODUCT_CATALOG_SERVICE_ADDR": "catalog"},
            "recommendation: configuration error: "
            "PRODUCT_CATALOG_SERVICE_ADDR='catalog' is not a host:port address",
        ),
        (
            checkout.ENTRY.run,
            {"PORT": "1", "ADMIN_PORT": "2", "ORDER_STORE": "redis://h:1/0"}
            | {f"{n}_SERVICE_ADDR": "h:1" for n in CHECKOUT_DOWNSTREAM},
            "checkout: configuration error: ORDER_STORE must be a URL starting with one of: "
            "sqlite:///..., postgresql://..., postgres://...",
        ),
    ],
)
def test_every_service_main_refuses_bad_configuration(
    main: Callable[[], int],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("PORT", "ADMIN_PORT", "CART_STORE", "ORDER_STORE", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main() == 2
    assert capsys.readouterr().err == message + "\n"


def test_the_embedding_example_of_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    page = (ROOT / "docs" / "boutique.md").read_text()
    block = page.split("<!-- example: embed-currency -->\n```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "docs/boutique.md", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out.splitlines()[-1] == "EUR 17 682441398"


async def test_health_watch_reports_not_serving_when_the_service_stops() -> None:
    service = GrpcService("currency", await currency.build(), host="127.0.0.1")
    await service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            stopping = asyncio.create_task(service.stop())
            second = await watch.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            await stopping
    finally:
        await service.stop()


def test_env_host_reads_an_address_to_listen_on() -> None:
    env = {"A": " 0.0.0.0 ", "B": "::", "C": "cart-1.boutique.svc", "D": "fe80::1%eth0"}
    assert [env_host(name, env=env) for name in env] == [
        "0.0.0.0",
        "::",
        "cart-1.boutique.svc",
        "fe80::1%eth0",
    ]
    assert env_host("MISSING", "127.0.0.1", env=env) == "127.0.0.1"
    for bad in ("[::1]", "0.0.0.0:80", "a host", "-cart", "x" * 300, "x." * 130):
        with pytest.raises(ConfigError, match="is not an IP address or host name") as caught:
            env_host("HOST", env={"HOST": bad})
        assert len(str(caught.value)) < 100
