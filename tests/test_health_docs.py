"""The Python blocks of docs/health.md run, in order, sharing names like a notebook; the log
lines the page shows are among those they write."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "health.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def shown_log_lines(text: str) -> list[dict[str, object]]:
    blocks = re.findall(r"^```json\n(.*?)^```$", text, flags=re.S | re.M)
    entries = [json.loads(line) for block in blocks for line in block.splitlines()]
    return [entry for entry in entries if "msg" in entry]


def on_the_sessions_servers(text: str, postgres_url: str, redis_url: str) -> str:
    """The page with its addresses (the default local services) moved to the session's."""
    postgres, redis = urlsplit(postgres_url), urlsplit(redis_url)
    return (
        text.replace(
            "host=127.0.0.1 dbname=", f"host={postgres.hostname} port={postgres.port} dbname="
        )
        .replace("port 5432 failed", f"port {postgres.port} failed")
        .replace('host="127.0.0.1", port=6379', f'host="{redis.hostname}", port={redis.port}')
    )


def test_health_doc_examples_run(
    capsys: pytest.CaptureFixture[str], postgres_url: str, redis_url: str
) -> None:
    text = on_the_sessions_servers(DOC.read_text(), postgres_url, redis_url)
    blocks = python_blocks(text)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "health_doc"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    written = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith('{"'):  # a JSON log line, not a printed dict
            entry = json.loads(line)
            entry.pop("time", None)
            written.append(entry)
    shown = shown_log_lines(text)
    assert len(shown) >= 2
    for entry in shown:
        assert entry in written, entry
