"""CartService over gRPC, on a durable store, with its store-failure switch."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from opentelemetry import metrics, trace

from clue import log
from reference_services.cart.store import (
    CartFull,
    CartStore,
    LineFull,
    StoreUnavailable,
    open_cart_store,
)
from reference_services.common import fields
from reference_services.common.clients import Clients
from reference_services.common.config import env_addr, env_str
from reference_services.common.faults import Faults, Rate
from reference_services.common.rpc import (
    Context,
    failed_precondition,
    not_found,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.runtime import Entry, Wiring
from reference_services.common.settings import STORE_SCHEMES, store_url
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc

METER = metrics.get_meter("reference_services.cart")
CART_SIZE = METER.create_histogram(
    "boutique.cart.size", unit="{item}", description="Units in a cart when it is read"
)
ITEMS_ADDED = METER.create_counter(
    "boutique.cart.items_added", unit="{item}", description="Units added to carts"
)


def faults() -> Faults:
    """The cart switch: a share of store calls fails as if the store were down."""
    return Faults(Rate("store_failure_rate", "share of cart store calls that fail"))


class Cart(pb_grpc.CartServiceServicer):
    """Adds to, reads and empties carts."""

    def __init__(
        self,
        store: CartStore,
        switches: Faults,
        catalog: pb_grpc.ProductCatalogServiceAsyncStub | None = None,
    ) -> None:
        self.store = store
        self.faults = switches
        self.catalog = catalog

    async def _check_product(self, product_id: str) -> None:
        """NOT_FOUND unless the catalog knows ``product_id`` (when a catalog is configured)."""
        if self.catalog is None:
            return
        try:
            await self.catalog.GetProduct(pb.GetProductRequest(id=product_id), timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise not_found(f"no product with id {quote(product_id)}") from None
            raise unavailable(f"product catalog: {exc.details()}") from None

    def _store(self) -> CartStore:
        if self.faults.roll("store_failure_rate"):
            raise StoreUnavailable("cart store unavailable (injected fault store_failure_rate)")
        return self.store

    @rpc
    async def AddItem(self, request: pb.AddItemRequest, context: Context) -> pb.Empty:
        """Add units of a catalog product; quantities of the same product add up."""
        fields.identifier(request.user_id, "user_id")
        fields.cart_item(request.item, "item")
        quantity = request.item.quantity
        await self._check_product(request.item.product_id)
        span = trace.get_current_span()
        span.set_attribute("app.user.id", request.user_id)
        span.set_attribute("app.product.id", request.item.product_id)
        span.set_attribute("app.cart.quantity", quantity)
        try:
            total = await self._store().add(request.user_id, request.item.product_id, quantity)
        except (LineFull, CartFull) as exc:
            raise failed_precondition(str(exc)) from None
        except StoreUnavailable as exc:
            log.error("cart store failed", exc=exc)
            raise unavailable(str(exc)) from None
        ITEMS_ADDED.add(quantity)
        span.set_attribute("app.cart.line_quantity", total)
        return pb.Empty()

    @rpc
    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.Cart:
        """The user's cart; an unknown user has an empty one."""
        fields.identifier(request.user_id, "user_id")
        try:
            lines = await self._store().get(request.user_id)
        except StoreUnavailable as exc:
            log.error("cart store failed", exc=exc)
            raise unavailable(str(exc)) from None
        units = sum(q for _, q in lines)
        CART_SIZE.record(units)
        span = trace.get_current_span()
        span.set_attribute("app.user.id", request.user_id)
        span.set_attribute("app.cart.items", units)
        return pb.Cart(
            user_id=request.user_id,
            items=[pb.CartItem(product_id=p, quantity=q) for p, q in lines],
        )

    @rpc
    async def EmptyCart(self, request: pb.EmptyCartRequest, context: Context) -> pb.Empty:
        """Remove everything from the user's cart."""
        fields.identifier(request.user_id, "user_id")
        trace.get_current_span().set_attribute("app.user.id", request.user_id)
        try:
            await self._store().empty(request.user_id)
        except StoreUnavailable as exc:
            log.error("cart store failed", exc=exc)
            raise unavailable(str(exc)) from None
        return pb.Empty()


@dataclass(frozen=True)
class Config:
    """Where carts are kept and where the catalog that knows the product ids is."""

    store_url: str
    catalog_addr: str | None = None

    @classmethod
    def from_env(cls) -> Config:
        """``CART_STORE``: sqlite:/// (default ``$DATA_DIR/cart.db``), postgresql:// or
        redis://; ``PRODUCT_CATALOG_SERVICE_ADDR`` (host:port; unset, AddItem checks the
        form of product ids but not that they exist)."""
        schemes = (*STORE_SCHEMES, "redis://", "rediss://")
        catalog = None
        if env_str("PRODUCT_CATALOG_SERVICE_ADDR", ""):
            catalog = env_addr("PRODUCT_CATALOG_SERVICE_ADDR")
        return cls(store_url("CART_STORE", "cart.db", schemes), catalog)


async def build(config: Config) -> Wiring:
    """The cart servicer on its store (its health pinger) and the catalog's client."""
    store = open_cart_store(config.store_url)
    switches = faults()
    clients = Clients()
    catalog = None
    if config.catalog_addr is None:
        log.warn("PRODUCT_CATALOG_SERVICE_ADDR is not set: AddItem cannot tell unknown products")
    else:
        stub = pb_grpc.ProductCatalogServiceStub
        catalog = clients.stub("productcatalog", config.catalog_addr, stub)
    return Wiring(
        servicers=[(pb_grpc.add_CartServiceServicer_to_server, Cart(store, switches, catalog))],
        pingers=[store],  # not the catalog: without it, carts can still be read and emptied
        faults=switches,
        closers=[store.close, clients.close],
    )


ENTRY = Entry("cart", build, Config.from_env)
