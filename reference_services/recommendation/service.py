"""RecommendationService over gRPC, with its memory-leak switch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
from opentelemetry import trace

from reference_services.common import fields
from reference_services.common.clients import Clients
from reference_services.common.config import env_addr
from reference_services.common.faults import Faults, Flag
from reference_services.common.rpc import Context, rpc, unavailable
from reference_services.common.runtime import Entry, Wiring
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.recommendation.pick import recommend


def faults() -> Faults:
    """The recommendation switch: a cache that keeps every catalog it reads."""
    return Faults(Flag("leak", "keep a copy of the catalog for every request, forever"))


class LeakyCache:
    """The bug behind the ``leak`` switch: remembers every catalog, never forgets."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    def remember(self, catalog: pb.ListProductsResponse) -> None:
        """Keep a serialized copy of ``catalog`` under a fresh key."""
        self.entries[uuid.uuid4().hex] = catalog.SerializeToString() * 4


def _check_request(request: pb.ListRecommendationsRequest) -> None:
    """An optional user id and at most `MAX_LINES` product ids, all in bounds."""
    if request.user_id:
        fields.identifier(request.user_id, "user_id")
    fields.count(request.product_ids, "product_ids", fields.MAX_LINES)
    for i, product_id in enumerate(request.product_ids):
        fields.identifier(product_id, f"product_ids[{i}]", fields.MAX_PRODUCT_ID)


class Recommendation(pb_grpc.RecommendationServiceServicer):
    """Recommends other products from the catalog."""

    def __init__(self, catalog: pb_grpc.ProductCatalogServiceAsyncStub, switches: Faults) -> None:
        self.catalog = catalog
        self.faults = switches
        self.cache = LeakyCache()

    @rpc
    async def ListRecommendations(
        self, request: pb.ListRecommendationsRequest, context: Context
    ) -> pb.ListRecommendationsResponse:
        """Up to five random catalog products, none of those in the request."""
        _check_request(request)
        try:
            products = await self.catalog.ListProducts(pb.Empty(), timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            raise unavailable(f"product catalog: {exc.details()}") from None
        if self.faults.on("leak"):
            self.cache.remember(products)
        ids = recommend([p.id for p in products.products], request.product_ids)
        span = trace.get_current_span()
        span.set_attribute("app.recommendations.count", len(ids))
        span.set_attribute("app.recommendations.cache_entries", len(self.cache.entries))
        return pb.ListRecommendationsResponse(product_ids=ids)


@dataclass(frozen=True)
class Config:
    """Where the catalog is."""

    catalog_addr: str

    @classmethod
    def from_env(cls) -> Config:
        """``PRODUCT_CATALOG_SERVICE_ADDR`` (host:port)."""
        return cls(env_addr("PRODUCT_CATALOG_SERVICE_ADDR"))


async def build(config: Config) -> Wiring:
    """The recommendation servicer; the catalog is pinged for health."""
    clients = Clients()
    catalog = clients.stub("productcatalog", config.catalog_addr, pb_grpc.ProductCatalogServiceStub)
    switches = faults()
    return Wiring(
        servicers=[
            (
                pb_grpc.add_RecommendationServiceServicer_to_server,
                Recommendation(catalog, switches),
            )
        ],
        pingers=clients.pingers,
        faults=switches,
        closers=[clients.close],
    )


ENTRY = Entry("recommendation", build, Config.from_env)
