"""What the shop shows a visitor when a service fails, and what it keeps for the operator.

The nine services and the shop run in this process on loopback; spans go to an
in-memory exporter, logs to JSON lines in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.trace import StatusCode

from tests.boutique.conftest import Boutique, Telemetry
from tests.boutique.shop import MUG
from tests.conftest import Lines

pytestmark = pytest.mark.timeout(60)
INTERNALS = ("UNAVAILABLE", "127.0.0.1", "Connection refused", "failed to connect", "ipv4:")


@pytest.fixture
async def visitor(otel: Telemetry, lines: Lines, shop: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shop, timeout=20.0) as client:
        yield client


async def test_a_503_page_shows_no_internals_and_the_log_and_trace_keep_the_chain(
    boutique: Boutique, otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient
) -> None:
    await boutique["currency"].stop()
    page = await visitor.get("/")
    assert page.status_code == 503
    request_id = page.headers["x-request-id"]
    assert f"<code>{request_id}</code>" in page.text
    assert "Please try again in a moment." in page.text
    for internal in INTERNALS:
        assert internal not in page.text, internal
    # the log: the whole chain, with the request id the visitor can quote
    (failed,) = [e for e in lines.entries("page failed") if e["request_id"] == request_id]
    assert failed["status"] == 503 and failed["level"] == "error"
    assert "UNAVAILABLE: failed to connect" in failed["chain"][1]
    # the trace: the page's span is an error with the chain as an event
    (span,) = [s for s in otel.finished() if s.name == "GET /"]
    assert span.status.status_code is StatusCode.ERROR
    (event,) = [e for e in span.events if e.name == "shop error"]
    attributes = dict(event.attributes or {})
    assert attributes["http.response.status_code"] == 503
    chain = attributes["shop.error.chain"]
    assert isinstance(chain, tuple) and "UNAVAILABLE" in chain[1]


async def test_static_files_are_served_untraced_and_pages_are_traced_by_route(
    otel: Telemetry, lines: Lines, visitor: httpx.AsyncClient
) -> None:
    assert (await visitor.get("/static/style.css")).status_code == 200
    assert (await visitor.get("/static/img/products/mug.svg")).status_code == 200
    assert (await visitor.get(f"/product/{MUG}")).status_code == 200
    names = {span.name for span in otel.finished() if span.kind.name == "SERVER"}
    assert "GET /product/{id}" in names
    assert not [name for name in names if "static" in name]
    http_lines = [e for e in lines.entries("request") if "route" in e]
    assert [e["path"] for e in http_lines] == [f"/product/{MUG}"]
