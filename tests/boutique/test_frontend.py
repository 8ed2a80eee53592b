"""The web shop's HTTP contract, through real HTTP to the running boutique.

The whole boutique is started once for the module by the launcher (every
service a child process on free ports, telemetry exporters off); each test
is a visitor with its own cookie jar. A real headless Chromium browses at
the end and saves the screenshots under docs/images/.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reference_services.launcher import Boutique
from tests.boutique.shop import MUG, ORDER_FORM, SUNGLASSES
from tests.browser import chromium, screenshot_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def boutique() -> Iterator[Boutique]:
    data = Path(tempfile.mkdtemp(prefix="shop-"))
    try:
        with Boutique(data, base_port=0, collector=False) as running:
            yield running
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def visitor(boutique: Boutique) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=boutique.shop_url, timeout=20.0) as client:
        yield client


def cart_lines(page: str) -> dict[str, int]:
    """product id -> quantity of the cart page's table."""
    rows = re.findall(r'<tr data-product-id="(\w+)">.*?<td>(\d+)</td>', page, re.DOTALL)
    return {product: int(quantity) for product, quantity in rows}


def add(visitor: httpx.Client, product: str, quantity: int | str) -> httpx.Response:
    return visitor.post("/cart", data={"product_id": product, "quantity": str(quantity)})


# --- pages -----------------------------------------------------------------------------


def test_home_lists_the_catalog_and_mints_a_48h_session(visitor: httpx.Client) -> None:
    response = visitor.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert len(re.findall(r'class="card" href="/product/', page)) == 9
    assert "Sunglasses" in page and "$19.99" in page and "$5.49" in page
    cookie = response.headers["set-cookie"]
    session = visitor.cookies["shop_session-id"]
    assert uuid.UUID(session) and "Max-Age=172800" in cookie
    assert f'<code id="session-id">{session}</code>' in page
    request_id = response.headers["x-request-id"]
    assert f'<code id="request-id">{request_id}</code>' in page
    again = visitor.get("/")  # the session is kept, a new request id shown
    assert "set-cookie" not in again.headers
    assert again.headers["x-request-id"] != request_id
    for code in ("EUR", "USD", "JPY", "GBP", "TRY", "CAD"):
        assert f'<option value="{code}"' in page


def test_a_caller_request_id_is_kept_when_short_and_plain(boutique: Boutique) -> None:
    with httpx.Client(base_url=boutique.shop_url) as client:
        kept = client.get("/", headers={"X-Request-ID": "probe-42.a:b"})
        odd = client.get("/nowhere", headers={"X-Request-ID": "x" * 5000})
        spaced = client.get("/", headers={"X-Request-ID": "<b>hi</b>"})
    assert kept.headers["x-request-id"] == "probe-42.a:b"
    assert '<code id="request-id">probe-42.a:b</code>' in kept.text
    for response in (odd, spaced):
        minted = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", minted), minted
        assert f'<code id="request-id">{minted}</code>' in response.text
    assert "x" * 40 not in odd.text and len(odd.content) < 10_000


def test_head_answers_without_a_body(visitor: httpx.Client) -> None:
    for path in ("/", f"/product/{MUG}", "/cart"):
        response = visitor.head(path)
        assert response.status_code == 200 and response.content == b""


def test_product_page_has_form_recommendations_and_an_ad(visitor: httpx.Client) -> None:
    page = visitor.get(f"/product/{SUNGLASSES}").text
    assert "<h1>Sunglasses</h1>" in page and "$19.99" in page
    assert 'action="/cart"' in page and f'name="product_id" value="{SUNGLASSES}"' in page
    recommended = re.findall(r'<section class="recommended">(.*?)</section>', page, re.DOTALL)
    assert recommended
    links = re.findall(r'href="/product/(\w+)"', recommended[0])
    assert 1 <= len(links) <= 4 and SUNGLASSES not in links
    assert re.search(r'<aside class="ad"><span>Ad</span> <a href="/product/\w+">', page)


def test_unknown_product_is_a_404_page_in_plain_words(visitor: httpx.Client) -> None:
    response = visitor.get("/product/NOSUCHTHING")
    assert response.status_code == 404
    assert '<p class="status" id="status">404</p>' in response.text
    assert "Nothing was found while reading product NOSUCHTHING." in response.text
    assert "no product with id &#39;NOSUCHTHING&#39;" in response.text  # the catalog's reason
    assert "NOT_FOUND" not in response.text  # no gRPC internals


def test_unknown_page_and_wrong_method(visitor: httpx.Client) -> None:
    missing = visitor.get("/nowhere")
    assert missing.status_code == 404 and "no such page" in missing.text
    wrong = visitor.put("/cart")
    assert wrong.status_code == 405 and "PUT is not allowed" in wrong.text


def test_add_to_cart_redirects_and_cart_totals_add_up(visitor: httpx.Client) -> None:
    response = add(visitor, SUNGLASSES, 2)
    assert response.status_code == 302 and response.headers["location"] == "/cart"
    add(visitor, MUG, 1)
    add(visitor, MUG, 3)  # same product: quantities add
    page = visitor.get("/cart").text
    assert cart_lines(page) == {SUNGLASSES: 2, MUG: 4}
    assert "$39.98" in page and "$35.96" in page  # line totals
    assert '<td class="num" id="shipping">$8.99</td>' in page
    assert '<td class="num" id="total">$84.93</td>' in page  # 39.98 + 35.96 + 8.99
    assert '<span class="badge" id="cart-badge">6</span>' in visitor.get("/").text
    empty = visitor.post("/cart/empty")
    assert empty.status_code == 302 and empty.headers["location"] == "/"
    assert cart_lines(visitor.get("/cart").text) == {}


@pytest.mark.parametrize(
    ("form", "field", "problem"),
    [
        ({"product_id": SUNGLASSES, "quantity": "0"}, "quantity", "between 1 and 10, got 0"),
        ({"product_id": SUNGLASSES, "quantity": "11"}, "quantity", "between 1 and 10, got 11"),
        ({"product_id": SUNGLASSES, "quantity": "two"}, "quantity", "whole number"),
        ({"product_id": SUNGLASSES}, "quantity", "is required"),
        ({"quantity": "1"}, "product_id", "is required"),
        ({"product_id": "NOSUCHTHING", "quantity": "1"}, "product_id", "no product has the id"),
    ],
)
def test_bad_add_to_cart_is_a_400_naming_the_field(
    visitor: httpx.Client, form: dict[str, str], field: str, problem: str
) -> None:
    add(visitor, MUG, 1)
    response = visitor.post("/cart", data=form)
    assert response.status_code == 400
    assert re.search(rf"<li>{field}: [^<]*{re.escape(problem)}", response.text), response.text
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}  # nothing changed


def test_set_currency_converts_prices_and_returns_to_the_referer(visitor: httpx.Client) -> None:
    back = f"{visitor.base_url}/product/{SUNGLASSES}"
    response = visitor.post(
        "/setCurrency", data={"currency_code": "EUR"}, headers={"referer": back}
    )
    assert response.status_code == 302 and response.headers["location"] == f"/product/{SUNGLASSES}"
    assert "shop_currency=EUR" in response.headers["set-cookie"]
    assert "Max-Age=172800" in response.headers["set-cookie"]
    assert "€17.68" in visitor.get(f"/product/{SUNGLASSES}").text  # 19.99 / 1.1305
    visitor.post("/setCurrency", data={"currency_code": "JPY"})
    assert "¥2235.06" in visitor.get("/").text  # 19.99 / 1.1305 * 126.40
    elsewhere = visitor.post(
        "/setCurrency", data={"currency_code": "GBP"}, headers={"referer": "http://evil.test/x"}
    )
    assert elsewhere.headers["location"] == "/"
    assert "£15.20" in visitor.get("/").text  # 19.99 / 1.1305 * 0.8597: the cookie was set


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("XYZ", "XYZ is not a supported currency"),
        ("eur", "three capital letters"),
        ("", "required"),
    ],
)
def test_bad_currency_is_a_400_and_keeps_the_cookie(
    visitor: httpx.Client, code: str, problem: str
) -> None:
    visitor.post("/setCurrency", data={"currency_code": "GBP"})
    response = visitor.post("/setCurrency", data={"currency_code": code})
    assert response.status_code == 400
    assert "<li>currency_code: " in response.text and problem in response.text
    assert "set-cookie" not in response.headers
    assert visitor.cookies["shop_currency"] == "GBP"


def test_a_forged_currency_cookie_is_refused_by_the_currency_service(
    boutique: Boutique,
) -> None:
    with httpx.Client(base_url=boutique.shop_url, cookies={"shop_currency": "ZZZ"}) as forged:
        response = forged.get("/")
    assert response.status_code == 422
    assert "converting USD to ZZZ" in response.text and "INVALID_ARGUMENT" not in response.text


# --- checkout --------------------------------------------------------------------------


def test_checkout_places_the_order_and_empties_the_cart(visitor: httpx.Client) -> None:
    add(visitor, SUNGLASSES, 3)
    response = visitor.post("/cart/checkout", data=ORDER_FORM)
    assert response.status_code == 200, response.text
    page = response.text
    order_id = re.search(r'<dd id="order-id">([^<]+)</dd>', page)
    tracking = re.search(r'<dd id="tracking-id">([A-Z]{2}-\d{5}-\d{9})</dd>', page)
    assert order_id and uuid.UUID(order_id.group(1)) and tracking
    assert '<dd id="total-paid">$68.96</dd>' in page  # 3 x 19.99 + 8.99
    assert "Sunglasses" in page
    assert cart_lines(visitor.get("/cart").text) == {}


def test_bad_checkout_form_is_a_400_listing_each_field(visitor: httpx.Client) -> None:
    add(visitor, MUG, 2)
    bad = {
        **ORDER_FORM,
        "email": "not-an-email",
        "zip_code": "abc",
        "city": "",
        "credit_card_number": "12ab",
        "credit_card_expiration_month": "13",
        "credit_card_cvv": "",
    }
    response = visitor.post("/cart/checkout", data=bad)
    assert response.status_code == 400
    listed = re.findall(r"<li>(\w+): ", response.text)
    assert listed == [
        "email",
        "zip_code",
        "city",
        "credit_card_number",
        "credit_card_expiration_month",
        "credit_card_cvv",
    ]
    assert cart_lines(visitor.get("/cart").text) == {MUG: 2}


MEGABYTE = "x" * 1_000_000


def assert_refused(response: httpx.Response, status: int, field: str, problem: str) -> None:
    """A small error page naming ``field`` with ``problem``, echoing no long value."""
    assert response.status_code == status, response.text[:500]
    assert re.search(rf"<li>{re.escape(field)}: [^<]*{re.escape(problem)}", response.text), (
        response.text[:2000]
    )
    assert len(response.content) < 10_000 and "x" * 40 not in response.text


@pytest.mark.parametrize(
    ("form", "field", "problem"),
    [
        ({"product_id": MEGABYTE, "quantity": "1"}, "product_id", "is too long"),
        ({"quantity": "1", "product_id": "x" * 65}, "product_id", "longer than 64 characters"),
        ({"product_id": "MUG\x00", "quantity": "1"}, "product_id", "control characters"),
        ({"product_id": MUG, "quantity": "\u0661"}, "quantity", "ASCII digits"),  # Arabic-Indic 1
        ({"product_id": MUG, "quantity": "1_0"}, "quantity", "ASCII digits"),
        ({"product_id": MUG, "quantity": "1" * 100}, "quantity", "ASCII digits"),
    ],
    ids=["1MB-id", "long-id", "control-char", "arabic-indic-digit", "underscore", "long-number"],
)
def test_oversized_or_odd_cart_fields_are_400s_and_change_nothing(
    visitor: httpx.Client, form: dict[str, str], field: str, problem: str
) -> None:
    add(visitor, MUG, 1)
    assert_refused(visitor.post("/cart", data=form), 400, field, problem)
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}


def test_a_form_of_100000_fields_is_a_400(visitor: httpx.Client) -> None:
    add(visitor, MUG, 1)
    fields = "&".join(f"f{i}=1" for i in range(100_000))
    body = f"product_id={SUNGLASSES}&quantity=1&{fields}"
    response = visitor.post(
        "/cart", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_refused(response, 400, "form", "more than 32 fields")
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}


def test_a_form_that_is_not_url_encoded_is_a_415(visitor: httpx.Client) -> None:
    add(visitor, MUG, 1)
    response = visitor.post("/cart", files={"product_id": (None, SUNGLASSES), "quantity": "1"})
    assert_refused(response, 415, "form", "application/x-www-form-urlencoded")
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("email", MEGABYTE, "is too long"),
        ("email", "a@b.c" + "x" * 300, "longer than 254 characters"),
        ("city", "x" * 300, "longer than 256 characters"),
        ("credit_card_cvv", "\u0661\u0662\u0663", "ASCII digits"),
        ("credit_card_number", "4" * 40, "longer than 32 characters"),
    ],
)
def test_oversized_or_odd_checkout_fields_are_400s_and_keep_the_cart(
    visitor: httpx.Client, field: str, value: str, problem: str
) -> None:
    add(visitor, MUG, 1)
    response = visitor.post("/cart/checkout", data={**ORDER_FORM, field: value})
    assert_refused(response, 400, field, problem)
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}


def test_oversized_currency_is_a_400_and_keeps_the_cookie(visitor: httpx.Client) -> None:
    visitor.post("/setCurrency", data={"currency_code": "GBP"})
    response = visitor.post("/setCurrency", data={"currency_code": MEGABYTE})
    assert_refused(response, 400, "currency_code", "is too long")
    assert visitor.cookies["shop_currency"] == "GBP"


@pytest.mark.parametrize(
    ("product", "problem"),
    [("x" * 50_000, "longer than 64 characters"), ("%C3%A9t%C3%A9", "must be ASCII")],
)
def test_a_bad_product_path_is_a_400_naming_the_product_id(
    visitor: httpx.Client, product: str, problem: str
) -> None:
    assert_refused(visitor.get(f"/product/{product}"), 400, "product id", problem)


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ({"credit_card_number": "4432801561520455"}, "not valid"),  # Luhn fails
        ({"credit_card_expiration_year": "2020"}, "expired"),
        ({"credit_card_number": "378282246310005"}, "not accepted"),  # American Express
    ],
)
def test_declined_payment_shows_the_reason_and_keeps_the_cart(
    visitor: httpx.Client, card: dict[str, str], reason: str
) -> None:
    add(visitor, MUG, 1)
    response = visitor.post("/cart/checkout", data={**ORDER_FORM, **card})
    assert response.status_code == 422
    assert "<h1>Payment declined</h1>" in response.text
    assert "placing the order" in response.text
    assert reason in response.text.lower() and "INVALID_ARGUMENT" not in response.text
    assert "4432801561520455" not in response.text
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}


def test_checkout_of_an_empty_cart_is_refused(visitor: httpx.Client) -> None:
    response = visitor.post("/cart/checkout", data=ORDER_FORM)
    assert response.status_code == 409
    assert "is empty" in response.text and "FAILED_PRECONDITION" not in response.text


# --- cookies, probes, health, static -----------------------------------------------------


def test_logout_expires_both_cookies(visitor: httpx.Client) -> None:
    visitor.post("/setCurrency", data={"currency_code": "EUR"})
    response = visitor.get("/logout")
    assert response.status_code == 302 and response.headers["location"] == "/"
    expired = response.headers.get_list("set-cookie")
    assert any(c.startswith('shop_session-id=""') and "Max-Age=0" in c for c in expired)
    assert any(c.startswith('shop_currency=""') and "Max-Age=0" in c for c in expired)


@pytest.mark.parametrize("probe", ["x-readiness-probe", "x-liveness-probe"])
def test_probes_never_mint_a_session(boutique: Boutique, probe: str) -> None:
    cookies = {"shop_session-id": probe}
    with httpx.Client(base_url=boutique.shop_url, cookies=cookies) as client:
        for path in ("/_healthz", "/"):
            response = client.get(path)
            assert response.status_code == 200
            assert "set-cookie" not in response.headers
        assert f'<code id="session-id">{probe}</code>' in response.text


def test_healthz_is_plain_ok_for_any_method(visitor: httpx.Client) -> None:
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
        response = visitor.request(method, "/_healthz")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        if method != "HEAD":
            assert response.text == "ok"


def test_static_files_are_served_locally(visitor: httpx.Client) -> None:
    page = visitor.get("/").text
    for url in ["/static/style.css", *re.findall(r'<img src="(/static/[^"]+)"', page)]:
        response = visitor.get(url)
        assert response.status_code == 200, url
    assert "http://" not in page.replace(str(visitor.base_url), "").split("<footer")[0]
    assert visitor.get("/static/img/products/mug.svg").headers["content-type"] == "image/svg+xml"


def test_frontend_admin_port_reports_its_dependencies(boutique: Boutique) -> None:
    admin = boutique.processes["frontend"].admin_url
    response = httpx.get(f"{admin}/healthz", timeout=10)
    assert response.status_code == 200
    names = (
        "productcatalog",
        "currency",
        "cart",
        "recommendation",
        "shipping",
        "checkout",
        "ad",
        "user",
    )
    assert response.json()["status"] == dict.fromkeys(names, "OK")
    assert httpx.get(f"{admin}/livez", timeout=10).status_code == 200


def business_counts(boutique: Boutique) -> dict[str, float]:
    """The shop's conversion counters on its admin ``/metrics`` (Prometheus text)."""
    text = httpx.get(f"{boutique.processes['frontend'].admin_url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("boutique_frontend_"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sorted(
                        (k, v) for k, v in sample.labels.items() if not k.startswith("otel_")
                    )
                    key = sample.name + "".join(f",{k}={v}" for k, v in labels)
                    counts[key] = sample.value
    return counts


def test_conversions_and_the_visits_they_are_measured_against(boutique: Boutique) -> None:
    before = business_counts(boutique)
    probe = {"shop_session-id": "x-readiness-probe"}
    with httpx.Client(base_url=boutique.shop_url, cookies=probe) as prober:
        assert prober.get("/").status_code == 200  # a probe is not a visit
    with httpx.Client(base_url=boutique.shop_url) as anonymous:
        assert anonymous.get("/_healthz").status_code == 200  # nor is a health check
        assert anonymous.get("/static/style.css").status_code == 200  # nor a static file
    with httpx.Client(base_url=boutique.shop_url, timeout=20.0) as visitor:
        visitor.get("/")  # a session starts
        add(visitor, MUG, 2)
        visitor.post("/setCurrency", data={"currency_code": "EUR"})
        visitor.get("/cart")
        placed = visitor.post("/cart/checkout", data=ORDER_FORM)
        assert placed.status_code == 200, placed.text
        add(visitor, MUG, 1)
        declined = visitor.post("/cart/checkout", data={**ORDER_FORM, "credit_card_cvv": ""})
        assert declined.status_code == 400  # not a conversion
    after = business_counts(boutique)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew("boutique_frontend_sessions_total") == 1
    assert grew("boutique_frontend_cart_views_total") == 1
    assert grew("boutique_frontend_conversions_total,currency=EUR") == 1
    assert grew("boutique_frontend_conversions_total,currency=USD") == 0


# --- a real browser ----------------------------------------------------------------------


# The words of an element's text that the browser broke across two lines.
SPLIT_WORDS = """
const text = document.getElementById(arguments[0]).firstChild;
return [...text.data.matchAll(/\\S+/g)].filter((word) => {
  const range = document.createRange();
  range.setStart(text, word.index);
  range.setEnd(text, word.index + word[0].length);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size > 1;
}).map((word) => word[0]);
"""


@pytest.mark.browser
def test_a_real_browser_shops_and_checks_out(boutique: Boutique) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    shots = screenshot_dir()
    with chromium() as driver:
        driver.implicitly_wait(10)
        wait = WebDriverWait(driver, 10)
        driver.get(boutique.shop_url)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#products .card")) == 9
        driver.save_screenshot(str(shots / "shop-home.png"))

        driver.find_element(By.CSS_SELECTOR, f'a[data-product-id="{SUNGLASSES}"]').click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Sunglasses"))
        Select(driver.find_element(By.ID, "quantity")).select_by_value("2")
        driver.save_screenshot(str(shots / "shop-product.png"))
        driver.find_element(By.ID, "add-to-cart").click()

        wait.until(ec.url_matches(r"/cart$"))
        assert driver.find_element(By.ID, "cart-badge").text == "2"
        assert driver.find_element(By.ID, "total").text == "$48.97"
        Select(driver.find_element(By.ID, "currency_code")).select_by_value("EUR")  # submits
        wait.until(ec.text_to_be_present_in_element((By.ID, "total"), "€"))
        assert driver.current_url.endswith("/cart")
        driver.save_screenshot(str(shots / "shop-cart.png"))

        driver.find_element(By.ID, "place-order").click()
        confirmation = driver.find_element(By.ID, "confirmation")
        assert "your order is placed" in confirmation.text
        assert re.fullmatch(r"[A-Z]{2}-\d{5}-\d{9}", driver.find_element(By.ID, "tracking-id").text)
        assert driver.find_element(By.ID, "total-paid").text.startswith("€")
        assert driver.execute_script(SPLIT_WORDS, "ship-to") == []  # no "United St/ates"
        driver.save_screenshot(str(shots / "shop-order.png"))

        driver.get(f"{boutique.shop_url}/product/NOSUCHTHING")
        assert driver.find_element(By.ID, "status").text == "404"
        driver.save_screenshot(str(shots / "shop-error.png"))
