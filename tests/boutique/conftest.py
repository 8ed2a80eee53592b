"""Fixtures of the boutique tests: services on loopback, real stores, captured telemetry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc.aio
import pytest
import uvicorn
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import clue.grpc
from clue import telemetry
from reference_services.ad import service as ad
from reference_services.cart import service as cart
from reference_services.checkout import service as checkout
from reference_services.checkout.orders import OrderStore
from reference_services.common.database import SQLite
from reference_services.common.events import Broker, Stream
from reference_services.common.runtime import GrpcService, Wiring
from reference_services.currency import service as currency
from reference_services.email import service as email
from reference_services.frontend.app import create_app
from reference_services.frontend.clients import Addresses, Clients
from reference_services.notification import service as notification
from reference_services.payment import service as payment
from reference_services.productcatalog import service as productcatalog
from reference_services.recommendation import service as recommendation
from reference_services.shipping import service as shipping
from reference_services.user import service as user
from reference_services.user.keys import KeyRing
from tests.boutique.tokens import Issuer

S = TypeVar("S")
ADMIN_EMAIL = "admin@example.com"
"""The account registered with this e-mail in the boutique's user service is an admin."""

_ = (ad, cart, checkout, currency, email, payment, productcatalog, recommendation, shipping)


def unique(prefix: str = "t") -> str:
    """A name no other test run uses (table names, key prefixes, user ids)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def serving(name: str, wiring: Wiring) -> AsyncIterator[GrpcService]:
    """Serve ``wiring`` on free loopback ports (gRPC and admin) for the block."""
    service = GrpcService(name, wiring, host="127.0.0.1", grace=1.0)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@asynccontextmanager
async def stub_for(service: GrpcService, stub_class: Callable[[Any], S]) -> AsyncIterator[S]:
    """A traced client stub of ``service`` for the block."""
    channel = clue.grpc.async_insecure_channel(service.address)
    try:
        yield stub_class(channel)
    finally:
        await channel.close()


class Telemetry:
    """clue's telemetry sending every span and metric into memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()
        telemetry.configure(
            "boutique-tests",
            span_exporter=self.spans,
            metric_exporter=self.metrics,
            exporter="none",
            sampler=ALWAYS_ON,
        )

    def finished(self) -> list[ReadableSpan]:
        """Every span ended so far."""
        telemetry.force_flush()
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of metric ``name``."""
        data = self.metrics.get_metrics_data()
        return [
            (dict(point.attributes or {}), point)
            for rm in (data.resource_metrics if data else ())
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """clue.configure'd for the test with in-memory span and metric exporters."""
    captured = Telemetry()
    yield captured
    telemetry.shutdown()


@dataclass
class Boutique:
    """The eleven gRPC services running in this process on loopback, their events on a
    stream of their own; ``issuer`` signs tokens with the user service's keys."""

    services: dict[str, GrpcService] = field(default_factory=dict)
    orders: OrderStore | None = None
    stream: Stream | None = None
    issuer: Issuer | None = None

    def __getitem__(self, name: str) -> GrpcService:
        return self.services[name]

    def faults(self, name: str) -> Any:
        """The fault switches of service ``name``."""
        return self.services[name].wiring.faults


@asynccontextmanager
async def boutique_running(data: Path, nats_url: str) -> AsyncIterator[Boutique]:
    """Start every gRPC service in dependency order, their events on a new stream of the
    NATS server at ``nats_url``; stop them all and delete the stream afterwards."""
    shop = Boutique(stream=Stream(unique("BOUTIQUE").upper()))
    started: list[GrpcService] = []

    async def start(name: str, wiring: Wiring) -> GrpcService:
        service = GrpcService(name, wiring, host="127.0.0.1", grace=1.0)
        await service.start()
        started.append(service)
        shop.services[name] = service
        return service

    try:
        inventory = productcatalog.Config(
            database_url=f"sqlite:///{data / 'inventory.db'}",
            nats_url=nats_url,
            stream=shop.stream.name,
        )
        catalog = await start("productcatalog", await productcatalog.build(inventory))
        await start("currency", await currency.build())
        cart_config = cart.Config(f"sqlite:///{data / 'cart.db'}", catalog.address)
        await start("cart", await cart.build(cart_config))
        shipments = shipping.Config(
            f"sqlite:///{data / 'shipping.db'}", nats_url, stream=shop.stream.name
        )
        await start("shipping", await shipping.build(shipments))
        ledger = payment.Config(f"sqlite:///{data / 'payment.db'}", nats_url, shop.stream.name)
        await start("payment", await payment.build(ledger))
        await start("email", await email.build())
        await start("ad", await ad.build())
        await start(
            "recommendation",
            await recommendation.build(recommendation.Config(catalog.address)),
        )
        shop.orders = OrderStore(SQLite(data / "orders.db"))
        config = checkout.Config(
            cart_addr=shop["cart"].address,
            catalog_addr=catalog.address,
            currency_addr=shop["currency"].address,
            shipping_addr=shop["shipping"].address,
            payment_addr=shop["payment"].address,
            order_store=f"sqlite:///{data / 'orders.db'}",
            nats_url=nats_url,
            stream=shop.stream.name,
        )
        await start("checkout", await checkout.build(config, shop.orders))
        users = user.Config(
            f"sqlite:///{data / 'user.db'}",
            data / "user-keys",
            frozenset({ADMIN_EMAIL}),
            nats_url=nats_url,
            stream=shop.stream.name,
        )
        shop.issuer = Issuer(
            (await start("user", await user.build(users))).address,
            KeyRing.load(data / "user-keys"),
        )
        notifications = notification.Config(
            database_url=f"sqlite:///{data / 'notification.db'}",
            email_addr=shop["email"].address,
            nats_url=nats_url,
            stream=shop.stream.name,
            user_addr=shop.issuer.address,
            backoff=(0.05,),  # the default's 0.5 to 15 s between deliveries, shortened
        )
        await start("notification", await notification.build(notifications))
        yield shop
    finally:
        await asyncio.gather(*(service.stop() for service in started))
        broker = Broker(nats_url, shop.stream)
        try:
            await shop.stream.delete(await broker.jetstream())
        finally:
            await broker.close()


@pytest.fixture
async def boutique(tmp_path: Path, nats_url: str) -> AsyncIterator[Boutique]:
    """All eleven gRPC services in-process on loopback, stores in a temp directory."""
    async with boutique_running(tmp_path, nats_url) as shop:
        yield shop


@asynccontextmanager
async def shop_running(shop: Boutique) -> AsyncIterator[str]:
    """The web shop over ``shop``'s services, served by uvicorn on a free loopback port;
    yields its base URL."""
    clients = Clients(
        Addresses(
            productcatalog=shop["productcatalog"].address,
            currency=shop["currency"].address,
            cart=shop["cart"].address,
            recommendation=shop["recommendation"].address,
            shipping=shop["shipping"].address,
            checkout=shop["checkout"].address,
            ad=shop["ad"].address,
        )
    )
    config = uvicorn.Config(
        create_app(clients),
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving_task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving_task.done():
                serving_task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving_task
        await clients.close()


@pytest.fixture
async def shop(boutique: Boutique) -> AsyncIterator[str]:
    """The web shop in-process over the ``boutique`` fixture's services: its base URL."""
    async with shop_running(boutique) as url:
        yield url


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The AioRpcError ``call`` fails with (the test fails if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")
