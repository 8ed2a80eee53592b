"""``log.configure()``'s computed fields, buffering rule and time formats, through real
requests to a served app where a request is involved."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from clue import log
from clue.asgi import ClueMiddleware
from tests.test_asgi import serve_app


def app() -> ClueMiddleware:
    async def work(request: Request) -> PlainTextResponse:
        log.info("step one")
        log.info("step two")
        if request.query_params.get("fail"):
            log.error("payment declined")
        return PlainTextResponse("ok")

    return ClueMiddleware(Starlette(routes=[Route("/work", work)]))


class Counting:
    """A computed field counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"host": "web-1", "call": self.calls}


def configure(stream: io.StringIO, **options: Any) -> None:
    log.configure(outputs=[log.Output(stream, format="json")], debug=False, stdlib=False, **options)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    log.sync()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(autouse=True)
def default_setup_after() -> Any:
    yield
    log.configure()


async def test_computed_fields_run_only_for_written_entries() -> None:
    stream, host = io.StringIO(), Counting()
    configure(stream, fields=[host])
    async with serve_app(app()) as client:
        assert (await client.get("/work")).status_code == 200
        written = entries(stream)
        assert [e["msg"] for e in written] == ["request"]  # the steps were dropped
        assert host.calls == 1
        assert (await client.get("/work?fail=1")).status_code == 200
    failed = entries(stream)[1:]
    assert [e["msg"] for e in failed] == ["step one", "step two", "payment declined", "request"]
    assert [e["call"] for e in failed] == [2, 3, 4, 5]
    assert {e["host"] for e in failed} == {"web-1"}


def test_an_entrys_own_fields_win_over_computed_ones() -> None:
    stream = io.StringIO()
    configure(stream, fields=[lambda: {"host": "web-1", "user": "nobody"}])
    with log.context(user="ana"):
        log.info("signed in", host="override")
    [entry] = entries(stream)
    assert (entry["host"], entry["user"]) == ("override", "ana")


def test_computed_fields_are_sanitized_and_a_failing_one_loses_nothing() -> None:
    stream = io.StringIO()

    def broken() -> dict[str, Any]:
        raise RuntimeError("no user")

    configure(stream, fields=[lambda: {"token": "s3cr3t"}, broken])
    log.info("hello")
    [entry] = entries(stream)
    assert entry["msg"] == "hello"
    assert entry["token"] == "[REDACTED]"
    assert entry["field_error"].endswith("broken: RuntimeError: no user")


@pytest.mark.parametrize("bad", [[1], {"host": "x"}, ["not callable"]])
def test_bad_computed_fields_are_a_clear_error(bad: Any) -> None:
    with pytest.raises(ValueError, match="fields must be a sequence of callables"):
        log.configure(fields=bad)


async def test_a_request_the_rule_exempts_writes_its_entries_at_once() -> None:
    stream = io.StringIO()
    seen: list[dict[str, Any]] = []

    def beta_paths(fields: dict[str, Any]) -> bool:
        seen.append(fields)
        return fields.get("tenant") == "beta"

    configure(stream, disable_buffering=beta_paths)
    with log.context(tenant="beta"), log.request_scope(request_id="r-1"):
        log.info("kept at once")
    with log.context(tenant="acme"), log.request_scope(request_id="r-2"):
        log.info("buffered then dropped")
    assert [e["msg"] for e in entries(stream)] == ["kept at once"]
    assert seen[0] == {"tenant": "beta", "request_id": "r-1"}

    configure(stream, disable_buffering=lambda fields: fields["path"] == "/work")
    async with serve_app(app()) as client:
        assert (await client.get("/work")).status_code == 200
    assert [e["msg"] for e in entries(stream)][1:] == ["step one", "step two", "request"]


def test_a_failing_rule_writes_at_once_and_is_reported_once() -> None:
    stream = io.StringIO()
    configure(stream, disable_buffering=lambda fields: fields["missing"])
    for request_id in ("r-1", "r-2"):
        with log.request_scope(request_id=request_id):
            log.info("not lost")
    written = entries(stream)
    assert [e["msg"] for e in written].count("not lost") == 2
    reports = [e for e in written if e["msg"].startswith("disable_buffering raised KeyError")]
    assert len(reports) <= 1  # once per process: an earlier test may have reported it


def test_bad_rule_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="disable_buffering must be a callable"):
        log.configure(disable_buffering=True)  # type: ignore[arg-type]


TIME_PATTERNS = {
    "rfc3339_us": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z",
    "rfc3339_ms": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
    "rfc3339": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
    "epoch": r"\d{10}\.\d+",
    "epoch_ms": r"\d{13}",
    "epoch_ns": r"\d{19}",
}


@pytest.mark.parametrize("name", list(TIME_PATTERNS))
@pytest.mark.parametrize("fmt", ["json", "logfmt", "terminal"])
def test_time_formats(name: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, format=fmt)], time_format=name, stdlib=False)
    log.info("tick")
    log.sync()
    line = stream.getvalue()
    stamp = {"json": r'"time":(")?', "logfmt": r"time=", "terminal": r"^"}[fmt]
    assert re.search(stamp + TIME_PATTERNS[name] + r'(?:"|\s|,)', line), line


def to_ns(name: str, stamp: Any) -> int:
    """A written time back in nanoseconds since the epoch (to the format's resolution)."""
    if name.startswith("rfc3339"):
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
    return {"epoch": int(stamp * 1e9), "epoch_ms": stamp * 1_000_000, "epoch_ns": stamp}[name]


@pytest.mark.parametrize(
    ("name", "resolution"),
    [
        ("rfc3339_us", 1_000),
        ("rfc3339_ms", 1_000_000),
        ("rfc3339", 1_000_000_000),
        ("epoch", 1_000),  # a float of seconds: microseconds survive
        ("epoch_ms", 1_000_000),
        ("epoch_ns", 1),
    ],
)
def test_each_format_writes_the_instant_of_the_call(name: str, resolution: int) -> None:
    stream = io.StringIO()
    configure(stream, time_format=name)
    before = time.time_ns()
    log.warn("tick")
    after = time.time_ns()
    written = to_ns(name, entries(stream)[0]["time"])
    assert before - before % resolution - resolution <= written <= after


def test_a_custom_time_format_and_a_bad_name() -> None:
    stream = io.StringIO()
    configure(stream, time_format=lambda ns: f"t+{ns % 10}")
    log.info("tick")
    assert entries(stream)[0]["time"].startswith("t+")
    with pytest.raises(ValueError, match="time_format='iso' is not a time format: use one of"):
        log.configure(time_format="iso")


async def test_the_request_line_has_the_chosen_time_format() -> None:
    stream = io.StringIO()
    configure(stream, time_format="epoch_ms")
    async with serve_app(app()) as client:
        response = await client.get("/work")
    assert isinstance(response, httpx.Response) and response.status_code == 200
    [line] = entries(stream)
    assert type(line["time"]) is int
