"""The README's example service, run as written (on a free port) and called over real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

README = Path(__file__).resolve().parents[1] / "README.md"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (service,) = [b for b in blocks if "uvicorn.run(" in b]
    return service


def test_the_readme_service_buffers_info_and_writes_it_on_failure() -> None:
    port = free_port()
    code = example().replace("port=8000", f"port={port}")
    assert str(port) in code
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env["OTEL_TRACES_SAMPLER"] = "always_off"  # no request is traced: buffering applies to all
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/orders/7", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        failed = httpx.get(f"http://127.0.0.1:{port}/orders/0", timeout=5)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert (ok.status_code, ok.json()) == (200, {"id": "7"})
    assert failed.status_code == 500 and ok.headers["x-request-id"]

    entries = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    messages = [(e["msg"], e.get("order_id"), e.get("status")) for e in entries]
    assert ("looking up order", "7", None) not in messages  # success: dropped
    looked_up = messages.index(("looking up order", "0", None))  # failure: flushed first
    requests = [e for e in entries if e["msg"] == "request"]
    assert [r["status"] for r in requests] == [200, 500]
    errors = [i for i, e in enumerate(entries) if e["level"] == "error"]
    assert errors and looked_up < errors[0], out.decode() + err.decode()
