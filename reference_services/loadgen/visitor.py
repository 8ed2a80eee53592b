"""A shop visitor: the home page first, then a weighted mix of what people do."""

from __future__ import annotations

import datetime
import random

from locust import HttpUser, between, task
from locust.clients import HttpSession
from urllib3.util.retry import Retry

PRODUCTS = (
    "OLJCESPC7Z",
    "66VCHSJNUP",
    "1YMWWN1N4O",
    "L9ECAV7KIM",
    "2ZYFJ3GM2N",
    "0PUK6V6EV0",
    "LS4PSXUNUM",
    "9SIQT8TOJO",
    "6E92ZMYYFZ",
)
CURRENCIES = ("EUR", "USD", "JPY", "GBP", "TRY", "CAD")


def visa_number() -> str:
    """A fresh 16-digit Visa number with a valid Luhn check digit."""
    digits = [4, *(random.randrange(10) for _ in range(14))]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def retry_like_a_browser(client: HttpSession) -> None:
    """Send a GET again, once, when the connection it went out on closes without an
    answer, as browsers do: the shop may close an idle keep-alive connection just as
    it is reused. Never a POST (it may have been done), never an answer (a 5xx counts)."""
    once = Retry(total=1, connect=1, read=1, status=0, other=0, redirect=False)
    for adapter in client.adapters.values():
        adapter.max_retries = once  # type: ignore[attr-defined]


def checkout_form(email: str) -> dict[str, str]:
    """The checkout form: a fixed address, a fresh Visa number expiring next year."""
    next_year = datetime.date.today().year + 1
    return {
        "email": email,
        "street_address": "1600 Amphitheatre Parkway",
        "zip_code": "94043",
        "city": "Mountain View",
        "state": "CA",
        "country": "United States",
        "credit_card_number": visa_number(),
        "credit_card_expiration_month": str(random.randint(1, 12)),
        "credit_card_expiration_year": str(next_year),
        "credit_card_cvv": str(random.randint(100, 999)),
    }


class Visitor(HttpUser):
    """Browse (10), view the cart (3), set the currency (2), add to cart (2), home (1),
    check out (1). Request names are the page names of the summary."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        retry_like_a_browser(self.client)
        self.home()

    @task(1)
    def home(self) -> None:
        self.client.get("/", name="home")

    @task(10)
    def browse_product(self) -> None:
        self.client.get(f"/product/{random.choice(PRODUCTS)}", name="product")

    @task(3)
    def view_cart(self) -> None:
        self.client.get("/cart", name="cart")

    @task(2)
    def set_currency(self) -> None:
        self._post_redirect(
            "/setCurrency", {"currency_code": random.choice(CURRENCIES)}, "set currency"
        )

    @task(2)
    def add_to_cart(self) -> None:
        product = random.choice(PRODUCTS)
        self.client.get(f"/product/{product}", name="product")
        self._post_redirect(
            "/cart", {"product_id": product, "quantity": random.randint(1, 10)}, "add to cart"
        )

    @task(1)
    def checkout(self) -> None:
        self.add_to_cart()
        form = checkout_form("someone@example.com")
        self.client.post("/cart/checkout", data=form, name="checkout")

    def _post_redirect(self, path: str, data: dict[str, object], name: str) -> None:
        with self.client.post(
            path, data=data, name=name, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code != 302:
                response.failure(f"expected 302, got {response.status_code}")
