"""``log_body_on_error``: the body of a failed response in its ``http call failed`` entry,
bounded and masked, while the caller still reads all of it; against a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import clue.httpx
from clue.httpx import MAX_ERROR_BODY
from tests.conftest import Lines
from tests.test_middleware_docs import PAGE, serve_asgi
from tests.test_middleware_docs import run as run_example

BIG = {"items": ["x" * 100] * (MAX_ERROR_BODY // 50), "password": "hunter2"}


async def failing(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind in ("json", "charges"):
        return JSONResponse({"error": "declined", "password": "hunter2"}, status_code=502)
    if kind == "big-json":
        return JSONResponse(BIG, status_code=500)
    if kind == "big-text":
        return PlainTextResponse("y" * (3 * MAX_ERROR_BODY), status_code=503)
    if kind == "binary":
        return Response(b"\x00\x01\x02", status_code=500, media_type="application/octet-stream")
    if kind == "gzip":  # compressed by the middleware: over its minimum size
        return JSONResponse({"error": "z" * 600, "token": "t-1"}, status_code=500)
    return PlainTextResponse("fine")


APP = Starlette(
    routes=[Route("/{kind}", failing, methods=["GET", "POST"])],
    middleware=[Middleware(GZipMiddleware, minimum_size=500)],
)


@asynccontextmanager
async def server() -> AsyncIterator[str]:
    async with serve_asgi(APP) as url:
        yield url


async def test_a_failed_json_body_is_logged_masked(lines: Lines) -> None:
    async with server() as url, clue.httpx.AsyncClient(log_body_on_error=True) as client:
        response = await client.get(f"{url}/json")
        assert response.json() == {"error": "declined", "password": "hunter2"}  # all of it
        assert (await client.get(f"{url}/ok")).text == "fine"
    [failed] = lines.entries("http call failed")
    assert failed["status"] == 502
    assert json.loads(failed["body"]) == {"error": "declined", "password": "[REDACTED]"}
    assert "hunter2" not in lines.text
    assert "body" not in lines.entries("http call")[0]


async def test_bounded_bodies_and_the_caller_reads_everything(lines: Lines) -> None:
    async with server() as url, clue.httpx.AsyncClient(log_body_on_error=True) as client:
        assert (await client.get(f"{url}/big-json")).json() == BIG
        text = await client.get(f"{url}/big-text")
        assert text.text == "y" * (3 * MAX_ERROR_BODY)
        async with client.stream("GET", f"{url}/big-text") as streamed:
            assert len(b"".join([c async for c in streamed.aiter_bytes()])) == 3 * MAX_ERROR_BODY
        assert (await client.get(f"{url}/binary")).content == b"\x00\x01\x02"
    big_json, big_text, streamed_text, binary = lines.entries("http call failed")
    assert big_json["body_skipped"] == f"JSON body over {MAX_ERROR_BODY} bytes"
    assert "hunter2" not in lines.text
    for entry in (big_text, streamed_text):
        assert entry["body_truncated"] is True
        assert entry["body"].startswith("yyy") and "truncated" in entry["body"]  # the log's cut
    assert binary["body_skipped"] == "binary body (application/octet-stream)"


async def test_a_compressed_body_is_inflated_for_the_log(lines: Lines) -> None:
    async with server() as url, clue.httpx.AsyncClient(log_body_on_error=True) as client:
        response = await client.get(f"{url}/gzip")
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["token"] == "t-1"
    [failed] = lines.entries("http call failed")
    assert json.loads(failed["body"]) == {"error": "z" * 600, "token": "[REDACTED]"}


async def test_the_sync_client_and_the_default_off(lines: Lines) -> None:
    async with server() as url:

        def calls() -> None:
            with clue.httpx.Client(log_body_on_error=True) as client:
                assert client.get(f"{url}/json").json()["error"] == "declined"
                with client.stream("GET", f"{url}/big-text") as streamed:
                    assert len(streamed.read()) == 3 * MAX_ERROR_BODY
            with clue.httpx.Client() as client:
                assert client.get(f"{url}/json").status_code == 502

        await asyncio.to_thread(calls)
    with_body, streamed, without = lines.entries("http call failed")
    assert json.loads(with_body["body"])["password"] == "[REDACTED]"
    assert streamed["body_truncated"] is True
    assert "body" not in without and "body_skipped" not in without


async def test_the_documented_example(lines: Lines) -> None:
    charge = run_example("error_body", PAGE)["charge"]
    async with server() as url:
        assert await charge(url, {"order_id": "o-1"}) == 502
    [failed] = lines.entries("http call failed")
    assert failed["body"] == '{"error":"declined","password":"[REDACTED]"}'
