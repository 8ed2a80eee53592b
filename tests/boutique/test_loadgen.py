"""The load generator for real: ``python -m reference_services.loadgen`` against the shop.

The upstream-style mix runs against the services and the web shop in this
process on loopback (the conftest fixtures); the accounts mix against the
launched boutique (every service a process, as ``make demo``: accounts,
orders and cancellation need them all). The load generator is a child
process, so the event loop keeps serving while it runs. A few visitors for a
few seconds are enough to go through every kind of page of a mix.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference_services.launcher import Boutique as Launched
from tests.boutique.conftest import Boutique

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
# the page names of the summary (not imported: the loadgen module monkey-patches with gevent)
PAGES = ("home", "product", "cart", "add to cart", "set currency", "checkout")
ACCOUNT_PAGES = (
    *("home", "sign up page", "sign up", "account", "product", "add to cart", "checkout"),
    *("orders", "order", "cancel", "log out", "log in page", "log in"),
)


async def loadgen(*args: str) -> tuple[int, str, str]:
    """Run the load generator; (exit code, stdout, stderr)."""
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reference_services.loadgen", *args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=90)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_a_short_run_prints_rates_and_latencies_and_writes_json(
    shop: str, tmp_path: Path
) -> None:
    report = tmp_path / "summary.json"
    code, out, err = await loadgen(
        *("--users", "6", "--spawn-rate", "6", "--duration", "6"),
        *("--host", shop, "--json", str(report)),
    )
    assert code == 0, out + err
    summary = json.loads(report.read_text())
    assert summary["users"] == 6 and 5 <= summary["seconds"] <= 20
    total = summary["total"]
    assert total["failures"] == 0 and total["error_rate"] == 0 and summary["errors"] == {}
    # every visitor starts on the home page, and browsing products weighs the most
    assert summary["pages"]["home"]["requests"] >= 6
    assert set(summary["pages"]) <= set(PAGES)
    assert total["requests"] == sum(p["requests"] for p in summary["pages"].values())
    assert total["rps"] == pytest.approx(total["requests"] / summary["seconds"], rel=0.01)
    for name, page in [*summary["pages"].items(), ("total", total)]:
        assert 0 < page["p50_ms"] <= page["p95_ms"] <= page["p99_ms"], name

    lines = out.splitlines()
    assert lines[0].startswith(f"6 visitors (upstream mix) for {summary['seconds']} s")
    header = "page requests fails rps p50 ms p95 ms p99 ms"
    assert lines[1].split() == header.split()
    rows = {line[:14].strip(): line[14:].split() for line in lines[2:] if line[:1] != " "}
    for name, page in [*summary["pages"].items(), ("total", total)]:
        requests, fails, rps = rows[name][:3]
        assert (int(requests), int(fails)) == (page["requests"], 0), name
        assert float(rps) == pytest.approx(page["rps"], abs=0.01)
    assert re.search(
        r"^[\d.]+ requests/s, 0\.00% failed, p50 \d+ ms, p95 \d+ ms, p99 \d+ ms$", out, re.M
    )
    assert "error x" not in out


async def test_failed_requests_are_counted_listed_and_exit_1(
    boutique: Boutique, shop: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=boutique["cart"].admin.url) as admin:
        switched = await admin.post("/faults", params={"store_failure_rate": "1"})
        assert switched.status_code == 200  # every page reads the cart: every page fails
    report = tmp_path / "summary.json"
    code, out, err = await loadgen(
        *("--users", "2", "--spawn-rate", "2", "--duration", "3"),
        *("--host", shop, "--json", str(report)),
    )
    assert code == 1, out + err
    summary = json.loads(report.read_text())
    total = summary["total"]
    assert total["failures"] > 0 and total["error_rate"] > 0
    assert summary["pages"]["home"]["failures"] == summary["pages"]["home"]["requests"]
    assert any("503" in error for error in summary["errors"])
    assert re.search(r"^error x\d+: GET home: .*503", out, re.M), out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--users", "0"), "argument --users: '0' must be positive"),
        (("--users", "many"), "argument --users: 'many' is not a number"),
        (("--duration", "-5"), "argument --duration: '-5' must be positive"),
        (("--duration", "nan"), "argument --duration: 'nan' must be positive"),
        (("--host", "ftp://shop"), "argument --host: 'ftp://shop' is not an http(s) URL"),
        (("--host", "127.0.0.1:8080"), "is not an http(s) URL"),
        (("--host", "http://shop:99999"), "argument --host: 'http://shop:99999' is not a URL"),
        (("--host", "http://shop/cart"), "must be the shop's root URL, without a path"),
    ],
)
async def test_bad_arguments_are_one_clear_error(args: tuple[str, ...], message: str) -> None:
    given = dict(zip(args[::2], args[1::2], strict=True))
    host = () if "--host" in given else ("--host", "http://127.0.0.1:1")
    code, out, err = await loadgen(*args, *host)
    assert code == 2 and out == ""
    assert message in err, err


async def test_a_shop_that_is_not_there_is_a_clear_error_before_any_load() -> None:
    code, out, err = await loadgen("--host", "http://127.0.0.1:1", "--duration", "30")
    assert code == 2 and out == ""
    assert err.startswith("loadgen: cannot reach http://127.0.0.1:1/_healthz"), err


# --- the accounts mix, against the launched boutique -------------------------------------

REGISTRATIONS_PER_HOUR = 2


@pytest.fixture(scope="module")
def launched() -> Iterator[Launched]:
    """Every service a process; the user service takes two registrations an hour from
    one address (each visitor of the accounts mix has its own)."""
    data = Path(tempfile.mkdtemp(prefix="loadgen-accounts-"))
    limit = {"USER_REGISTRATIONS_PER_HOUR": str(REGISTRATIONS_PER_HOUR)}
    try:
        with Launched(data, base_port=0, collector=False, service_env={"user": limit}) as shop:
            yield shop
    finally:
        shutil.rmtree(data, ignore_errors=True)


# one visitor of the accounts mix through each of its steps in turn, then what it saw
ONE_VISITOR = """
from gevent import monkey

monkey.patch_all()
import json, sys
from locust.env import Environment
from reference_services.loadgen.accounts import AccountVisitor

AccountVisitor.host = sys.argv[1]
env = Environment(user_classes=[AccountVisitor], host=sys.argv[1])
env.create_local_runner()
visitor = AccountVisitor(env)
visitor.on_start()
for step in ("add_to_cart", "checkout", "list_orders", "view_order", "cancel", "log_in_again"):
    getattr(visitor, step)()
(order_id, _), = visitor.orders
page = visitor.client.get(f"/orders/{order_id}", name="order").text
print(json.dumps({
    "pages": {name: [e.num_requests, e.num_failures] for (name, _), e in env.stats.entries.items()},
    "errors": [f"{e.name}: {e.error}" for e in env.stats.errors.values()],
    "cancelled": sorted(visitor.cancelled) == [order_id],
    "status": page.split('id="order-status">', 1)[1].split("<", 1)[0],
}))
"""


@pytest.mark.e2e
async def test_an_account_visitor_signs_up_orders_follows_and_cancels(launched: Launched) -> None:
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", ONE_VISITOR, launched.shop_url),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=90)
    assert child.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out.decode().splitlines()[-1])
    assert seen["errors"] == []
    assert set(seen["pages"]) == set(ACCOUNT_PAGES)
    assert all(failures == 0 for _, failures in seen["pages"].values())
    # the cancel went through: refunded and restocked is the order service's business
    assert seen["cancelled"] and seen["status"] == "Cancelled"


@pytest.mark.e2e
async def test_both_mixes_run_side_by_side_without_a_failure(
    launched: Launched, tmp_path: Path
) -> None:
    report = tmp_path / "summary.json"
    code, out, err = await loadgen(
        *("--mix", "both", "--users", "6", "--spawn-rate", "6", "--duration", "8"),
        *("--host", launched.shop_url, "--json", str(report)),
    )
    assert code == 0, out + err
    summary = json.loads(report.read_text())
    assert summary["mix"] == "both" and summary["errors"] == {}
    assert summary["total"]["failures"] == 0
    pages = summary["pages"]
    # three anonymous visitors and three with accounts, each starting on its first pages
    assert pages["home"]["requests"] >= 6 and pages["sign up"]["requests"] == 3
    assert set(pages) <= set(PAGES) | set(ACCOUNT_PAGES) | {"set currency"}
    assert out.splitlines()[0].startswith("6 visitors (both mix) for ")


@pytest.mark.e2e
def test_the_shop_limits_sign_ups_per_visitor_address(launched: Launched) -> None:
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    with httpx.Client(
        base_url=launched.shop_url, headers={"X-Forwarded-For": address}, timeout=20
    ) as visitor:
        statuses = []
        for i in range(REGISTRATIONS_PER_HOUR + 1):
            form = {"email": f"limit-{i}-{uuid.uuid4().hex[:8]}@example.com", "name": "Ana"}
            response = visitor.post("/signup", data={**form, "password": "a long password"})
            statuses.append(response.status_code)
            visitor.cookies.clear()  # signed in: sign up again as someone new
        assert statuses == [302] * REGISTRATIONS_PER_HOUR + [429]
        assert "too many registrations from this address: try again in" in response.text
        # another address is not held back
        other = {"X-Forwarded-For": "203.0.113.77"}
        form = {"email": f"other-{uuid.uuid4().hex[:8]}@example.com", "name": "Bea"}
        response = visitor.post(
            "/signup", data={**form, "password": "a long password"}, headers=other
        )
        assert response.status_code == 302


# a visitor's GET and POST, each on a connection the server closes without an answer
DROPPED = """
from gevent import monkey

monkey.patch_all()
import json, sys
from locust.env import Environment
from reference_services.loadgen.visitor import Visitor, retry_like_a_browser

Visitor.host = sys.argv[1]
env = Environment(user_classes=[Visitor], host=sys.argv[1])
env.create_local_runner()
visitor = Visitor(env)
retry_like_a_browser(visitor.client)
visitor.client.get("/", name="home")
visitor.client.post("/cart", data={"product_id": "OLJCESPC7Z"}, name="add to cart")
entries = env.stats.entries.items()
print(json.dumps({name: [e.num_requests, e.num_failures] for (name, _), e in entries}))
"""


async def test_a_dropped_connection_is_retried_once_for_a_get_never_for_a_post() -> None:
    requests_seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests_seen.append(head.split(b" ", 2)[0].decode())
        if len(requests_seen) in (1, 3):  # the first GET's and the POST's connections
            writer.close()  # closed without an answer, as a keep-alive timeout does
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        child = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", DROPPED, f"http://127.0.0.1:{port}"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out.decode().splitlines()[-1])
    assert seen == {"home": [1, 0], "add to cart": [1, 1]}
    assert requests_seen == ["GET", "GET", "POST"]
