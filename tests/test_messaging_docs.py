"""The Python blocks of docs/messaging.md run, in order, in one fresh interpreter sharing
names like a notebook, against the session's NATS server; each prints what the text block
after it shows (times, ids and tracebacks masked)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.servers import answers
from tests.test_rabbitmq import URL as RABBITMQ_URL

PAGE = Path(__file__).resolve().parent.parent / "docs" / "messaging.md"
BLOCK = re.compile(r"^```python\n(.*?)^```\n(?:\s*```text\n(.*?)^```)?", re.S | re.M)
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"), "<time>"),
    (re.compile(r'"trace_id":"[0-9a-f]{32}"'), '"trace_id":"<id>"'),
    (re.compile(r'"span_id":"[0-9a-f]{16}"'), '"span_id":"<id>"'),
    (re.compile(r'"traceback":"(?:[^"\\]|\\.)*"'), '"traceback":"<traceback>"'),
]
SEPARATOR = "----- end of example -----"
RUNNER = f"""
import json, sys
namespace = {{"__name__": "__main__"}}
for code in json.load(sys.stdin):
    exec(compile(code, "<docs/messaging.md>", "exec"), namespace)
    print({SEPARATOR!r}, flush=True)
"""


def masked(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def on_the_sessions_server(text: str, nats_url: str) -> str:
    """The page with the session's NATS and RabbitMQ URLs, and stream, subjects and queue of
    this run only."""
    suffix = uuid.uuid4().hex[:8]
    return (
        text.replace("nats://127.0.0.1:4222", nats_url)
        .replace("amqp://guest:guest@127.0.0.1:5672/", RABBITMQ_URL)
        .replace("DOCS_ORDERS", f"DOCS_ORDERS_{suffix}")
        .replace("docs.orders.", f"docs.orders{suffix}.")
        .replace("docs.outbox.", f"docs.outbox{suffix}.")
        .replace("docs-confirmations", f"docs-confirmations-{suffix}")
    )


def test_every_example_prints_what_the_page_shows(nats_url: str) -> None:
    examples = BLOCK.findall(on_the_sessions_server(PAGE.read_text(), nats_url))
    assert len(examples) >= 4 and all(shown for _, shown in examples)
    rabbitmq = answers(RABBITMQ_URL)
    if not rabbitmq:  # the other examples do not use what the RabbitMQ one defines
        examples = [(code, shown) for code, shown in examples if "aio_pika" not in code]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUE_", "OTEL_"))}
    run = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([code for code, _ in examples]),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    outputs = run.stdout.split(SEPARATOR + "\n")
    assert len(outputs) == len(examples) + 1 and outputs[-1] == ""
    for (code, shown), output in zip(examples, outputs, strict=False):
        if shown:
            assert masked(output) == masked(shown), code
    if not rabbitmq:
        pytest.skip(f"the RabbitMQ example did not run: no RabbitMQ at {RABBITMQ_URL}")
