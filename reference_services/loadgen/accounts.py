"""A visitor with an account: signs up, logs in, shops, checks out, follows and cancels orders."""

from __future__ import annotations

import ipaddress
import itertools
import random
import re
import time
import uuid
from collections.abc import Mapping

from locust import HttpUser, between, task
from locust.clients import ResponseContextManager

from reference_services.loadgen.visitor import PRODUCTS, checkout_form, retry_like_a_browser

PASSWORD = "loadgen password 1"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ORDER_ID = re.compile(r'id="order-id">([^<]+)<')
CANCEL_WITHIN_S = 10.0
"""Only orders this fresh are cancelled: well before the courier picks them up
(``SHIPPING_PICKUP_DELAY_S``, 30 s by default), so a cancel is never too late."""

# RFC 2544's benchmarking network: one address per visitor, so that the shop's
# per-visitor limits (failed logins, registrations) see each visitor on its own
_BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")
_addresses = itertools.count(1)


def next_address() -> str:
    """A visitor address of the benchmarking network no other visitor of this run has."""
    return str(_BENCHMARK_NET[next(_addresses) % (_BENCHMARK_NET.num_addresses - 2) + 1])


class AccountVisitor(HttpUser):
    """Signs up on arrival, then picks by weight: view a product (10), view the cart (3),
    add to cart (3), the order list (2), an order's page (2), log out and in again (2),
    check out (1), cancel an order placed within the last seconds (1). Every signed-in
    POST carries the session's CSRF token; a different address per visitor
    (``X-Forwarded-For``, which the shop believes from the load generator's host)."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        retry_like_a_browser(self.client)
        self.client.headers["X-Forwarded-For"] = next_address()
        self.email = f"loadgen-{uuid.uuid4().hex[:16]}@example.com"
        self.csrf = ""
        self.orders: list[tuple[str, float]] = []  # (order id, placed at), the newest last
        self.cancelled: set[str] = set()
        self.client.get("/", name="home")
        self.client.get("/signup", name="sign up page")
        form = {"email": self.email, "name": "Load Generator", "password": PASSWORD}
        self._post_redirect("/signup", form, "sign up", expected=302)
        self._read_csrf()

    def _read_csrf(self) -> None:
        """The CSRF token of the session just signed in, from a page's forms."""
        with self.client.get("/account", name="account", catch_response=True) as response:
            found = CSRF.search(response.text or "")
            if found is None:
                response.failure("the account page has no CSRF token: not signed in?")
                return
            self.csrf = found.group(1)

    @task(10)
    def browse_product(self) -> None:
        self.client.get(f"/product/{random.choice(PRODUCTS)}", name="product")

    @task(3)
    def view_cart(self) -> None:
        self.client.get("/cart", name="cart")

    @task(3)
    def add_to_cart(self) -> None:
        product = random.choice(PRODUCTS)
        self.client.get(f"/product/{product}", name="product")
        form = {"product_id": product, "quantity": random.randint(1, 3)}
        self._post_redirect("/cart", form, "add to cart")

    @task(2)
    def list_orders(self) -> None:
        self.client.get("/orders", name="orders")

    @task(2)
    def view_order(self) -> None:
        if self.orders:
            order_id, _ = random.choice(self.orders)
            self.client.get(f"/orders/{order_id}", name="order")

    @task(1)
    def checkout(self) -> None:
        self.add_to_cart()
        with self._post("/cart/checkout", checkout_form(self.email), "checkout") as response:
            found = ORDER_ID.search(response.text or "") if response.status_code == 200 else None
            if found is None:
                response.failure(f"expected the order page, got {response.status_code}")
                return
            self.orders.append((found.group(1), time.monotonic()))

    @task(1)
    def cancel(self) -> None:
        fresh = [
            order_id
            for order_id, placed in self.orders
            if time.monotonic() - placed < CANCEL_WITHIN_S and order_id not in self.cancelled
        ]
        if fresh:
            order_id = fresh[-1]
            self._post_redirect(f"/orders/{order_id}/cancel", {}, "cancel", expected=303)
            self.cancelled.add(order_id)

    @task(2)
    def log_in_again(self) -> None:
        self._post_redirect_get("/logout", "log out")
        self.csrf = ""
        self.client.get("/login", name="log in page")
        form = {"email": self.email, "password": PASSWORD}
        self._post_redirect("/login", form, "log in", expected=302)
        self._read_csrf()  # a new token: a new CSRF token

    def _post(self, path: str, data: Mapping[str, object], name: str) -> ResponseContextManager:
        """A signed-in POST with the session's CSRF token, its response to check."""
        form = {**data, "csrf_token": self.csrf} if self.csrf else data
        return self.client.post(
            path, data=form, name=name, allow_redirects=False, catch_response=True
        )

    def _post_redirect(
        self, path: str, data: Mapping[str, object], name: str, expected: int = 302
    ) -> None:
        with self._post(path, data, name) as response:
            if response.status_code != expected:
                response.failure(f"expected {expected}, got {response.status_code}")

    def _post_redirect_get(self, path: str, name: str) -> None:
        with self.client.get(
            path, name=name, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code != 302:
                response.failure(f"expected 302, got {response.status_code}")
