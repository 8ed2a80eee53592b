"""docs/debug.md runs: its curl sessions against real admin servers, its Python blocks.

The admin server's own page, docs/admin.md, runs in tests/test_admin_docs.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clue import debug
from clue.admin import AdminServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "debug.md"


def ours() -> str:
    """The page without its "## Profiling" section (tested with the profiler)."""
    sections = re.split(r"^(?=## )", DOC.read_text(), flags=re.M)
    return "".join(s for s in sections if not s.startswith("## Profiling"))


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```$", ours(), flags=re.S | re.M)


def sessions() -> list[tuple[str, str]]:
    """(command, expected output) pairs of the console blocks."""
    pairs = []
    for block in blocks("console"):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                pairs.append((line[2:], lines[i + 1]))
    return pairs


def same(shown: Any, got: Any) -> bool:
    """Equal, except that seconds left need only be close and the uptime (the test
    process's, however long the suite has run) only a whole number of seconds."""
    if isinstance(shown, dict) and isinstance(got, dict):
        if shown.keys() != got.keys():
            return False
        for key in shown:
            if key == "expires_in":
                if not abs(shown[key] - got[key]) < 1:
                    return False
            elif key == "uptime":
                if not (isinstance(got[key], int) and got[key] >= 0):
                    return False
            elif not same(shown[key], got[key]):
                return False
        return True
    return bool(shown == got)


def split_code(text: str) -> tuple[Any, str]:
    match = re.fullmatch(r"(.*?)(?: (\d{3}))?", text.strip(), flags=re.S)
    assert match is not None
    return json.loads(match.group(1)), match.group(2) or ""


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Port 8081 of the page: an open admin server; 8082: one with a token."""
    open_server = AdminServer(metrics=False, token="")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLUE_ADMIN_TOKEN", "change-me")
        guarded = AdminServer(metrics=False, version="1.4.2")
    with open_server, guarded:
        yield {
            "localhost:8081": f"127.0.0.1:{open_server.port}",
            "localhost:8082": f"127.0.0.1:{guarded.port}",
        }
    debug.disable()


def test_the_page_has_sessions() -> None:
    assert len(sessions()) >= 15


@pytest.mark.parametrize(("command", "shown"), sessions())
def test_curl_session(servers: dict[str, str], command: str, shown: str) -> None:
    for documented, real in servers.items():
        command = command.replace(documented, real)
    output = subprocess.run(
        shlex.split(command), capture_output=True, text=True, check=True, timeout=10
    ).stdout
    shown_body, shown_code = split_code(shown)
    got_body, got_code = split_code(output)
    assert shown_code == got_code
    assert same(shown_body, got_body), (shown_body, got_body)


def test_python_blocks_run() -> None:
    namespace: dict[str, object] = {"__name__": "debug_doc"}
    found = blocks("python")
    assert len(found) >= 1
    try:
        for number, block in enumerate(found, 1):
            exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    finally:
        debug.disable()
