"""The examples of docs/telemetry.md, run as written."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import clue
from tests.conftest import free_port
from tests.otlp_receiver import OTLPReceiver
from tests.test_middleware_docs import MIDDLEWARE_EXAMPLES, install_clue_globals

PAGE = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"
EXAMPLES = dict(
    re.findall(r"<!-- example: (\w+) -->\n```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "CLUE_")):
            monkeypatch.delenv(key)
    install_clue_globals()
    yield
    clue.shutdown()


def run(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs_telemetry_{name}"}
    exec(compile(EXAMPLES[name], f"docs/telemetry.md:{name}", "exec"), namespace)
    return namespace


def test_the_page_has_the_examples_this_test_runs() -> None:
    runs_here = {"quickstart", "objects", "sampler", "stats", "prometheus"}
    assert set(EXAMPLES) == runs_here | MIDDLEWARE_EXAMPLES  # those: test_middleware_docs.py


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


@pytest.mark.parametrize("name", ["objects", "sampler", "stats"])
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
