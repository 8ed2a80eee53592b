"""The Python blocks of docs/health.md run, in order, sharing names like a notebook."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "health.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_health_doc_examples_run() -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "health_doc"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
