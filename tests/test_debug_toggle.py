"""The /debug toggle over real HTTP: state, on/off, ttl, and every bad input."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from clue import debug, log
from clue.admin import AdminServer


@pytest.fixture(autouse=True)
def debug_off() -> Iterator[None]:
    debug.disable()
    yield
    debug.disable()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with AdminServer(metrics=False, token="") as server:
        yield server.url + "/debug"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def test_state_without_parameters(url: str, http: httpx.Client) -> None:
    response = http.get(url)
    assert response.status_code == 200
    assert response.json() == {"debug-logs": "off"}
    log.set_debug(True)  # set elsewhere: the endpoint reports clue.log's state
    assert http.get(url).json() == {"debug-logs": "on"}


def test_on_and_off_change_clue_log_state(url: str, http: httpx.Client) -> None:
    buffer = io.StringIO()
    log.configure(outputs=[log.Output(buffer, format="json")])
    try:
        response = http.get(url, params={"debug-logs": "on"})
        assert response.json() == {"debug-logs": "on"}
        assert log.debug_enabled()
        response = http.post(url + "?debug-logs=off")
        assert response.json() == {"debug-logs": "off"}
        assert not log.debug_enabled()
    finally:
        log.configure()
    toggles = [json.loads(line) for line in buffer.getvalue().splitlines()]
    toggles = [e for e in toggles if e["msg"] == "debug logs toggled"]
    assert [e["debug_logs"] for e in toggles] == ["on", "off"]
    assert toggles[0]["peer"] == "127.0.0.1"


def test_ttl_turns_debug_off_by_itself(url: str, http: httpx.Client) -> None:
    response = http.get(url, params={"debug-logs": "on", "ttl": "300ms"})
    body = response.json()
    assert body["debug-logs"] == "on"
    assert 0 < body["expires_in"] <= 0.3
    assert log.debug_enabled()
    deadline = time.monotonic() + 3
    while log.debug_enabled() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not log.debug_enabled()
    assert http.get(url).json() == {"debug-logs": "off"}


def test_a_new_toggle_replaces_a_pending_ttl(url: str, http: httpx.Client) -> None:
    http.get(url, params={"debug-logs": "on", "ttl": "0.2"})
    http.get(url, params={"debug-logs": "on"})  # on for good: the pending ttl is dropped
    time.sleep(0.35)
    assert log.debug_enabled()
    assert http.get(url).json() == {"debug-logs": "on"}


BAD_QUERIES = [
    ("debug-logs=maybe", 'debug-logs must be "on" or "off", got \'maybe\''),
    ("debug-logs=ON", 'must be "on" or "off"'),
    ("debug-logs=", 'must be "on" or "off"'),
    ("debug-logs=on&debug-logs=off", "debug-logs given more than once"),
    ("debug-logs=on&ttl=abc", "ttl must be a duration"),
    ("debug-logs=on&ttl=0", "more than 0"),
    ("debug-logs=on&ttl=-5s", "ttl must be a duration"),
    ("debug-logs=on&ttl=5x", "ttl must be a duration"),
    ("debug-logs=on&ttl=1e3", "ttl must be a duration"),
    ("debug-logs=on&ttl=25h", "at most 86400 seconds"),
    ("debug-logs=on&ttl=", "ttl must be a duration"),
    ("debug-logs=on&ttl=1s&ttl=2s", "ttl given more than once"),
    ("debug-logs=off&ttl=30s", "ttl only goes with debug-logs=on"),
    ("ttl=30s", "ttl only goes with debug-logs=on"),
    ("debug_logs=on", "unknown parameter 'debug_logs'"),
    ("debug-logs=on&ttl=%D9%A1%D9%A2", "ttl must be a duration"),  # Arabic-Indic "12"
    ("debug-logs=on&ttl=" + "9" * 500, "got '" + "9" * 40 + "'..."),  # echoed, cut short
    ("debug-logs=" + "x" * 500, "got '" + "x" * 40 + "'..."),
]


@pytest.mark.parametrize(("query", "message"), BAD_QUERIES)
def test_bad_input_is_a_400_and_changes_nothing(
    url: str, http: httpx.Client, query: str, message: str
) -> None:
    for start in (False, True):
        log.set_debug(start)
        response = http.get(f"{url}?{query}")
        assert response.status_code == 400
        assert message in response.json()["error"]
        assert log.debug_enabled() is start


async def test_parameter_names_are_configurable() -> None:
    from starlette.applications import Starlette

    app = Starlette(routes=debug.routes(param="verbose", ttl_param="for", token="", pprof=False))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        response = await client.get("/debug", params={"verbose": "on", "for": "1m"})
        assert response.json()["verbose"] == "on"
        assert 59 < response.json()["expires_in"] <= 60
        assert (await client.get("/debug?debug-logs=on")).status_code == 400
        bad = await client.get("/debug", params={"verbose": "on", "for": "soon"})
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("for must be a duration such as")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("2.5", 2.5),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        (" 2m ", 120),
        ("1m30s", 90),
    ],
)
def test_parse_ttl(text: str, seconds: float) -> None:
    assert debug.parse_ttl(text) == pytest.approx(seconds)


def test_enable_rejects_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        debug.enable(0)
    with pytest.raises(ValueError, match="ttl"):
        debug.enable(debug.MAX_TTL + 1)
    assert not log.debug_enabled()


def test_python_api() -> None:
    debug.enable(ttl=60)
    state = debug.status()
    assert state.on and state.expires_in is not None and 59 < state.expires_in <= 60
    debug.disable()
    assert debug.status() == debug.DebugStatus(False, None)
