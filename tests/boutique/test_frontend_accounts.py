"""The web shop's accounts, through real HTTP to the whole boutique (the user service too).

The launcher starts every service as a child process; each test is a visitor
with its own cookie jar and, for the login lockout, its own client address
(uvicorn takes ``X-Forwarded-For`` from loopback, as from a load balancer, and
the shop forwards it to the user service). A headless Chromium signs up, logs
out, logs in and reads its account at the end.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference_services.launcher import Boutique
from tests.boutique.shop import MUG, ORDER_FORM, SUNGLASSES
from tests.browser import chromium, screenshot_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PASSWORD = "correct horse battery"
TOKEN = "shop_token"


@pytest.fixture(scope="module")
def boutique() -> Iterator[Boutique]:
    data = Path(tempfile.mkdtemp(prefix="shop-accounts-"))
    try:
        # this module signs up more visitors than one address may register in an hour
        # (the limit has its own tests: test_user.py, test_loadgen.py)
        unlimited = {"user": {"USER_REGISTRATIONS_PER_HOUR": "0"}}
        with Boutique(data, base_port=0, collector=False, service_env=unlimited) as running:
            yield running
    finally:
        shutil.rmtree(data, ignore_errors=True)


def client_address() -> str:
    """A documentation address (RFC 5737) no other test logs in from."""
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}"


@pytest.fixture
def visitor(boutique: Boutique) -> Iterator[httpx.Client]:
    headers = {"X-Forwarded-For": client_address()}
    with httpx.Client(base_url=boutique.shop_url, timeout=20.0, headers=headers) as client:
        yield client


def new_email() -> str:
    return f"shopper-{uuid.uuid4().hex[:10]}@example.com"


def signup(visitor: httpx.Client, email: str, name: str = "Ada", **extra: str) -> httpx.Response:
    return visitor.post(
        "/signup", data={"email": email, "name": name, "password": PASSWORD, **extra}
    )


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def cart_lines(page: str) -> dict[str, int]:
    rows = re.findall(r'<tr data-product-id="(\w+)">.*?<td>(\d+)</td>', page, re.DOTALL)
    return {product: int(quantity) for product, quantity in rows}


def signed_in_cookie(response: httpx.Response) -> str:
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(TOKEN + "="))


# --- sign up and log in ------------------------------------------------------------------


def test_signup_signs_in_with_an_httponly_lax_cookie(visitor: httpx.Client) -> None:
    assert visitor.get("/signup").status_code == 200
    email = new_email()
    response = signup(visitor, email, "Ada Lovelace")
    assert response.status_code == 302 and response.headers["location"] == "/"
    cookie = signed_in_cookie(response).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "max-age=900" in cookie
    assert "secure" not in cookie  # served over plain http: a Secure cookie would not come back
    home = visitor.get("/")
    assert "Signed in as" in home.text and "Ada Lovelace" in home.text
    assert visitor.get("/account").text.count(email) >= 1


def test_the_cookie_is_secure_behind_https(visitor: httpx.Client) -> None:
    email = new_email()
    assert signup(visitor, email).status_code == 302
    visitor.cookies.clear()
    https = visitor.post(
        "/login",
        data={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert https.status_code == 302
    assert "secure" in signed_in_cookie(https).lower()


@pytest.mark.parametrize(
    ("field", "form"),
    [
        ("email", {"email": "not-an-address", "name": "Ada", "password": PASSWORD}),
        ("email", {"name": "Ada", "password": PASSWORD}),
        ("name", {"email": "a@example.com", "name": "", "password": PASSWORD}),
        ("name", {"email": "a@example.com", "name": "x" * 129, "password": PASSWORD}),
        ("password", {"email": "a@example.com", "name": "Ada", "password": "short"}),
        ("password", {"email": "a@example.com", "name": "Ada", "password": "p" * 129}),
        ("email", {"email": "a" * 250 + "@example.com", "name": "Ada", "password": PASSWORD}),
    ],
)
def test_a_bad_signup_field_is_a_400_naming_it(
    visitor: httpx.Client, field: str, form: dict[str, str]
) -> None:
    response = visitor.post("/signup", data=form)
    assert response.status_code == 400
    assert f'data-field="{field}"' in response.text
    assert TOKEN not in response.headers.get("set-cookie", "")
    assert "p" * 40 not in response.text  # a password is never sent back
    assert "x" * 129 not in response.text  # a field is kept in the form, cut to its bound


def test_an_oversize_form_is_a_400(visitor: httpx.Client) -> None:
    response = visitor.post(
        "/signup", data={"email": "a@example.com", "name": "Ada", "password": "p" * 20_000}
    )
    assert response.status_code == 400
    assert "password" in response.text


def test_a_taken_email_is_a_409(visitor: httpx.Client) -> None:
    email = new_email()
    assert signup(visitor, email).status_code == 302
    visitor.get("/logout")
    again = signup(visitor, email.upper().replace("EXAMPLE.COM", "example.com"))
    assert again.status_code == 409
    assert 'data-field="email"' in again.text and "already registered" in again.text


def test_login_with_a_wrong_password_is_a_401_and_a_right_one_signs_in(
    visitor: httpx.Client,
) -> None:
    email = new_email()
    signup(visitor, email)
    visitor.get("/logout")
    visitor.cookies.clear()
    wrong = visitor.post("/login", data={"email": email, "password": "not the password"})
    assert wrong.status_code == 401 and "wrong e-mail or password" in wrong.text
    unknown = visitor.post("/login", data={"email": new_email(), "password": PASSWORD})
    assert unknown.status_code == 401
    missing = visitor.post("/login", data={"email": email})
    assert missing.status_code == 400 and 'data-field="password"' in missing.text
    right = visitor.post("/login", data={"email": email, "password": PASSWORD, "next": "/cart"})
    assert right.status_code == 302 and right.headers["location"] == "/cart"


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_login_goes_only_to_a_local_next_path(visitor: httpx.Client, target: str) -> None:
    email = new_email()
    signup(visitor, email)
    visitor.cookies.clear()
    response = visitor.post("/login", data={"email": email, "password": PASSWORD, "next": target})
    assert response.status_code == 302 and response.headers["location"] == "/"


def test_five_failures_lock_the_login_out_for_that_visitor_only(boutique: Boutique) -> None:
    email = new_email()
    mallory, alice = client_address(), client_address()
    while alice == mallory:
        alice = client_address()
    with httpx.Client(base_url=boutique.shop_url, timeout=20.0) as client:
        client.headers["X-Forwarded-For"] = alice
        signup(client, email)
        client.cookies.clear()
        other = new_email()
        signup(client, other)
        client.cookies.clear()
        client.headers["X-Forwarded-For"] = mallory
        for _ in range(5):
            bad = client.post("/login", data={"email": email, "password": "guess-guess"})
            assert bad.status_code == 401
        locked = client.post("/login", data={"email": email, "password": PASSWORD})
        assert locked.status_code == 429 and "try again in" in locked.text
        # the peer is locked too: another account from the same address
        peer_locked = client.post("/login", data={"email": other, "password": PASSWORD})
        assert peer_locked.status_code == 429
        # the shop forwards each visitor's address: another visitor is not locked out
        client.headers["X-Forwarded-For"] = alice
        fine = client.post("/login", data={"email": other, "password": PASSWORD})
        assert fine.status_code == 302


# --- the session ---------------------------------------------------------------------


def test_the_session_cart_becomes_the_users_at_sign_in(visitor: httpx.Client) -> None:
    email = new_email()
    signup(visitor, email)
    token = csrf(visitor.get("/").text)
    visitor.post("/cart", data={"product_id": MUG, "quantity": "1", "csrf_token": token})
    visitor.get("/logout")
    visitor.cookies.clear()
    visitor.post("/cart", data={"product_id": SUNGLASSES, "quantity": "2"})  # anonymous
    visitor.post("/cart", data={"product_id": MUG, "quantity": "3"})
    assert cart_lines(visitor.get("/cart").text) == {SUNGLASSES: 2, MUG: 3}
    session = visitor.cookies["shop_session-id"]
    assert visitor.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    assert cart_lines(visitor.get("/cart").text) == {MUG: 4, SUNGLASSES: 2}
    visitor.get("/logout")  # the session's own cart was emptied into the account's
    visitor.cookies.clear()
    visitor.cookies.set("shop_session-id", session)
    assert cart_lines(visitor.get("/cart").text) == {}


def test_a_signed_in_post_without_its_csrf_token_is_a_403(visitor: httpx.Client) -> None:
    signup(visitor, new_email())
    token = csrf(visitor.get("/").text)
    missing = visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
    assert missing.status_code == 403
    wrong = visitor.post(
        "/cart", data={"product_id": MUG, "quantity": "1", "csrf_token": token[:-2] + "xx"}
    )
    assert wrong.status_code == 403
    for path, form in [
        ("/account", {"name": "Mallory"}),
        ("/account/delete", {"confirm": "yes"}),
        ("/setCurrency", {"currency_code": "EUR"}),
        ("/cart/empty", {}),
    ]:
        assert visitor.post(path, data=form).status_code == 403, path
    assert cart_lines(visitor.get("/cart").text) == {}  # nothing changed
    assert "Mallory" not in visitor.get("/account").text
    right = visitor.post("/cart", data={"product_id": MUG, "quantity": "1", "csrf_token": token})
    assert right.status_code == 302
    assert cart_lines(visitor.get("/cart").text) == {MUG: 1}


def test_anonymous_posts_need_no_csrf_token(visitor: httpx.Client) -> None:
    assert visitor.post("/cart", data={"product_id": MUG, "quantity": "1"}).status_code == 302
    assert visitor.post("/setCurrency", data={"currency_code": "EUR"}).status_code == 302
    assert "csrf_token" not in visitor.get("/cart").text


def test_a_forged_or_expired_token_signs_out_and_drops_the_cookie(visitor: httpx.Client) -> None:
    signup(visitor, new_email())
    real = visitor.cookies[TOKEN]
    header, claims, _ = real.split(".")
    for forged in (f"{header}.{claims}.AAAA", "garbage", real[:-4] + "AAAA"):
        visitor.cookies.set(TOKEN, forged)
        page = visitor.get("/")
        assert page.status_code == 200 and "Signed in as" not in page.text
        dropped = signed_in_cookie(page)
        assert 'shop_token="";' in dropped or "Max-Age=0" in dropped
        # a POST is anonymous then: no CSRF token asked
        add = visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
        assert add.status_code == 302


def test_logout_drops_the_token_cookie(visitor: httpx.Client) -> None:
    signup(visitor, new_email())
    response = visitor.get("/logout")
    assert response.status_code == 302
    assert "Max-Age=0" in signed_in_cookie(response) or 'shop_token="";' in signed_in_cookie(
        response
    )
    assert "Signed in as" not in visitor.get("/").text


def test_the_user_id_is_in_the_shops_log_context_never_the_token(
    boutique: Boutique, visitor: httpx.Client
) -> None:
    signup(visitor, new_email())
    token = visitor.cookies[TOKEN]
    claims = token.split(".")[1]
    user_id = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]
    faults = f"{boutique.processes['cart'].admin_url}/faults"
    assert httpx.post(faults, params={"store_failure_rate": "1"}).status_code == 200
    try:
        failed = visitor.get("/cart")  # a 5xx: the shop writes its "page failed" error
    finally:
        assert httpx.post(faults, params={"store_failure_rate": "0"}).status_code == 200
    assert failed.status_code >= 500
    log = Path(boutique.processes["frontend"].log)
    deadline = time.monotonic() + 10
    while not (lines := [ln for ln in log.read_text().splitlines() if user_id in ln]):
        assert time.monotonic() < deadline, "no log line names the user"
        time.sleep(0.1)
    assert any("page failed" in line for line in lines)
    assert token not in log.read_text() and claims not in log.read_text()


# --- the account page ----------------------------------------------------------------


def test_the_account_page_asks_an_anonymous_visitor_to_log_in(visitor: httpx.Client) -> None:
    response = visitor.get("/account")
    assert response.status_code == 302
    assert response.headers["location"] == "/login?next=%2Faccount"
    assert visitor.post("/account", data={"name": "x"}).status_code == 302


def test_the_account_page_renames_and_lists_notifications(visitor: httpx.Client) -> None:
    email = new_email()
    signup(visitor, email, "Grace")
    page = visitor.get("/account")
    assert page.status_code == 200
    assert 'id="profile-name">Grace<' in page.text and email in page.text
    assert 'id="notifications"' in page.text
    token = csrf(page.text)
    bad = visitor.post("/account", data={"name": "", "csrf_token": token})
    assert bad.status_code == 400 and "name" in bad.text
    renamed = visitor.post("/account", data={"name": "Grace Hopper", "csrf_token": token})
    assert renamed.status_code == 302
    assert "Signed in as" in (home := visitor.get("/").text) and "Grace Hopper" in home


def test_a_signed_in_order_is_the_users_and_its_confirmation_is_in_the_history(
    visitor: httpx.Client,
) -> None:
    signup(visitor, new_email())
    token = csrf(visitor.get("/").text)
    visitor.post("/cart", data={"product_id": MUG, "quantity": "1", "csrf_token": token})
    placed = visitor.post("/cart/checkout", data={**ORDER_FORM, "csrf_token": token})
    assert placed.status_code == 200, placed.text
    order_id = re.search(r'id="order-id">([^<]+)<', placed.text)
    assert order_id is not None
    deadline = time.monotonic() + 20  # welcome and confirmation go through the event backbone
    templates = ('data-template="welcome"', 'data-template="order_confirmation"')
    page = visitor.get("/account").text
    while not all(t in page for t in templates):
        assert time.monotonic() < deadline, "no welcome or confirmation in the account's history"
        time.sleep(0.2)
        page = visitor.get("/account").text
    assert f'data-order-id="{order_id.group(1)}"' in page


def test_deleting_the_account_needs_a_confirmation(visitor: httpx.Client) -> None:
    email = new_email()
    signup(visitor, email)
    token = csrf(visitor.get("/account").text)
    unconfirmed = visitor.post("/account/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    assert visitor.get("/account").status_code == 200  # still there
    deleted = visitor.post("/account/delete", data={"confirm": "yes", "csrf_token": token})
    assert deleted.status_code == 302 and "Max-Age=0" in signed_in_cookie(deleted)
    visitor.cookies.clear()
    gone = visitor.post("/login", data={"email": email, "password": PASSWORD})
    assert gone.status_code == 401


# --- a real browser --------------------------------------------------------------------


@pytest.mark.browser
def test_a_real_browser_signs_up_logs_out_logs_in_and_reads_its_account(
    boutique: Boutique,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = screenshot_dir()
    email = new_email()
    with chromium() as driver:
        driver.implicitly_wait(10)
        wait = WebDriverWait(driver, 10)
        driver.get(f"{boutique.shop_url}/signup")
        form = driver.find_element(By.ID, "signup-form")
        form.find_element(By.NAME, "email").send_keys(email)
        form.find_element(By.NAME, "name").send_keys("Ada Lovelace")
        form.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.save_screenshot(str(shots / "shop-signup.png"))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "signed-in"), "Ada Lovelace"))
        token = driver.get_cookie(TOKEN)
        assert token is not None and token["httpOnly"] and token["sameSite"] == "Lax"

        driver.find_element(By.ID, "logout-link").click()
        wait.until(ec.presence_of_element_located((By.ID, "signed-out")))
        assert driver.get_cookie(TOKEN) is None

        driver.find_element(By.ID, "login-link").click()
        form = driver.find_element(By.ID, "login-form")
        form.find_element(By.NAME, "email").send_keys(email)
        form.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.save_screenshot(str(shots / "shop-login.png"))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "signed-in")))

        driver.get(f"{boutique.shop_url}/product/{SUNGLASSES}")  # an order, signed in
        driver.find_element(By.ID, "add-to-cart").click()
        wait.until(ec.url_matches(r"/cart$"))
        driver.find_element(By.ID, "place-order").click()
        order_id = driver.find_element(By.ID, "order-id").text

        driver.find_element(By.ID, "account-link").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "profile-email"), email))
        assert driver.find_element(By.ID, "profile-name").text == "Ada Lovelace"

        def confirmed(driver: WebDriver) -> bool:  # it comes through the event backbone
            if driver.find_elements(By.CSS_SELECTOR, f'tr[data-order-id="{order_id}"]'):
                return True
            driver.refresh()
            return False

        WebDriverWait(driver, 20, poll_frequency=0.3).until(confirmed)
        driver.save_screenshot(str(shots / "shop-account.png"))
