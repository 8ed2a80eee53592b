"""The examples of docs/telemetry.md, run as written."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import free_port
from tests.otlp_receiver import OTLPReceiver
from tests.test_middleware_docs import (  # clean_env: the same autouse fixture here
    clean_env,  # noqa: F401
    examples,
)
from tests.test_middleware_docs import run as run_example

PAGE = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"


def run(name: str) -> dict[str, Any]:
    return run_example(name, PAGE)


def test_the_page_has_the_examples_this_test_runs() -> None:
    runs_here = {
        "quickstart",
        "objects",
        "sampler",
        "stats",
        "prometheus",
        "bound",
        "instrument",
    }
    assert set(examples(PAGE)) == runs_here


def test_quickstart_exports_the_span_and_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = OTLPReceiver()
    receiver.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
        run("quickstart")
        [span] = receiver.wait_for(lambda r: r.spans())
        [record] = receiver.wait_for(lambda r: r.logs())
        assert (span.name, span.service_name, span.resource["service.version"]) == (
            "place-order",
            "checkout",
            "1.2.0",
        )
        assert (record.body, record.trace_id) == ("payment declined", span.trace_id)
    finally:
        receiver.stop()


@pytest.mark.parametrize("name", ["objects", "sampler", "stats", "bound"])
def test_self_checking_examples_run(name: str) -> None:
    run(name)


def test_prometheus_example_serves_the_counter() -> None:
    admin = run("prometheus")["admin"]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(admin, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert re.search(
            r'^catalog_searches_total\{otel_scope_name="catalog".*\} 1\.0$', text, re.M
        )
    finally:
        server.should_exit = True
        thread.join(10)


def test_instrument_records_the_chosen_arguments_masked() -> None:
    namespace = run("instrument")
    assert dict(namespace["attributes"]) == {
        "code.function": "charge",
        "code.namespace": "docs_telemetry_instrument",
        "order_id": "o-1",
        "card": '{"holder": "Ana", "credit_card_number": "[REDACTED]"}',
    }
    assert namespace["spans"].names() == ["charge", "read rows"]
