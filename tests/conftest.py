"""Shared pytest fixtures."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from clue import log


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines:
    """clue.log configured to write JSON into memory; ``entries()`` parses them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        log.configure(outputs=[log.Output(self.stream, format="json")], debug=False)

    @property
    def text(self) -> str:
        """Everything logged so far (the entries waiting for the write delay written first)."""
        log.sync()
        return self.stream.getvalue()

    def entries(self, msg: str | None = None) -> list[dict[str, Any]]:
        """Parsed entries, only those with message ``msg`` if given."""
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [e for e in parsed if msg is None or e.get("msg") == msg]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """clue.log captured as JSON lines for the test; the default set-up again after it."""
    captured = Lines()
    yield captured
    log.set_debug(False)
    log.configure()
