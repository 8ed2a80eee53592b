"""ProductCatalogService and InventoryService over gRPC, with their fault switches.

The inventory (see `inventory`) keeps its stock in its own store; with a broker it
publishes LowStock through an outbox and releases the stock of cancelled and failed
orders from their status events (see `cancellations`); with a user service it checks
SetStock's admin token with its keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace

import clue.grpc
from clue import health
from reference_services.common import fields
from reference_services.common.auth import Authorizer, PublishedKeys
from reference_services.common.clients import CHANNEL_OPTIONS
from reference_services.common.config import ConfigError, env_addr, env_str
from reference_services.common.database import SQLite, StoreUnavailable, open_database
from reference_services.common.events import (
    ORDER_STATUS_CHANGED,
    Broker,
    EventConsumer,
    Outbox,
    Relay,
    Stream,
    nats_url,
)
from reference_services.common.faults import Faults, Flag, Millis
from reference_services.common.rpc import Context, not_found, quote, rpc
from reference_services.common.runtime import AddServicer, Entry, Wiring
from reference_services.common.settings import store_url
from reference_services.productcatalog.cancellations import CONSUMER, Cancellations
from reference_services.productcatalog.catalog import DATA_FILE, MAX_QUERY, Catalog
from reference_services.productcatalog.inventory import (
    RULES,
    Inventory,
    StockSettings,
    exhausted_switch,
)
from reference_services.productcatalog.stock_store import StockStore, Thresholds
from reference_services.productcatalog.stock_sweeper import StockSweeper
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc


def faults(product_ids: list[str] | None = None) -> Faults:
    """The catalog's switches: extra latency, the CPU-burning re-read bug, and a product
    whose stock is exhausted (one of ``product_ids``, default the bundled catalog's)."""
    if product_ids is None:
        product_ids = [p.id for p in Catalog.from_file().products]
    return Faults(
        Millis("extra_latency_ms", "milliseconds added to every product lookup"),
        Flag("cpu_bug", "re-read and parse the catalog file on every request"),
        exhausted_switch(product_ids),
    )


class ProductCatalog(pb_grpc.ProductCatalogServiceServicer):
    """Lists, looks up and searches the catalog."""

    def __init__(self, catalog: Catalog, switches: Faults, data_file: Path = DATA_FILE) -> None:
        self.catalog = catalog
        self.faults = switches
        self.data_file = data_file

    async def _current(self) -> Catalog:
        delay = float(self.faults.value("extra_latency_ms"))
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if self.faults.on("cpu_bug"):
            return Catalog.from_file(self.data_file)
        return self.catalog

    @rpc
    async def ListProducts(self, request: pb.Empty, context: Context) -> pb.ListProductsResponse:
        """Every product, in catalog order."""
        catalog = await self._current()
        trace.get_current_span().set_attribute("app.products.count", len(catalog.products))
        return pb.ListProductsResponse(products=catalog.products)

    @rpc
    async def GetProduct(self, request: pb.GetProductRequest, context: Context) -> pb.Product:
        """One product by id; NOT_FOUND when unknown."""
        fields.identifier(request.id, "id", fields.MAX_PRODUCT_ID)
        trace.get_current_span().set_attribute("app.product.id", request.id)
        product = (await self._current()).get(request.id)
        if product is None:
            raise not_found(f"no product with id {quote(request.id)}")
        return product

    @rpc
    async def SearchProducts(
        self, request: pb.SearchProductsRequest, context: Context
    ) -> pb.SearchProductsResponse:
        """Products whose name or description contains the query (any case)."""
        fields.text(request.query, "query", MAX_QUERY, required=False)
        results = (await self._current()).search(request.query)
        span = trace.get_current_span()
        span.set_attribute("app.search.query", request.query)
        span.set_attribute("app.search.results", len(results))
        return pb.SearchProductsResponse(results=results)


@dataclass(frozen=True)
class Config:
    """The catalog's settings: where its data file is; the inventory's store, broker,
    user service and stock settings."""

    data_file: Path = DATA_FILE
    database_url: str | None = None
    """The inventory's store; None keeps the stock in memory (tests, embedding)."""
    nats_url: str | None = None
    """The event broker; None publishes no LowStock events."""
    stream: str = "BOUTIQUE"
    user_addr: str | None = None
    """The user service whose keys verify SetStock's admin tokens; None refuses SetStock."""
    stock: StockSettings = field(default_factory=StockSettings)

    @classmethod
    def from_env(cls) -> Config:
        """``CATALOG_DATA_FILE`` (default: the bundled products.json),
        ``PRODUCTCATALOG_DATABASE_URL`` (default ``$DATA_DIR/inventory.db``, or
        postgresql://...), ``NATS_URL``, ``EVENTS_STREAM``, ``USER_SERVICE_ADDR`` (if set)
        and the ``INVENTORY_*`` settings of `StockSettings.from_env`."""
        path = Path(env_str("CATALOG_DATA_FILE", str(DATA_FILE)))
        if not path.is_file():
            raise ConfigError(f"CATALOG_DATA_FILE={str(path)!r} is not a file")
        user = env_str("USER_SERVICE_ADDR", "")
        return cls(
            data_file=path,
            database_url=store_url("PRODUCTCATALOG_DATABASE_URL", "inventory.db"),
            nats_url=nats_url(),
            stream=Stream.from_env().name,
            user_addr=env_addr("USER_SERVICE_ADDR") if user else None,
            stock=StockSettings.from_env(),
        )


async def build(config: Config) -> Wiring:
    """The catalog's and the inventory's servicers and switches; the stock store migrated
    and new products stocked first, its sweeper and event relay running."""
    catalog = Catalog.from_file(config.data_file)
    ids = [p.id for p in catalog.products]
    switches = faults(ids)
    db = open_database(config.database_url) if config.database_url else SQLite(":memory:")
    outbox = Outbox(db) if config.nats_url else None
    thresholds = Thresholds(low=config.stock.low, initial=config.stock.initial)
    store = StockStore(db, thresholds, outbox)
    try:
        await store.migrate()
        await store.stock_new_products(ids)
    except StoreUnavailable as exc:
        await store.close()
        raise OSError(f"inventory store: {exc}") from exc
    closers: list[Callable[[], Awaitable[Any]]] = [store.close]
    pingers: list[health.Pinger] = [store]
    relay = None
    if outbox is not None:
        broker = Broker(config.nats_url, Stream(config.stream))
        relay = Relay(outbox, broker)
        consumer = EventConsumer(
            broker, db, CONSUMER, [ORDER_STATUS_CHANGED], Cancellations(store, relay)
        )
        broker.start()
        relay.start()
        consumer.start()
        closers += [broker.close, relay.stop, consumer.stop]
        pingers.append(broker)
    authorizer = None
    if config.user_addr is not None:
        # not a pinged client: browsing the catalog does not need the user service
        channel = clue.grpc.async_insecure_channel(config.user_addr, options=CHANNEL_OPTIONS)
        keys = PublishedKeys.from_stub(upb_grpc.UserServiceStub(channel))
        authorizer = Authorizer(keys, RULES)
        closers.append(lambda: channel.close(None))
    inventory = Inventory(
        store, catalog, switches, config.stock, relay, guarded=authorizer is not None
    )
    sweeper = StockSweeper(
        store, ttl_s=config.stock.ttl_s, restock_s=config.stock.restock_s, relay=relay
    )
    sweeper.start()
    closers.append(sweeper.stop)
    servicers: list[tuple[AddServicer, object]] = [
        (
            pb_grpc.add_ProductCatalogServiceServicer_to_server,
            ProductCatalog(catalog, switches, config.data_file),
        ),
        (ipb_grpc.add_InventoryServiceServicer_to_server, inventory),
    ]
    return Wiring(
        servicers=servicers,
        pingers=pingers,
        faults=switches,
        closers=closers,  # run last to first: sweeper, channel, consumer, relay, broker, store
        authorizer=authorizer,
    )


ENTRY = Entry("productcatalog", build, Config.from_env)
