"""Replay issue 12's findings against a running boutique: one line per item, held or broke.

    python bench/probe_boundaries.py            # starts a boutique of its own (up ... down)
    make probe                                   # the same

It starts the boutique with the real command (``python -m reference_services up``),
finds its ports with ``status``'s state file, attacks each door the way the
issue did (real gRPC calls, real HTTP requests, a real non-loopback address),
prints ``item <n> <name>: held|broke (<what was seen>)`` and stops it with
``down``. Items about the development process (14: the once-flaky test, 16-18:
a fresh machine) run the tests that guard them. Exit status: the number of
broken items.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference_services.protos import hipstershop_pb2 as pb  # noqa: E402
from reference_services.protos import hipstershop_pb2_grpc as rpc  # noqa: E402

MUG = "6E92ZMYYFZ"
BIG = "x" * 3_000_000
MEGABYTE = "x" * 1_000_000
SMALL_BODY = 2_000  # an error message or page that echoes nothing big stays under this
ORDER_FORM = {
    "email": "someone@example.com",
    "street_address": "1600 Amphitheatre Parkway",
    "zip_code": "94043",
    "city": "Mountain View",
    "state": "CA",
    "country": "United States",
    "credit_card_number": "4432-8015-6152-0454",
    "credit_card_expiration_month": "1",
    "credit_card_expiration_year": str(time.gmtime().tm_year + 1),
    "credit_card_cvv": "672",
}


@dataclass
class Result:
    held: bool
    seen: str


class Running:
    """The boutique started by ``up``: its processes' ports, read from the state file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        state = json.loads((data_dir / "state.json").read_text())
        self.procs: dict[str, dict[str, Any]] = {p["name"]: p for p in state["processes"]}

    def grpc(self, name: str) -> str:
        return f"127.0.0.1:{self.procs[name]['port']}"

    def admin(self, name: str) -> str:
        return f"http://127.0.0.1:{self.procs[name]['admin_port']}"

    @property
    def shop(self) -> str:
        return f"http://127.0.0.1:{self.procs['frontend']['port']}"

    @property
    def viewer(self) -> str:
        return self.admin("collector")

    def log(self, name: str) -> str:
        return Path(self.procs[name]["log"]).read_text(errors="replace")


def boutique_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference_services", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def expect_code(
    want: grpc.StatusCode, calls: dict[str, Callable[[], object]], bounded: bool = True
) -> Result:
    seen = []
    held = True
    for label, call in calls.items():
        code, details = code_of(call)
        ok = code == want and (not bounded or len(details) < SMALL_BODY)
        held &= ok
        seen.append(f"{label}={code.name}{'' if ok else f' ({len(details)} chars)'}")
    return Result(held, ", ".join(seen))


def outside_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # picks a route; sends nothing
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


# --- the items ---------------------------------------------------------------------------


def item_1(b: Running) -> Result:
    outside = outside_address()
    if outside is None:
        return Result(False, "this machine has no non-loopback address to probe from")
    reachable = []
    for name, proc in b.procs.items():
        if name == "collector":
            continue
        for port in (proc["port"], proc["admin_port"]):
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((outside, port)) == 0:
                    reachable.append(f"{name}:{port}")
    return Result(not reachable, f"reachable from {outside}: {reachable or 'none'}")


def item_2(b: Running) -> Result:
    """An AdminServer on 0.0.0.0 with a token and an added route, asked from outside."""
    outside = outside_address()
    if outside is None:
        return Result(False, "no non-loopback address")
    script = """
import asyncio, sys
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from clue.admin import AdminServer

async def main():
    async def fault(request):
        return PlainTextResponse("switched")
    admin = AdminServer(host="0.0.0.0", token="s3cret", routes=[Route("/faults", fault)])
    await admin.astart()
    print(admin.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await admin.astop()

asyncio.run(main())
"""
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        assert server.stdout is not None and server.stdin is not None
        line = server.stdout.readline()
        while not line.strip().isdigit():  # the admin server's own log lines come first
            line = server.stdout.readline()
        port = int(line)
        seen = {}
        for path in ("/faults", "/metrics", "/debug/log", "/debug/pprof/", "/livez", "/healthz"):
            seen[path] = httpx.get(f"http://{outside}:{port}{path}", timeout=5).status_code
        server.stdin.close()
        server.wait(10)
    guarded = all(seen[p] in (401, 403) for p in ("/faults", "/metrics", "/debug/log"))
    probes_open = seen["/livez"] == 200 and seen["/healthz"] in (200, 503)
    return Result(guarded and probes_open, f"from {outside}: {seen}")


def item_3(b: Running, shop: httpx.Client) -> Result:
    kill(b, "checkout")
    shop.post("/cart", data={"product_id": MUG, "quantity": "1"})
    page = shop.post("/cart/checkout", data=ORDER_FORM)
    text = page.text
    leaks = [
        w for w in ("UNAVAILABLE", "ipv4:", "Connection refused", "failed to connect") if w in text
    ]
    request_id = page.headers.get("x-request-id", "")
    shows_id = bool(request_id) and request_id in text
    held = page.status_code == 503 and not leaks and shows_id
    return Result(
        held, f"status {page.status_code}, leaks {leaks or 'none'}, request id shown: {shows_id}"
    )


def item_4(b: Running) -> Result:
    currency = rpc.CurrencyServiceStub(grpc.insecure_channel(b.grpc("currency")))
    near = 2**63 - 1
    return expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        {
            "Convert(units=2**63-1, USD->JPY)": lambda: currency.Convert(
                pb.CurrencyConversionRequest(
                    to_code="JPY", **{"from": pb.Money(currency_code="USD", units=near)}
                )
            ),
            "Convert(units=-2**63)": lambda: currency.Convert(
                pb.CurrencyConversionRequest(
                    to_code="EUR", **{"from": pb.Money(currency_code="USD", units=-(2**63))}
                )
            ),
        },
    )


def item_5(b: Running) -> Result:
    catalog = rpc.ProductCatalogServiceStub(grpc.insecure_channel(b.grpc("productcatalog")))
    email = rpc.EmailServiceStub(grpc.insecure_channel(b.grpc("email")))
    return expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        {
            "GetProduct(3 MB id)": lambda: catalog.GetProduct(pb.GetProductRequest(id=BIG)),
            "SendOrderConfirmation(3 MB email)": lambda: email.SendOrderConfirmation(
                pb.SendOrderConfirmationRequest(email=BIG, order=pb.OrderResult(order_id="o"))
            ),
        },
    )


def item_6(b: Running) -> Result:
    cart = rpc.CartServiceStub(grpc.insecure_channel(b.grpc("cart")))
    user = "probe-user-6"

    def add(product: str) -> Callable[[], object]:
        item = pb.CartItem(product_id=product, quantity=1)
        return lambda: cart.AddItem(pb.AddItemRequest(user_id=user, item=item))

    unknown = expect_code(grpc.StatusCode.NOT_FOUND, {"unknown product": add("NOSUCHPROD")})
    bad = expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        {"3 MB id": add(BIG), "control characters": add("OLJC\x00\x1bESPC7Z")},
    )
    items = cart.GetCart(pb.GetCartRequest(user_id=user)).items
    held = unknown.held and bad.held and not items
    return Result(held, f"{unknown.seen}, {bad.seen}, cart now holds {len(items)} items")


def item_7(b: Running) -> Result:
    payment = rpc.PaymentServiceStub(grpc.insecure_channel(b.grpc("payment")))
    shipping = rpc.ShippingServiceStub(grpc.insecure_channel(b.grpc("shipping")))
    email = rpc.EmailServiceStub(grpc.insecure_channel(b.grpc("email")))
    card = pb.CreditCardInfo(
        credit_card_number="4432801561520454",
        credit_card_cvv=672,
        credit_card_expiration_year=time.gmtime().tm_year + 1,
        credit_card_expiration_month=1,
    )
    address = pb.Address(
        street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code=62701
    )
    many = [pb.CartItem(product_id=MUG, quantity=2**31 - 1)] * 100_000
    mixed = pb.OrderResult(
        order_id="o-7",
        shipping_tracking_id="t",
        shipping_cost=pb.Money(currency_code="USD", units=1),
        shipping_address=address,
        items=[
            pb.OrderItem(
                item=pb.CartItem(product_id=MUG, quantity=-3),
                cost=pb.Money(currency_code="USD", units=-1, nanos=0),
            )
        ],
    )
    return expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        {
            "Charge(2**63-1)": lambda: payment.Charge(
                pb.ChargeRequest(
                    amount=pb.Money(currency_code="USD", units=2**63 - 1), credit_card=card
                )
            ),
            "GetQuote(100,000 items)": lambda: shipping.GetQuote(
                pb.GetQuoteRequest(address=address, items=many)
            ),
            "SendOrderConfirmation(negative quantity)": lambda: email.SendOrderConfirmation(
                pb.SendOrderConfirmationRequest(email="a@example.com", order=mixed)
            ),
        },
    )


def item_8(b: Running, shop: httpx.Client) -> Result:
    before = shop.get("/cart").text.count('class="thumb"')
    answers = {
        "1 MB product_id": shop.post("/cart", data={"product_id": MEGABYTE, "quantity": "1"}),
        "/product/+50,000 chars": shop.get("/product/" + "a" * 50_000),
        "100,000 fields": shop.post(
            "/cart",
            content="&".join(f"f{i}=1" for i in range(100_000)),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        "quantity U+0661": shop.post("/cart", data={"product_id": MUG, "quantity": "\u0661"}),
    }
    after = shop.get("/cart").text.count('class="thumb"')
    seen = {k: r.status_code for k, r in answers.items()}
    held = (
        all(400 <= r.status_code < 500 and len(r.content) < 20_000 for r in answers.values())
        and before == after
    )
    return Result(held, f"{seen}, cart lines {before} -> {after}")


def item_9(b: Running) -> Result:
    viewer = httpx.Client(base_url=b.viewer, timeout=10)
    seen = {}
    held = True
    for path in ("/api/traces", "/api/logs", "/api/dependencies", "/api/metrics/x/series", "/"):
        for start in ("1796578655000000000", "1e300", "-5"):
            r = viewer.get(path, params={"start": start})
            ok = r.status_code == 400 and "start" in r.text and len(r.content) < 20_000
            held &= ok
            if not ok:
                seen[f"{path}?start={start}"] = r.status_code
    long_name = "m" * 1_000_000
    request = _metric_export(long_name)
    intake = b.procs["collector"]["extra"]["http_port"]
    r = httpx.post(
        f"http://127.0.0.1:{intake}/v1/metrics",
        content=request,
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    names = [m["name"] for m in viewer.get("/api/metrics").json()["metrics"]]
    stored_long = [n for n in names if len(n) > 1000]
    held &= not stored_long
    return Result(
        held,
        f"bad times: {seen or 'all 400 naming start'}; 1 MB metric name: intake {r.status_code}, "
        f"stored names over 1000 chars: {len(stored_long)}",
    )


def _metric_export(name: str) -> bytes:
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

    point = m.NumberDataPoint(as_int=1, time_unix_nano=time.time_ns())
    metric = m.Metric(name=name, gauge=m.Gauge(data_points=[point]))
    request = ms.ExportMetricsServiceRequest(
        resource_metrics=[m.ResourceMetrics(scope_metrics=[m.ScopeMetrics(metrics=[metric])])]
    )
    return request.SerializeToString()


def item_10(b: Running, shop: httpx.Client) -> Result:
    # item 3 left checkout down for a while: the channel's back-off has grown.
    time.sleep(6)
    restart(b, "checkout")
    back = time.monotonic()
    while time.monotonic() - back < 15:
        shop.post("/cart", data={"product_id": MUG, "quantity": "1"})
        if shop.post("/cart/checkout", data=ORDER_FORM).status_code == 200:
            took = time.monotonic() - back
            return Result(
                took <= 1.0, f"the shop took an order {took:.2f} s after checkout was back"
            )
        time.sleep(0.05)
    return Result(False, "the shop still failed 15 s after checkout was back")


def item_11(b: Running) -> Result:
    channel = grpc.insecure_channel(b.grpc("cart"))
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(200):
        stream = health.Watch(health_pb2.HealthCheckRequest(service=""))
        next(stream)
        stream.cancel()
    time.sleep(0.5)
    lines = [line for line in b.log("cart").splitlines() if "Failed to detach context" in line]
    return Result(not lines, f"200 cancelled Watch calls, 'Failed to detach' lines: {len(lines)}")


def item_12(b: Running) -> Result:
    names = {
        "cart": "hipstershop.CartService",
        "currency": "hipstershop.CurrencyService",
        "checkout": "hipstershop.CheckoutService",
    }
    seen = {}
    for proc, service in names.items():
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(b.grpc(proc)))
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        seen[service] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    unknown = code_of(
        lambda: health_pb2_grpc.HealthStub(grpc.insecure_channel(b.grpc("cart"))).Check(
            health_pb2.HealthCheckRequest(service="no.Such"), timeout=5
        )
    )[0]
    held = all(s == "SERVING" for s in seen.values()) and unknown == grpc.StatusCode.NOT_FOUND
    return Result(held, f"{seen}, unknown name: {unknown.name}")


def item_13(b: Running, shop: httpx.Client) -> Result:
    status = shop.get("/static/style.css").status_code
    time.sleep(2.5)  # the batch span processor's delay
    traces = httpx.get(
        f"{b.viewer}/api/traces", params={"service": "frontend", "limit": 1000}, timeout=10
    ).json()["traces"]
    static = [t["root"]["name"] for t in traces if "/static" in t["root"]["name"]]
    return Result(
        status == 200 and not static, f"static file {status}, static traces: {static or 'none'}"
    )


def pytest_item(*args: str) -> Result:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    last = (run.stdout.strip().splitlines() or ["no output"])[-1]
    return Result(run.returncode == 0, f"pytest {' '.join(args)}: {last}")


def item_14(b: Running) -> Result:
    test = "tests/test_debug_toggle_e2e.py::test_toggle_reaches_the_next_request_and_rpc"
    times = 5
    for i in range(times):
        result = pytest_item(test)
        if not result.held:
            return Result(False, f"failed on run {i + 1}: {result.seen}")
    return Result(True, f"{test} passed {times} runs in a row")


def item_15(b: Running) -> Result:
    status = boutique_command("status", "--data-dir", str(b.data_dir))
    listed = [name for name in b.procs if name in status.stdout]
    ports_shown = all(str(p["port"]) in status.stdout for p in b.procs.values())
    held = status.returncode == 0 and len(listed) == len(b.procs) and ports_shown
    return Result(
        held, f"status lists {len(listed)}/{len(b.procs)} processes, ports shown: {ports_shown}"
    )


def item_16(b: Running) -> Result:
    return pytest_item("tests/test_throwaway_servers.py")


def item_17(b: Running) -> Result:
    ci = (ROOT / ".ci" / "run").read_text()
    runs_lowest = "test-lowest" in ci
    return Result(
        runs_lowest,
        "CI runs make test-lowest (clue's tests at the declared lower bounds)"
        if runs_lowest
        else "CI does not test the lower bounds",
    )


def item_18(b: Running) -> Result:
    return pytest_item("tests/test_generated_stubs.py")


# --- running them -------------------------------------------------------------------------


def kill(b: Running, name: str) -> None:
    pid = b.procs[name]["pid"]
    os.kill(pid, 15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def restart(b: Running, name: str) -> None:
    """Start service ``name`` again on its own ports, as the launcher did, and wait for health."""
    from reference_services.launcher import Boutique, Process

    plan = Boutique(b.data_dir, base_port=0, collector=True)
    plan.processes = {n: Process(**p) for n, p in b.procs.items()}
    if "nats" in plan.processes:  # the boutique's own broker, as `up` started it
        plan.nats_url = f"nats://{plan.processes['nats'].address}"
    proc = b.procs[name]
    log = open(proc["log"], "ab")  # noqa: SIM115 - the child's output for its lifetime
    child = subprocess.Popen(
        [sys.executable, "-m", f"reference_services.{name}"],
        cwd=ROOT,
        env=plan.service_environment(name),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    proc["pid"] = child.pid
    RESTARTED.append(child)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(b.grpc(name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                return
        except grpc.RpcError:
            time.sleep(0.02)
    raise RuntimeError(f"{name} did not come back")


RESTARTED: list[subprocess.Popen[bytes]] = []


def items(b: Running, shop: httpx.Client) -> Iterator[tuple[int, str, Callable[[], Result]]]:
    yield 1, "grpc-and-admin-ports-bind-the-given-host", lambda: item_1(b)
    yield 2, "one-admin-guard-for-every-route", lambda: item_2(b)
    yield 4, "money-overflow-is-invalid-argument", lambda: item_4(b)
    yield 5, "huge-strings-rejected-not-echoed", lambda: item_5(b)
    yield 6, "cart-stores-only-known-bounded-ids", lambda: item_6(b)
    yield 7, "amounts-and-counts-bounded", lambda: item_7(b)
    yield 8, "shop-bad-forms-are-400", lambda: item_8(b, shop)
    yield 9, "collector-bounds", lambda: item_9(b)
    yield 11, "cancelled-streams-log-no-detach-error", lambda: item_11(b)
    yield 12, "health-knows-full-service-names", lambda: item_12(b)
    yield 13, "static-files-untraced", lambda: item_13(b, shop)
    yield 15, "status-sees-the-running-boutique", lambda: item_15(b)  # before 3 kills checkout
    yield 3, "shop-hides-internals-on-503", lambda: item_3(b, shop)
    yield 10, "shop-recovers-within-1s", lambda: item_10(b, shop)
    yield 14, "once-flaky-toggle-test-holds", lambda: item_14(b)
    yield 16, "tests-start-throwaway-servers", lambda: item_16(b)
    yield 17, "lower-bounds-tested-in-ci", lambda: item_17(b)
    yield 18, "committed-stubs-match-protos", lambda: item_18(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", type=int, nargs="*", help="item numbers to replay")
    args = parser.parse_args()
    broke = 0
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        data_dir = Path(tmp)
        up = boutique_command("up", "--data-dir", tmp, "--base-port", "0")
        if up.returncode != 0:
            print(up.stdout, up.stderr, file=sys.stderr)
            return 99
        try:
            b = Running(data_dir)
            with httpx.Client(base_url=b.shop, timeout=15, follow_redirects=True) as shop:
                for number, name, check in items(b, shop):
                    if args.only and number not in args.only:
                        continue
                    try:
                        result = check()
                    except Exception as exc:  # a crash of the probe is a broken item too
                        result = Result(False, f"probe raised {type(exc).__name__}: {exc!r:.200}")
                    broke += not result.held
                    verdict = "held" if result.held else "broke"
                    print(f"item {number} {name}: {verdict} ({result.seen})", flush=True)
        finally:
            for child in RESTARTED:
                child.terminate()
                child.wait(15)
            boutique_command("down", "--data-dir", tmp)
    return broke


if __name__ == "__main__":
    sys.exit(main())
