"""What the shop says about stock: "only N left" when little is left, "sold out" at none.

The levels come from the catalog process's ``InventoryService.GetStock``, with the
threshold below which a product is low (the catalog's ``INVENTORY_LOW_STOCK``, so
the shop and the inventory's LowStock events agree). They are a page extra, like
the ads: when the inventory cannot be read (down, slow, or a product it does not
know) the page is shown without a stock line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reference_services.frontend.calls import optional
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc

#: Deadline (seconds) of the stock read: a slow inventory must not hold a page up.
STOCK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Stock:
    """How many of a product a new order can take, and below how many it is low."""

    available: int
    low_stock: int

    @property
    def sold_out(self) -> bool:
        """None left for a new order."""
        return self.available <= 0

    @property
    def low(self) -> bool:
        """Few enough to say how many are left (and not none)."""
        return 0 < self.available < self.low_stock

    @property
    def label(self) -> str:
        """``sold out``, ``only 3 left``, or empty when there is plenty."""
        if self.sold_out:
            return "sold out"
        return f"only {self.available} left" if self.low else ""

    def short_of(self, quantity: int) -> bool:
        """Whether fewer are available than a cart line of ``quantity`` asks for."""
        return self.available < quantity

    def label_for(self, quantity: int) -> str:
        """A cart line's: `label`, and ``only 3 left`` too when the line asks for more."""
        if self.short_of(quantity) and not self.sold_out:
            return f"only {self.available} left"
        return self.label


async def stock_of(
    inventory: ipb_grpc.InventoryServiceAsyncStub, product_ids: Sequence[str]
) -> dict[str, Stock]:
    """product id -> its :class:`Stock`; empty when the inventory cannot say now."""
    if not product_ids:
        return {}
    reply = await optional(
        "reading the stock",
        inventory.GetStock,
        ipb.GetStockRequest(product_ids=list(dict.fromkeys(product_ids))),
        timeout=STOCK_TIMEOUT,
    )
    if reply is None:
        return {}
    return {level.product_id: Stock(level.available, level.low_stock) for level in reply.levels}
