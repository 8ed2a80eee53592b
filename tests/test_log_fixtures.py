"""Fixtures shared by the clue.log tests: a captured output and a clean logging state."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from clue import log
from clue.testing import reset


class Captured:
    """Lines written to an in-memory output."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def entries(self) -> list[dict[str, Any]]:
        """The JSON entries written so far."""
        return [json.loads(line) for line in self.lines()]

    def msgs(self) -> list[str]:
        return [e["msg"] for e in self.entries()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """clue.log configured to write JSON into memory, restored afterwards."""
    out = Captured()
    log.configure(outputs=[log.Output(out.stream, "json")], debug=False, stdlib=False)
    yield out
    reset()
