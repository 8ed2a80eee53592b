"""The web shop's order pages and stock lines, through real HTTP to the whole boutique.

The launcher starts every service as a child process, and the trace viewer, whose
URL the shop is given (``VIEWER_URL``): each step of an order's timeline links to
its trace there. Each test is a visitor with its own cookie jar and client
address. An admin (``USER_ADMIN_EMAILS``) moves orders and sets stock through the
real OrderService and InventoryService with the token the shop gave it. A headless
Chromium follows an order from its confirmation to its timeline and its trace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
import uvicorn

from reference_services.common.runtime import Wiring
from reference_services.frontend.__main__ import ADDRESS_VARIABLES
from reference_services.frontend.app import create_app
from reference_services.frontend.clients import Addresses, Clients
from reference_services.launcher import Boutique
from reference_services.productcatalog.catalog import DATA_FILE, Catalog
from reference_services.productcatalog.service import ProductCatalog, faults
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import order_pb2 as opb
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from tests.boutique.conftest import serving
from tests.boutique.shop import MUG, ORDER_FORM, SUNGLASSES, WATCH
from tests.browser import chromium, screenshot_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PASSWORD = "correct horse battery"
ADMIN = "orders-admin@example.com"
TOKEN = "shop_token"
LOW_STOCK = 20
"""The catalog's INVENTORY_LOW_STOCK (10 by default)."""
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def boutique() -> Iterator[Boutique]:
    data = Path(tempfile.mkdtemp(prefix="shop-orders-"))
    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # the spans reach the viewer at once
        # every trace kept: the adaptive default keeps 2 new traces a second, and a step
        # whose trace it left out links to the viewer's "not found"
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "USER_ADMIN_EMAILS": ADMIN,
        "USER_REGISTRATIONS_PER_HOUR": "1000",
        "SHIPPING_PICKUP_DELAY_S": "600",  # orders stay SHIPPED unless a test moves them
        "INVENTORY_RESTOCK_S": "0",  # the stock a test sets stays set
        "INVENTORY_LOW_STOCK": str(LOW_STOCK),  # the shop's "only N left" follows it
    }
    try:
        with Boutique(data, base_port=0, collector=True, env=env) as running:
            yield running
    finally:
        shutil.rmtree(data, ignore_errors=True)


def client_address() -> str:
    """A documentation address (RFC 5737): each visitor logs in from its own."""
    return f"203.0.113.{uuid.uuid4().int % 250 + 1}"


def new_visitor(boutique: Boutique) -> httpx.Client:
    headers = {"X-Forwarded-For": client_address()}
    return httpx.Client(base_url=boutique.shop_url, timeout=20.0, headers=headers)


@pytest.fixture
def visitor(boutique: Boutique) -> Iterator[httpx.Client]:
    with new_visitor(boutique) as client:
        yield client


def sign_up(visitor: httpx.Client, email: str | None = None) -> str:
    """Sign ``visitor`` up (a new e-mail unless given); their CSRF token."""
    email = email or f"buyer-{uuid.uuid4().hex[:10]}@example.com"
    response = visitor.post("/signup", data={"email": email, "name": "Ada", "password": PASSWORD})
    assert response.status_code == 302, response.text
    return csrf(visitor.get("/orders").text)


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def place_order(visitor: httpx.Client, token: str, product: str = MUG, quantity: int = 1) -> str:
    """Order ``quantity`` of ``product`` through the shop; the order id."""
    added = visitor.post(
        "/cart", data={"product_id": product, "quantity": str(quantity), "csrf_token": token}
    )
    assert added.status_code == 302, added.text
    placed = visitor.post("/cart/checkout", data={**ORDER_FORM, "csrf_token": token})
    assert placed.status_code == 200, placed.text
    found = re.search(r'id="order-id">([^<]+)<', placed.text)
    assert found is not None
    assert f'href="/orders/{found.group(1)}"' in placed.text  # "Follow this order"
    return found.group(1)


@pytest.fixture(scope="module")
def admin(boutique: Boutique) -> str:
    """An admin's access token, as the shop's login gave it."""
    with new_visitor(boutique) as client:
        sign_up(client, ADMIN)
        return client.cookies[TOKEN]


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def move(boutique: Boutique, admin: str, order_id: str, status: int) -> None:
    """Move ``order_id`` to ``status`` as the admin, through the real OrderService."""
    with grpc.insecure_channel(boutique.processes["checkout"].address) as channel:
        opb_grpc.OrderServiceStub(channel).UpdateOrderStatus(
            opb.UpdateOrderStatusRequest(order_id=order_id, status=status, reason="test moved it"),
            metadata=bearer(admin),
            timeout=10,
        )


def set_stock(boutique: Boutique, admin: str, product: str, on_hand: int) -> None:
    """Set ``product``'s stock on hand as the admin, through the real InventoryService."""
    with grpc.insecure_channel(boutique.processes["productcatalog"].address) as channel:
        ipb_grpc.InventoryServiceStub(channel).SetStock(
            ipb.SetStockRequest(product_id=product, on_hand=on_hand),
            metadata=bearer(admin),
            timeout=10,
        )


def status_of(page: str) -> str:
    found = re.search(r'id="order-status">([^<]*)<', page)
    assert found is not None, "no status on the order page"
    return found.group(1)


# --- configuration -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://viewer.example", "http://viewer.example:99999/"])
def test_a_bad_viewer_url_stops_the_shop_with_one_line(url: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PORT": "1",
        "ADMIN_PORT": "2",
        "VIEWER_URL": url,
        **{variable: "127.0.0.1:9" for variable in ADDRESS_VARIABLES.values()},
    }
    started = subprocess.run(
        [sys.executable, "-m", "reference_services.frontend"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2
    assert started.stderr == (
        f"frontend: VIEWER_URL={url!r} is not an http(s) URL like http://host:port\n"
    )


# --- signed in only ----------------------------------------------------------------------


def test_the_order_pages_ask_an_anonymous_visitor_to_log_in(visitor: httpx.Client) -> None:
    listed = visitor.get("/orders")
    assert listed.status_code == 302
    assert listed.headers["location"] == "/login?next=%2Forders"
    order_id = str(uuid.uuid4())
    one = visitor.get(f"/orders/{order_id}")
    assert one.status_code == 302
    assert one.headers["location"] == f"/login?next=%2Forders%2F{order_id}"
    cancel = visitor.post(f"/orders/{order_id}/cancel")
    assert cancel.status_code == 302 and cancel.headers["location"].startswith("/login?")


def test_an_anonymous_order_page_offers_no_order_history(visitor: httpx.Client) -> None:
    visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
    placed = visitor.post("/cart/checkout", data=ORDER_FORM)
    assert placed.status_code == 200
    assert 'id="follow-order"' not in placed.text and 'id="orders-link"' not in placed.text


# --- the list and the timeline -------------------------------------------------------


def test_the_list_shows_the_users_orders_newest_first_with_their_status(
    visitor: httpx.Client,
) -> None:
    token = sign_up(visitor)
    empty = visitor.get("/orders")
    assert empty.status_code == 200 and 'id="no-orders"' in empty.text
    assert 'id="orders-link"' in empty.text  # the header links to the orders
    first = place_order(visitor, token, MUG, 2)
    second = place_order(visitor, token, SUNGLASSES, 1)
    page = visitor.get("/orders")
    assert page.status_code == 200
    listed = re.findall(r'<tr data-order-id="([^"]+)">', page.text)
    assert listed == [second, first]
    rows = dict(re.findall(r'<tr data-order-id="([^"]+)">(.*?)</tr>', page.text, re.DOTALL))
    assert 'data-status="Shipped"' in rows[first] and "<td>2</td>" in rows[first]
    assert "$" in rows[second]
    # another user's list is their own
    with new_visitor_like(visitor) as other:
        sign_up(other)
        assert 'id="no-orders"' in other.get("/orders").text


def test_the_list_pages_through_older_orders(boutique: Boutique, visitor: httpx.Client) -> None:
    sign_up(visitor)
    claims = visitor.cookies[TOKEN].split(".")[1]
    user_id = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]
    address = ORDER_FORM["street_address"]
    card = pb.CreditCardInfo(
        credit_card_number=ORDER_FORM["credit_card_number"].replace("-", ""),
        credit_card_cvv=int(ORDER_FORM["credit_card_cvv"]),
        credit_card_expiration_year=int(ORDER_FORM["credit_card_expiration_year"]),
        credit_card_expiration_month=1,
    )
    placed = []
    cart = boutique.processes["cart"].address
    checkout = boutique.processes["checkout"].address
    # 21 orders of the user, placed as the shop places them (their cart, their user id)
    with grpc.insecure_channel(cart) as carts, grpc.insecure_channel(checkout) as orders:
        for _ in range(21):
            pb_grpc.CartServiceStub(carts).AddItem(
                pb.AddItemRequest(user_id=user_id, item=pb.CartItem(product_id=MUG, quantity=1)),
                timeout=30,
            )
            reply = pb_grpc.CheckoutServiceStub(orders).PlaceOrder(
                pb.PlaceOrderRequest(
                    user_id=user_id,
                    user_currency="USD",
                    email="someone@example.com",
                    address=pb.Address(
                        street_address=address, city="Mountain View", country="US", zip_code=1
                    ),
                    credit_card=card,
                ),
                timeout=30,
            )
            placed.append(reply.order.order_id)
    first = visitor.get("/orders").text
    newest = re.findall(r'<tr data-order-id="([^"]+)">', first)
    assert newest == placed[::-1][:20]
    older = re.search(r'href="(/orders\?page=[^"]+)" id="next-page"', first)
    assert older is not None
    second = visitor.get(older.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<tr data-order-id="([^"]+)">', second) == [placed[0]]
    assert 'id="next-page"' not in second and 'id="first-page"' in second


def new_visitor_like(visitor: httpx.Client) -> httpx.Client:
    return httpx.Client(
        base_url=visitor.base_url, timeout=20.0, headers={"X-Forwarded-For": client_address()}
    )


def test_the_order_page_shows_lines_costs_and_a_timeline_linked_to_the_viewer(
    boutique: Boutique, visitor: httpx.Client
) -> None:
    token = sign_up(visitor)
    order_id = place_order(visitor, token, WATCH, 3)
    page = visitor.get(f"/orders/{order_id}")
    assert page.status_code == 200
    text = page.text
    assert f'<code id="order-id">{order_id}</code>' in text
    assert status_of(text) == "Shipped"
    assert re.search(rf'data-product-id="{WATCH}"><td><a [^>]+>Watch</a></td><td>3</td>', text)
    assert "Mountain View" in text and re.search(r'id="tracking-id">[A-Z0-9-]{6,}<', text)
    steps = re.findall(r'<li class="step" data-to="([^"]*)" data-trace-id="([0-9a-f]*)">', text)
    assert steps and steps[-1][0] == "Shipped"  # placing it may have passed through others
    viewer = boutique.service_environment("frontend")["VIEWER_URL"]
    for _, trace_id in steps:  # every step links to the trace of the work that made it
        assert len(trace_id) == 32
        assert f'href="{viewer}/trace/{trace_id}"' in text
    trace_id = steps[-1][1]
    assert 'id="cancel-form"' in text and 'name="csrf_token"' in text
    # the link leads to the order's trace in the viewer
    deadline = time.monotonic() + 20
    while (trace := httpx.get(f"{viewer}/api/traces/{trace_id}")).status_code != 200:
        assert time.monotonic() < deadline, "the order's trace never reached the viewer"
        time.sleep(0.2)
    assert "PlaceOrder" in trace.text


def test_a_move_is_a_new_step_with_its_reason(
    boutique: Boutique, admin: str, visitor: httpx.Client
) -> None:
    token = sign_up(visitor)
    order_id = place_order(visitor, token)
    move(boutique, admin, order_id, ev.ORDER_STATUS_IN_TRANSIT)
    page = visitor.get(f"/orders/{order_id}").text
    assert status_of(page) == "In transit"
    assert re.findall(r'<li class="step" data-to="([^"]*)"', page)[-2:] == ["Shipped", "In transit"]
    assert "test moved it" in page
    assert 'id="cancel-form"' not in page  # too late: nothing to cancel with
    listed = visitor.get("/orders").text
    assert 'data-status="In transit"' in listed


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "quoted"),
    [
        ("/orders/not-an-order", "'not-an-order'"),
        ("/orders/" + "7" * 300, "'" + "7" * 32 + "'…"),
        ("/orders/0e5c1a52-aaaa-bbbb-cccc-9d1c", "'0e5c1a52-aaaa-bbbb-cccc-9d1c'"),
    ],
)
def test_a_bad_order_id_is_a_400_naming_it(visitor: httpx.Client, path: str, quoted: str) -> None:
    token = sign_up(visitor)
    for method, target in (("GET", path), ("POST", path + "/cancel")):
        response = visitor.request(method, target, data={"csrf_token": token})
        assert response.status_code == 400, method
        assert "order id: must be an order number" in response.text
        assert quoted.replace("'", "&#39;") in response.text
        assert "7" * 33 not in response.text


def test_a_bad_page_of_the_list_is_a_400_naming_it(visitor: httpx.Client) -> None:
    sign_up(visitor)
    for page in ("not-a-token", "x" * 300, "\x01"):
        response = visitor.get("/orders", params={"page": page})
        assert response.status_code == 400, page
        assert "page: " in response.text
        assert "x" * 33 not in response.text


def test_an_unknown_or_another_users_order_is_a_404(visitor: httpx.Client) -> None:
    token = sign_up(visitor)
    order_id = place_order(visitor, token)
    with new_visitor_like(visitor) as mallory:
        theirs = sign_up(mallory)
        peek = mallory.get(f"/orders/{order_id}")
        unknown = mallory.get(f"/orders/{uuid.uuid4()}")
        assert peek.status_code == unknown.status_code == 404
        assert "Order not found" in peek.text and "Order not found" in unknown.text
        assert "Mountain View" not in peek.text
        cancel = mallory.post(f"/orders/{order_id}/cancel", data={"csrf_token": theirs})
        assert cancel.status_code == 404
    assert status_of(visitor.get(f"/orders/{order_id}").text) == "Shipped"  # untouched
    # an upper-case id is the same order
    assert visitor.get(f"/orders/{order_id.upper()}").status_code == 200


# --- cancelling ------------------------------------------------------------------------


def test_cancelling_without_the_csrf_token_is_a_403_that_changes_nothing(
    visitor: httpx.Client,
) -> None:
    token = sign_up(visitor)
    order_id = place_order(visitor, token)
    missing = visitor.post(f"/orders/{order_id}/cancel")
    assert missing.status_code == 403 and "Form expired" in missing.text
    wrong = visitor.post(f"/orders/{order_id}/cancel", data={"csrf_token": token[:-2] + "xx"})
    assert wrong.status_code == 403
    assert status_of(visitor.get(f"/orders/{order_id}").text) == "Shipped"


def test_cancelling_once_the_parcel_is_on_its_way_is_a_409(
    boutique: Boutique, admin: str, visitor: httpx.Client
) -> None:
    token = sign_up(visitor)
    order_id = place_order(visitor, token)
    move(boutique, admin, order_id, ev.ORDER_STATUS_IN_TRANSIT)
    late = visitor.post(f"/orders/{order_id}/cancel", data={"csrf_token": token})
    assert late.status_code == 409
    assert "Too late to cancel" in late.text
    assert status_of(visitor.get(f"/orders/{order_id}").text) == "In transit"


def test_cancelling_goes_back_to_the_order_cancelled(visitor: httpx.Client) -> None:
    token = sign_up(visitor)
    order_id = place_order(visitor, token)
    cancelled = visitor.post(f"/orders/{order_id}/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303, cancelled.text
    assert cancelled.headers["location"] == f"/orders/{order_id}"
    page = visitor.get(f"/orders/{order_id}").text
    assert status_of(page) == "Cancelled"
    assert re.findall(r'<li class="step" data-to="([^"]*)"', page)[-1] == "Cancelled"
    assert "cancelled by the customer in the shop" in page
    assert 'id="cancel-form"' not in page
    again = visitor.post(f"/orders/{order_id}/cancel", data={"csrf_token": token})
    assert again.status_code == 303  # cancelling a cancelled order changes nothing
    # the customer is told, on the account page, with a link back to the order
    told = f'data-template="order_cancelled" data-order-id="{order_id}"'
    deadline = time.monotonic() + 20
    while told not in (account := visitor.get("/account").text):
        assert time.monotonic() < deadline, "no cancellation notice in the account's history"
        time.sleep(0.2)
    assert f'<a href="/orders/{order_id}">' in account


# --- stock -----------------------------------------------------------------------------


def stock_line(page: str, product: str) -> str:
    """The stock line of ``product``'s card on the home page (empty: none)."""
    card = re.search(rf'data-product-id="{product}">(.*?)</a>', page, re.DOTALL)
    assert card is not None
    found = re.search(r'<p class="stock[^"]*"[^>]*>([^<]+)<', card.group(1))
    return found.group(1) if found else ""


def test_low_stock_says_how_many_are_left_and_none_is_sold_out(
    boutique: Boutique, admin: str, visitor: httpx.Client
) -> None:
    set_stock(boutique, admin, MUG, 3)
    set_stock(boutique, admin, SUNGLASSES, 0)
    try:
        home = visitor.get("/").text
        assert stock_line(home, MUG) == "only 3 left"
        assert stock_line(home, SUNGLASSES) == "sold out"
        assert stock_line(home, WATCH) == ""  # plenty: nothing said
        mug = visitor.get(f"/product/{MUG}").text
        assert re.search(r'id="stock" data-available="3">Only 3 left<', mug)
        assert re.search(r'<button type="submit" class="primary" id="add-to-cart">', mug)
        sold_out = visitor.get(f"/product/{SUNGLASSES}").text
        assert re.search(r'id="stock" data-available="0">Sold out<', sold_out)
        assert re.search(r'id="add-to-cart" disabled>Sold out<', sold_out)
    finally:
        set_stock(boutique, admin, MUG, 1000)
        set_stock(boutique, admin, SUNGLASSES, 1000)
    assert 'id="stock"' not in visitor.get(f"/product/{MUG}").text


def test_the_shop_says_how_many_are_left_below_the_catalogs_low_stock(
    boutique: Boutique, admin: str, visitor: httpx.Client
) -> None:
    set_stock(boutique, admin, MUG, LOW_STOCK - 1)
    set_stock(boutique, admin, SUNGLASSES, LOW_STOCK)
    try:
        home = visitor.get("/").text
        assert stock_line(home, MUG) == f"only {LOW_STOCK - 1} left"  # above the default 10
        assert stock_line(home, SUNGLASSES) == ""  # at the level: not low
    finally:
        set_stock(boutique, admin, MUG, 1000)
        set_stock(boutique, admin, SUNGLASSES, 1000)


def test_the_stock_exhausted_switch_shows_the_product_sold_out(
    boutique: Boutique, visitor: httpx.Client
) -> None:
    faults = f"{boutique.processes['productcatalog'].admin_url}/faults"
    assert httpx.post(faults, params={"stock_exhausted": WATCH}).status_code == 200
    try:
        assert stock_line(visitor.get("/").text, WATCH) == "sold out"
        assert 'id="add-to-cart" disabled>' in visitor.get(f"/product/{WATCH}").text
    finally:
        assert httpx.post(faults, params={"stock_exhausted": ""}).status_code == 200
    assert stock_line(visitor.get("/").text, WATCH) == ""


def cart_stock(page: str) -> dict[str, str]:
    """product id -> the stock line of its cart line (empty: none), with its classes."""
    rows = re.findall(r'<tr data-product-id="([^"]+)">(.*?)</tr>', page, re.DOTALL)
    assert rows, "no cart lines"
    lines = {}
    for product, row in rows:
        found = re.search(r'<p class="(stock[^"]*)"[^>]*>([^<]+)<', row)
        lines[product] = f"{found.group(1)}: {found.group(2)}" if found else ""
    return lines


def test_the_cart_marks_lines_sold_out_or_short_of_stock_before_the_checkout_refuses(
    boutique: Boutique, admin: str, visitor: httpx.Client
) -> None:
    token = sign_up(visitor)
    for product, quantity in ((MUG, 1), (WATCH, 1), *((SUNGLASSES, 10),) * 3):
        added = visitor.post(
            "/cart", data={"product_id": product, "quantity": str(quantity), "csrf_token": token}
        )
        assert added.status_code == 302, added.text
    faults = f"{boutique.processes['productcatalog'].admin_url}/faults"
    set_stock(boutique, admin, SUNGLASSES, LOW_STOCK + 5)  # not low, but short of 30
    assert httpx.post(faults, params={"stock_exhausted": MUG}).status_code == 200
    try:
        cart = visitor.get("/cart")
        assert cart.status_code == 200
        assert cart_stock(cart.text) == {
            MUG: "stock sold-out: Sold out",
            WATCH: "",  # plenty: nothing said
            SUNGLASSES: f"stock short: Only {LOW_STOCK + 5} left",
        }
        refused = visitor.post("/cart/checkout", data={**ORDER_FORM, "csrf_token": token})
        assert refused.status_code == 409
    finally:
        assert httpx.post(faults, params={"stock_exhausted": ""}).status_code == 200
        set_stock(boutique, admin, SUNGLASSES, 1000)
    assert cart_stock(visitor.get("/cart").text) == {MUG: "", WATCH: "", SUNGLASSES: ""}


@asynccontextmanager
async def shop_over(addresses: Addresses) -> AsyncIterator[str]:
    """A web shop in this process over ``addresses``, served by uvicorn: its base URL."""
    clients = Clients(addresses)
    server = uvicorn.Server(
        uvicorn.Config(create_app(clients), host="127.0.0.1", port=0, log_config=None)
    )
    serving_task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving_task.done(), serving_task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving_task
        await clients.close()


async def test_without_an_inventory_the_pages_show_no_stock_line(boutique: Boutique) -> None:
    """A catalog of the first boutique (no InventoryService: GetStock is UNIMPLEMENTED, as
    during a rolling deploy): home, product and cart pages render, without a stock line."""
    upstream = Wiring(
        servicers=[
            (
                pb_grpc.add_ProductCatalogServiceServicer_to_server,
                ProductCatalog(Catalog.from_file(), faults(), DATA_FILE),
            )
        ]
    )
    address = {name: boutique.processes[name].address for name in boutique.processes}
    async with serving("productcatalog", upstream) as catalog:
        addresses = Addresses(
            productcatalog=catalog.address,
            currency=address["currency"],
            cart=address["cart"],
            recommendation=address["recommendation"],
            shipping=address["shipping"],
            checkout=address["checkout"],
            ad=address["ad"],
        )
        async with shop_over(addresses) as url, httpx.AsyncClient(base_url=url) as client:
            home = await client.get("/")
            assert home.status_code == 200
            assert len(re.findall(r'class="card" href="/product/', home.text)) == 9
            assert 'class="stock' not in home.text
            product = await client.get(f"/product/{MUG}")
            assert product.status_code == 200 and 'id="stock"' not in product.text
            assert re.search(r'id="add-to-cart">Add to cart<', product.text)
            form = {"product_id": MUG, "quantity": "1"}  # anonymous: no CSRF token
            assert (await client.post("/cart", data=form)).status_code == 302
            cart = await client.get("/cart")
            assert cart.status_code == 200 and 'data-product-id="6E92ZMYYFZ"' in cart.text
            assert 'class="stock' not in cart.text


# --- a real browser --------------------------------------------------------------------


@pytest.mark.browser
def test_a_real_browser_follows_an_order_to_its_timeline_and_its_trace(
    boutique: Boutique,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = screenshot_dir()
    email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
    with chromium() as driver:
        driver.implicitly_wait(10)
        wait = WebDriverWait(driver, 10)
        driver.get(f"{boutique.shop_url}/signup")
        form = driver.find_element(By.ID, "signup-form")
        form.find_element(By.NAME, "email").send_keys(email)
        form.find_element(By.NAME, "name").send_keys("Ada Lovelace")
        form.find_element(By.NAME, "password").send_keys(PASSWORD)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "signed-in")))

        driver.get(f"{boutique.shop_url}/product/{WATCH}")
        driver.find_element(By.ID, "add-to-cart").click()
        wait.until(ec.url_matches(r"/cart$"))
        driver.find_element(By.ID, "place-order").click()
        order_id = driver.find_element(By.ID, "order-id").text
        assert UUID.fullmatch(order_id)

        driver.find_element(By.ID, "follow-order").click()
        wait.until(ec.url_matches(rf"/orders/{order_id}$"))
        assert driver.find_element(By.ID, "order-status").text == "Shipped"
        steps = driver.find_elements(By.CSS_SELECTOR, "#timeline li.step")
        assert steps[-1].find_element(By.CSS_SELECTOR, ".to").text == "Shipped"
        first = steps[0].find_element(By.CSS_SELECTOR, ".move").text
        assert "→" not in first  # where the order began: no status before it
        assert all("→" in step.find_element(By.CSS_SELECTOR, ".move").text for step in steps[1:])
        for step in steps:
            shown = step.find_element(By.TAG_NAME, "time").text
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", shown), shown
            link = step.find_element(By.CSS_SELECTOR, "a.trace-link")
            assert link.is_displayed() and link.text == "See its trace"
        assert driver.find_element(By.ID, "cancel-order").is_displayed()
        driver.save_screenshot(str(shots / "shop-order-timeline.png"))

        driver.find_element(By.ID, "orders-link").click()
        wait.until(ec.presence_of_element_located((By.ID, "order-list")))
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-order-id="{order_id}"]')
        assert "Shipped" in row.text
        driver.save_screenshot(str(shots / "shop-orders.png"))

        driver.back()
        wait.until(ec.url_matches(rf"/orders/{order_id}$"))
        step = driver.find_elements(By.CSS_SELECTOR, "#timeline li.step")[-1]
        trace_id = step.get_attribute("data-trace-id")
        # the link opens a new tab; the test follows it in this one
        driver.get(step.find_element(By.CSS_SELECTOR, "a.trace-link").get_attribute("href"))

        def shown_trace(driver: WebDriver) -> bool:  # spans reach the viewer in a moment
            if driver.find_elements(By.ID, "trace-id"):
                return True
            driver.refresh()
            return False

        WebDriverWait(driver, 20, poll_frequency=0.3).until(shown_trace)
        assert driver.find_element(By.ID, "trace-id").text == trace_id
        driver.save_screenshot(str(shots / "shop-order-trace.png"))
