"""Every bad query parameter of /debug/pprof/ gets a 400 that names it, and changes nothing."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from tests.test_pprof_support import pprof_app, serve


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with serve(pprof_app()) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


BAD_SECONDS = [
    *("0", "301", "-1", "1.5", "abc", "", " 5", "+5", "1e2", "99999999999999999999"),
    *("\u0661", "\uff15", "5\n"),  # digits of other scripts, a trailing newline
]


@pytest.mark.parametrize("endpoint", ["profile", "heap"])
@pytest.mark.parametrize("value", BAD_SECONDS)
def test_bad_seconds(client: httpx.Client, endpoint: str, value: str) -> None:
    response = client.get(f"/debug/pprof/{endpoint}", params={"seconds": value})
    assert response.status_code == 400
    assert response.json() == {
        "error": f"seconds must be a whole number from 1 to 300, got {value!r}"
    }


@pytest.mark.parametrize(
    ("endpoint", "query", "message"),
    [
        ("profile", {"format": "svg"}, "format must be one of pprof, collapsed, speedscope, "),
        ("profile", {"format": ""}, "format must be one of"),
        ("profile", {"format": "text"}, "format must be one of"),
        ("profile", {"idle": "maybe"}, "idle must be one of exclude, include; got 'maybe'"),
        ("profile", {"mode": "sigprof"}, "mode must be one of auto, signal, thread; got 'sigprof'"),
        ("profile", {"mode": ""}, "mode must be one of auto, signal, thread; got ''"),
        ("profile", {"hz": "100"}, "unknown parameter 'hz'; this endpoint takes seconds, "),
        ("heap", {"format": "collapsed"}, "format must be one of pprof, text; got 'collapsed'"),
        ("heap", {"format": "text", "top": "0"}, "top must be a whole number from 1 to 1000"),
        ("heap", {"format": "text", "top": "1001"}, "top must be a whole number from 1 to 1000"),
        ("heap", {"format": "text", "top": "ten"}, "top must be a whole number"),
        ("heap", {"top": "5"}, "top only goes with format=text"),
        ("heap", {"frames": "0"}, "frames must be a whole number from 1 to 64, got '0'"),
        ("heap", {"frames": "65"}, "frames must be a whole number from 1 to 64, got '65'"),
        ("threads", {"format": "xml"}, "format must be one of text, json; got 'xml'"),
        ("tasks", {"format": "html"}, "format must be one of text, json; got 'html'"),
        ("tasks", {"loop": "1"}, "unknown parameter 'loop'; this endpoint takes format"),
        ("cmdline", {"x": "1"}, "unknown parameter 'x'; this endpoint takes no parameters"),
        ("", {"debug": "1"}, "unknown parameter 'debug'"),
    ],
)
def test_bad_parameters(
    client: httpx.Client, endpoint: str, query: dict[str, str], message: str
) -> None:
    response = client.get(f"/debug/pprof/{endpoint}", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"].startswith(message)


def test_long_values_are_echoed_cut_short(client: httpx.Client) -> None:
    for query in ({"format": "f" * 5000}, {"seconds": "9" * 5000}, {"x" * 5000: "1"}):
        response = client.get("/debug/pprof/profile", params=query)
        assert response.status_code == 400
        error = response.json()["error"]
        assert len(error) < 150 and "'..." in error, error


def test_signal_mode_where_the_endpoint_is_not_in_the_main_thread(client: httpx.Client) -> None:
    response = client.get("/debug/pprof/profile?seconds=1&mode=signal")  # uvicorn in a thread
    assert response.status_code == 400
    assert response.json() == {
        "error": "the signal mode is not possible: "
        "signal handlers can only be installed from the main thread"
    }
    assert client.get("/debug/pprof/profile?seconds=1&mode=thread").status_code == 200


def test_repeated_parameter(client: httpx.Client) -> None:
    response = client.get("/debug/pprof/profile?seconds=1&seconds=2")
    assert response.status_code == 400
    assert response.json() == {"error": "seconds given more than once"}


def test_bad_requests_leave_no_profiler_running(client: httpx.Client) -> None:
    for query in ("seconds=0", "format=svg", "seconds=1&idle=no", "seconds=1&mode=signal"):
        assert client.get(f"/debug/pprof/profile?{query}").status_code == 400
    for query in ("seconds=0", "format=svg", "top=3"):
        assert client.get(f"/debug/pprof/heap?{query}").status_code == 400
    assert not tracemalloc.is_tracing()
    assert not [t for t in threading.enumerate() if t.name == "clue-cpu-sampler"]
    assert client.get("/debug/pprof/profile?seconds=1&format=collapsed").status_code == 200
