"""/healthz, /readyz and /livez over real HTTP from uvicorn, in JSON and XML."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from xml.etree import ElementTree

import httpx
import pytest
import uvicorn

from clue import health
from clue.testing import CapturedLogs
from tests.conftest import free_port

UP = {"cache": True}


def cache_ping() -> None:
    if not UP["cache"]:
        raise ConnectionError("secret-password@10.1.2.3 refused the connection")


async def slow_database() -> None:
    await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """health.app() served by uvicorn on a real port, from a thread."""
    checker = health.Checker(
        health.pinger("database", slow_database), health.pinger("cache", cache_ping), timeout=5
    )
    port = free_port()
    config = uvicorn.Config(
        health.app(checker, version="1.2.3"), host="127.0.0.1", port=port, log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def cache_down() -> Iterator[None]:
    UP["cache"] = False
    yield
    UP["cache"] = True


def test_healthz_json_all_ok(base_url: str) -> None:
    response = httpx.get(base_url + "/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == {"database": "OK", "cache": "OK"}
    assert body["version"] == "1.2.3"
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0


def test_healthz_503_when_a_dependency_fails_without_leaking_why(
    base_url: str, cache_down: None, clue_logs: CapturedLogs
) -> None:
    for path in ("/healthz", "/readyz"):
        response = httpx.get(base_url + path)
        assert response.status_code == 503
        assert response.json()["status"] == {"database": "OK", "cache": "NOT OK"}
        assert "secret" not in response.text and "refused" not in response.text
    errors = clue_logs.where(level="error")
    assert [e["dependency"] for e in errors] == ["cache", "cache"]
    assert "refused the connection" in errors[0]["error"]


def test_livez_ignores_dependencies(base_url: str, cache_down: None) -> None:
    response = httpx.get(base_url + "/livez")
    assert response.status_code == 200
    assert response.json()["status"] == {}


def test_healthz_xml(base_url: str, cache_down: None) -> None:
    response = httpx.get(base_url + "/healthz", headers={"Accept": "application/xml"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/xml"
    root = ElementTree.fromstring(response.content)
    assert root.tag == "health"
    status = {d.get("name"): d.text for d in root.iterfind("status/dependency")}
    assert status == {"database": "OK", "cache": "NOT OK"}
    assert root.findtext("version") == "1.2.3"
    assert int(root.findtext("uptime") or "-1") >= 0


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("", "json"),
        ("*/*", "json"),
        ("text/xml", "xml"),
        ("application/json, application/xml", "json"),
        ("application/xml, application/json", "xml"),
        ("application/json;q=0.5, application/xml;q=0.9", "xml"),
        ("application/xml;q=0, application/json;q=0.1", "json"),
        ("application/xml;q=oops", "json"),
        ("text/html", "json"),
    ],
)
def test_accept_negotiation(base_url: str, accept: str, kind: str) -> None:
    response = httpx.get(base_url + "/livez", headers={"Accept": accept})
    assert response.headers["content-type"] == f"application/{kind}"


def test_other_methods_are_refused(base_url: str) -> None:
    assert httpx.post(base_url + "/healthz").status_code == 405
    assert httpx.head(base_url + "/healthz").status_code == 200


async def test_routes_mount_in_any_starlette_app_and_escape_names() -> None:
    checker = health.Checker(health.pinger("a<&>b", lambda: None))
    transport = httpx.ASGITransport(app=health.app(checker, version="v&1"))
    async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
        response = await client.get("/healthz", headers={"Accept": "application/xml"})
    root = ElementTree.fromstring(response.content)
    assert root.find("status/dependency").get("name") == "a<&>b"  # type: ignore[union-attr]
    assert root.findtext("version") == "v&1"
