"""docs/admin.md runs: its Python blocks in order, then what they build is called over ASGI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clue import debug

DOC = Path(__file__).resolve().parent.parent / "docs" / "admin.md"
STRANGER = ("203.0.113.7", 40000)  # not loopback: the guard's business


@pytest.fixture(scope="module")
def page() -> Iterator[dict[str, Any]]:
    """The page's blocks run in one namespace, as a reader would paste them."""
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 4
    namespace: dict[str, Any] = {"__name__": "admin_doc"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
            if number == 1:
                namespace["first_admin"] = namespace["admin"]  # later blocks rebind the name
        yield namespace
    finally:
        debug.disable()


async def aget(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=STRANGER)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        return await client.get(path)


async def test_opened_metrics_are_open_to_another_host_and_debug_is_not(
    page: dict[str, Any],
) -> None:
    admin = page["first_admin"]  # host="0.0.0.0", /metrics added to the open routes
    assert (await aget(admin.app, "/metrics")).status_code == 200
    assert (await aget(admin.app, "/livez")).status_code == 200
    assert (await aget(admin.app, "/debug")).status_code == 403


async def test_mounted_admin_app_keeps_its_guard(page: dict[str, Any]) -> None:
    shop = page["shop"]
    assert (await aget(shop, "/livez")).status_code == 200
    for path in ("/debug", "/debug/pprof/", "/no-such-path"):
        assert (await aget(shop, path)).status_code == 403, path


def test_an_admin_server_path_must_start_with_a_slash(page: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="metrics"):
        page["AdminServer"](open_routes=["metrics"])
