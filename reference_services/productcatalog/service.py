"""ProductCatalogService over gRPC, with its fault switches."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace

from reference_services.common import fields
from reference_services.common.config import ConfigError, env_str
from reference_services.common.faults import Faults, Flag, Millis
from reference_services.common.rpc import Context, not_found, quote, rpc
from reference_services.common.runtime import Entry, Wiring
from reference_services.productcatalog.catalog import DATA_FILE, MAX_QUERY, Catalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc


def faults() -> Faults:
    """The catalog's switches: extra latency and the CPU-burning re-read bug."""
    return Faults(
        Millis("extra_latency_ms", "milliseconds added to every product lookup"),
        Flag("cpu_bug", "re-read and parse the catalog file on every request"),
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
    """The catalog's settings: where its data file is."""

    data_file: Path

    @classmethod
    def from_env(cls) -> Config:
        """Read ``CATALOG_DATA_FILE`` (default: the bundled products.json)."""
        path = Path(env_str("CATALOG_DATA_FILE", str(DATA_FILE)))
        if not path.is_file():
            raise ConfigError(f"CATALOG_DATA_FILE={str(path)!r} is not a file")
        return cls(path)


async def build(config: Config) -> Wiring:
    """The catalog's servicer and switches."""
    switches = faults()
    servicer = ProductCatalog(Catalog.from_file(config.data_file), switches, config.data_file)
    return Wiring(
        servicers=[(pb_grpc.add_ProductCatalogServiceServicer_to_server, servicer)],
        faults=switches,
    )


ENTRY = Entry("productcatalog", build, Config.from_env)
