"""Every example of docs/logging.md runs, and prints what the page shows.

The examples run in one fresh interpreter, one after the other, each in its
own namespace (clue.log's process-wide state is reset between them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "logging.md"
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", re.S)
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"), "<time>"),
    (re.compile(r'"trace_id":"[0-9a-f]{32}"'), '"trace_id":"<id>"'),
    (re.compile(r'"span_id":"[0-9a-f]{16}"'), '"span_id":"<id>"'),
]
SEPARATOR = "----- end of example -----"
RUNNER = f"""
import json, sys
from clue import log
for code in json.load(sys.stdin):
    exec(compile(code, "<string>", "exec"), {{"__name__": "__main__"}})
    log.set_logger_provider(None)
    log.set_debug(False)
    print({SEPARATOR!r}, flush=True)
"""


def masked(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def test_every_example_prints_what_the_page_shows() -> None:
    examples = BLOCK.findall(PAGE.read_text())
    assert len(examples) >= 8
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
    for (code, expected), output in zip(examples, outputs, strict=False):
        if expected:
            assert masked(output) == masked(expected), code
