"""Shared pytest fixtures."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from clue import log
from tests import servers
from tests.servers import free_port as free_port  # the tests import it from here


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


@contextmanager
def server(kind: servers.Kind) -> Iterator[str]:
    """The URL of a ``kind`` server for the session; the run stops at once if there is none."""
    try:
        with servers.serving(kind) as url:
            yield url
    except servers.ServerUnavailable as error:
        pytest.exit(str(error), returncode=1)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL (trust auth, database ``test``): the configured one or a throwaway."""
    with server(servers.POSTGRES) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL (database 9): the configured one or a throwaway."""
    with server(servers.REDIS) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS URL with JetStream: the configured one or a throwaway."""
    with server(servers.NATS) as url:
        yield url
