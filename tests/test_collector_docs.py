"""The Python examples of docs/collector.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "collector.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)


def test_the_page_has_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code: str) -> None:
    exec(compile(code, str(PAGE), "exec"), {"__name__": "collector_docs_example"})


def test_every_flag_is_documented() -> None:
    from clue.collector.config import argument_parser

    text = PAGE.read_text()
    flags = [o for a in argument_parser()._actions for o in a.option_strings if o.startswith("--")]
    missing = [f for f in flags if f != "--help" and f"`{f}`" not in text]
    assert not missing
