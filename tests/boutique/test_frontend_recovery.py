"""The shop serves again within a second of a downstream service coming back.

A gRPC channel waits between reconnection attempts with a back-off that grows
while the service is down (to two minutes by default); the boutique's channels
cap it, so neither the shop's own channels nor checkout's (a downstream hop
further) keep a visitor on a 503 page once the service is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from reference_services.common.runtime import GrpcService, Wiring
from reference_services.currency import service as currency
from reference_services.payment import service as payment
from tests.boutique.conftest import Boutique, shop_running
from tests.boutique.shop import MUG, ORDER_FORM

pytestmark = pytest.mark.timeout(60)

#: How long a service stays down: long enough for gRPC's default back-off
#: (1 s, then x1.6 per attempt: due 5.2 s and 9.3 s after the first failure) to have
#: grown well past the 1 s the shop is allowed.
OUTAGE = 6.0
BACK_WITHIN = 1.0


@pytest.fixture
async def visitor(boutique: Boutique) -> AsyncIterator[httpx.AsyncClient]:
    async with shop_running(boutique) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        yield c


async def until(
    request: Callable[[], Awaitable[httpx.Response]], status: int, timeout: float
) -> float:
    """Repeat ``request`` until it answers ``status``; the seconds that took."""
    started = time.monotonic()
    while True:
        response = await request()
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < timeout, f"still {response.status_code} after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


async def outage_and_return(
    boutique: Boutique,
    name: str,
    build: Callable[[], Awaitable[Wiring]],
    request: Callable[[], Awaitable[httpx.Response]],
) -> float:
    """Stop service ``name``, keep asking through the shop (503s) for :data:`OUTAGE`
    seconds, start it again on the same port; the seconds until ``request`` works."""
    down = boutique[name]
    await down.stop()
    await until(request, 503, timeout=10)
    outage_ends = time.monotonic() + OUTAGE
    while time.monotonic() < outage_ends:  # failing calls grow the channels' back-off
        assert (await request()).status_code == 503
        await asyncio.sleep(0.2)
    back = GrpcService(name, await build(), host="127.0.0.1", port=down.port, grace=1.0)
    await back.start()
    try:
        return await until(request, 200, timeout=30)
    finally:
        await back.stop()


async def test_the_shop_serves_within_a_second_of_a_service_it_calls(
    boutique: Boutique, visitor: httpx.AsyncClient
) -> None:
    async def home() -> httpx.Response:
        return await visitor.get("/")

    assert (await home()).status_code == 200
    took = await outage_and_return(boutique, "currency", currency.build, home)
    assert took < BACK_WITHIN, f"the shop served again {took:.2f} s after currency was back"


async def test_checkout_serves_within_a_second_of_a_service_it_calls(
    boutique: Boutique, visitor: httpx.AsyncClient, tmp_path: Path, nats_url: str
) -> None:
    async def place_order() -> httpx.Response:
        await visitor.post("/cart", data={"product_id": MUG, "quantity": "1"})
        return await visitor.post("/cart/checkout", data=ORDER_FORM)

    async def ledger() -> Wiring:  # the payment service back with its ledger, as it was
        assert boutique.stream is not None
        store = f"sqlite:///{tmp_path / 'payment.db'}"
        return await payment.build(payment.Config(store, nats_url, boutique.stream.name))

    assert (await place_order()).status_code == 200
    took = await outage_and_return(boutique, "payment", ledger, place_order)
    assert took < BACK_WITHIN, f"checkout worked again {took:.2f} s after payment was back"
