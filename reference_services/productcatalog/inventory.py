"""InventoryService over gRPC: the stock of the catalog's products, reserved per order.

Reserve, Commit and Release are internal (no token) and keyed by the order id, so a
saga retrying a step does no harm; SetStock needs an admin's token. The fault switch
``stock_exhausted`` makes one product have nothing available while it is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import metrics, trace

from clue import log
from reference_services.common import fields
from reference_services.common.auth import ADMIN, Rule
from reference_services.common.config import env_float, env_int
from reference_services.common.database import StoreUnavailable
from reference_services.common.events import Relay
from reference_services.common.faults import Choice, Faults
from reference_services.common.rpc import (
    RpcFailure,
    failed_precondition,
    invalid_argument,
    not_found,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.timestamps import rfc3339_ms
from reference_services.productcatalog.catalog import Catalog
from reference_services.productcatalog.stock_store import (
    COMMITTED,
    EXPIRED,
    HELD,
    RELEASED,
    Ended,
    Level,
    NoReservation,
    Reservation,
    StockStore,
    TooLittle,
)
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc

SERVICE = "boutique.v1.InventoryService"
RULES = {f"/{SERVICE}/SetStock": Rule("orders:write", role=ADMIN)}
"""SetStock needs an admin's token; the other RPCs are internal, like the upstream ones."""
EXHAUSTED_SWITCH = "stock_exhausted"
MAX_ON_HAND = 1_000_000
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
METER = metrics.get_meter("reference_services.productcatalog")
RESERVATIONS = METER.create_counter(
    "boutique.inventory.reservations",
    unit="{reservation}",
    description="Reserve calls by outcome: held, insufficient (too little stock), ended",
)
OVERSOLD = METER.create_counter(
    "boutique.inventory.oversold",
    unit="{commit}",
    description="Commits refused because the reservation expired and its stock was gone,"
    " by product_id (an order paid for without its stock)",
)
STATES = {
    HELD: ipb.RESERVATION_STATE_HELD,
    COMMITTED: ipb.RESERVATION_STATE_COMMITTED,
    RELEASED: ipb.RESERVATION_STATE_RELEASED,
    EXPIRED: ipb.RESERVATION_STATE_EXPIRED,
}


def exhausted_switch(product_ids: list[str]) -> Choice:
    """The switch naming a product that has 0 available while set."""
    return Choice(
        EXHAUSTED_SWITCH,
        "this product has nothing available: orders of it fail FAILED_PRECONDITION",
        choices=tuple(product_ids),
    )


@dataclass(frozen=True)
class StockSettings:
    """The stock each product starts with, how long a reservation holds, when a product
    is low, and how soon the simulated supplier restocks it (0: never)."""

    initial: int = 1000
    ttl_s: float = 900.0
    low: int = 10
    restock_s: float = 60.0

    @classmethod
    def from_env(cls) -> StockSettings:
        """``INVENTORY_INITIAL_STOCK`` (default 1000), ``INVENTORY_RESERVATION_TTL_S``
        (default 900), ``INVENTORY_LOW_STOCK`` (default 10) and ``INVENTORY_RESTOCK_S``
        (default 60; 0 turns the supplier off). Seconds may have decimals."""
        return cls(
            initial=env_int("INVENTORY_INITIAL_STOCK", 1000, minimum=0, maximum=MAX_ON_HAND),
            ttl_s=env_float(
                "INVENTORY_RESERVATION_TTL_S", 900.0, minimum=0.01, maximum=7 * 86400.0
            ),
            low=env_int("INVENTORY_LOW_STOCK", 10, minimum=0, maximum=MAX_ON_HAND),
            restock_s=env_float("INVENTORY_RESTOCK_S", 60.0, minimum=0.0, maximum=7 * 86400.0),
        )


def order_id(value: str) -> str:
    """``value`` if it is an order id: a UUID (checkout makes them)."""
    fields.identifier(value, "order_id")
    if not _UUID.fullmatch(value):
        raise invalid_argument(f"order_id {quote(value)} is not a UUID")
    return value


def to_proto(reservation: Reservation) -> ipb.Reservation:
    """The wire form of a reservation (its expiry only while it is held)."""
    return ipb.Reservation(
        order_id=reservation.order_id,
        items=[ipb.ReservationLine(product_id=p, quantity=q) for p, q in reservation.lines],
        state=STATES[reservation.state],
        expires_at=rfc3339_ms(reservation.expires_ns) if reservation.state == HELD else "",
    )


class Inventory(ipb_grpc.InventoryServiceServicer):
    """Answers stock levels and holds, takes and gives back stock per order."""

    def __init__(
        self,
        store: StockStore,
        catalog: Catalog,
        switches: Faults,
        settings: StockSettings,
        relay: Relay | None = None,
        *,
        guarded: bool = True,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.faults = switches
        self.settings = settings
        self.relay = relay
        """Publishes the LowStock events written with the changes (none: no events)."""
        self.guarded = guarded
        """Whether an Authorizer checks SetStock's token (without one it is refused)."""

    def _product(self, value: str, field: str) -> str:
        fields.identifier(value, field, fields.MAX_PRODUCT_ID)
        if self.catalog.get(value) is None:
            raise not_found(f"no product with id {quote(value)}")
        return value

    def _exhausted(self) -> str:
        return self.faults.choice(EXHAUSTED_SWITCH)

    def _level(self, level: Level) -> ipb.StockLevel:
        available = 0 if level.product_id == self._exhausted() else level.available
        return ipb.StockLevel(
            product_id=level.product_id,
            on_hand=level.on_hand,
            reserved=level.reserved,
            available=available,
            low_stock=self.settings.low,
        )

    def _wake(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    @rpc
    async def GetStock(self, request: ipb.GetStockRequest, context: Any) -> ipb.GetStockResponse:
        """The stock of each product asked for, in that order (none asked: every product,
        in catalog order)."""
        fields.count(request.product_ids, "product_ids", fields.MAX_LINES)
        ids = [self._product(p, f"product_ids[{i}]") for i, p in enumerate(request.product_ids)]
        ids = ids or [p.id for p in self.catalog.products]
        try:
            levels = await self.store.levels(sorted(set(ids)))
        except StoreUnavailable as exc:
            raise unavailable(f"inventory store: {exc}") from None
        return ipb.GetStockResponse(levels=[self._level(levels[p]) for p in ids])

    @rpc
    async def Reserve(self, request: ipb.ReserveRequest, context: Any) -> ipb.Reservation:
        """Hold every line of the order, all or nothing (FAILED_PRECONDITION naming the
        product with too little); the same order again answers its reservation."""
        order = order_id(request.order_id)
        fields.count(request.items, "items", fields.MAX_LINES)
        if not request.items:
            raise invalid_argument("items must not be empty")
        wanted: dict[str, int] = {}
        for i, item in enumerate(request.items):
            product = self._product(item.product_id, f"items[{i}].product_id")
            quantity = fields.quantity(item.quantity, f"items[{i}].quantity")
            wanted[product] = wanted.get(product, 0) + quantity
        span = trace.get_current_span()
        span.set_attribute("app.order.id", order)
        span.set_attribute("app.order.items.count", len(wanted))
        ttl_ns = int(self.settings.ttl_s * 1e9)
        try:
            reservation = await self.store.reserve(order, wanted, ttl_ns, self._exhausted())
        except TooLittle as exc:
            RESERVATIONS.add(1, {"outcome": "insufficient"})
            span.set_attribute("app.product.id", exc.product_id)
            raise failed_precondition(
                f"product {quote(exc.product_id)} has {exc.available} available,"
                f" {exc.wanted} wanted"
            ) from None
        except Ended as exc:
            RESERVATIONS.add(1, {"outcome": "ended"})
            raise _ended(exc) from None
        except StoreUnavailable as exc:
            raise unavailable(f"inventory store: {exc}") from None
        RESERVATIONS.add(1, {"outcome": "held"})
        self._wake()
        return to_proto(reservation)

    @rpc
    async def Commit(self, request: ipb.CommitRequest, context: Any) -> ipb.Reservation:
        """Take the reserved stock for good, an expired reservation's too while it is
        available (FAILED_PRECONDITION, counted oversold, when it is not, or once
        released; NOT_FOUND without a reservation); committing twice answers the same."""
        order = order_id(request.order_id)
        span = trace.get_current_span()
        span.set_attribute("app.order.id", order)
        try:
            reservation = await self.store.commit(order, self._exhausted())
        except NoReservation:
            raise not_found(f"no reservation for order {quote(order)}") from None
        except TooLittle as exc:
            # the order is paid and shipped by now: someone must find it stock by hand
            OVERSOLD.add(1, {"product_id": exc.product_id})
            span.set_attribute("app.product.id", exc.product_id)
            log.error(
                "reservation expired and its stock is gone: order oversold",
                order_id=order,
                product_id=exc.product_id,
                available=exc.available,
                wanted=exc.wanted,
            )
            raise failed_precondition(
                f"the reservation of order {quote(order)} expired and product"
                f" {quote(exc.product_id)} has {exc.available} available, {exc.wanted} wanted"
            ) from None
        except Ended as exc:
            raise _ended(exc) from None
        except StoreUnavailable as exc:
            raise unavailable(f"inventory store: {exc}") from None
        self._wake()
        return to_proto(reservation)

    @rpc
    async def Release(self, request: ipb.ReleaseRequest, context: Any) -> ipb.Reservation:
        """Give the order's stock back (a committed order's too: it is restocked);
        releasing twice or an order never reserved is no error."""
        order = order_id(request.order_id)
        trace.get_current_span().set_attribute("app.order.id", order)
        try:
            reservation = await self.store.release(order)
        except StoreUnavailable as exc:
            raise unavailable(f"inventory store: {exc}") from None
        self._wake()
        return to_proto(reservation)

    @rpc
    async def SetStock(self, request: ipb.SetStockRequest, context: Any) -> ipb.StockLevel:
        """Set a product's stock on hand (role admin only)."""
        if not self.guarded:
            raise RpcFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                "SetStock needs the user service to check an admin's token",
            )
        product = self._product(request.product_id, "product_id")
        if not 0 <= request.on_hand <= MAX_ON_HAND:
            raise invalid_argument(f"on_hand {request.on_hand} is outside 0..{MAX_ON_HAND}")
        try:
            level = await self.store.set_stock(product, request.on_hand)
        except StoreUnavailable as exc:
            raise unavailable(f"inventory store: {exc}") from None
        # audit, always written (the admin's user id is in the log context)
        log.print("stock set", product_id=product, on_hand=request.on_hand)
        self._wake()
        return self._level(level)


def _ended(exc: Ended) -> RpcFailure:
    reservation = exc.reservation
    return failed_precondition(
        f"the reservation of order {quote(reservation.order_id)} was {reservation.state}"
    )
