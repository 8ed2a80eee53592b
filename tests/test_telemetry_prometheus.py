"""Prometheus exposition of the OpenTelemetry metrics through metrics_app() on uvicorn."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

import clue
from clue import telemetry
from tests.conftest import free_port


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "CLUE_")):
            monkeypatch.delenv(key)
    yield
    clue.shutdown()


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(telemetry.metrics_app(), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/metrics"
    server.should_exit = True
    thread.join(10)


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The (labels, value) of every sample of ``name`` in a text exposition."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:{{(.*)}})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            found.append((labels, float(match.group(2))))
    return found


def test_a_counter_recorded_through_the_otel_api_is_served(metrics_url: str) -> None:
    clue.configure("shop", prometheus=True)
    orders = telemetry.meter("shop").create_counter("shop.orders", description="orders placed")
    orders.add(3, {"result": "ok"})
    response = httpx.get(metrics_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    [(labels, value)] = _samples(response.text, "shop_orders_total")
    assert (labels["result"], labels["otel_scope_name"], value) == ("ok", "shop", 3.0)
    assert "# HELP shop_orders_total orders placed" in response.text
    assert 'service_name="shop"' in response.text  # target_info carries the resource


def test_reconfiguring_serves_each_metric_once(metrics_url: str) -> None:
    clue.configure("shop", prometheus=True)
    latency = telemetry.meter("shop").create_histogram("shop.latency", unit="s")
    clue.configure("shop", prometheus=True)
    latency.record(0.2)
    text = httpx.get(metrics_url).text
    assert text.count("# TYPE shop_latency_seconds histogram") == 1
    assert [v for _, v in _samples(text, "shop_latency_seconds_count")] == [1.0]


def test_the_env_can_ask_for_prometheus(metrics_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    clue.configure("env-shop")
    telemetry.meter("shop").create_up_down_counter("shop.carts.open").add(2)
    assert [v for _, v in _samples(httpx.get(metrics_url).text, "shop_carts_open")] == [2.0]


def test_without_prometheus_no_otel_metric_is_served(metrics_url: str) -> None:
    clue.configure("quiet-shop")
    telemetry.meter("shop").create_counter("shop.hidden").add(1)
    text = httpx.get(metrics_url).text
    assert _samples(text, "shop_hidden") == []
    assert "python_info" in text  # prometheus-client's own collectors still answer
