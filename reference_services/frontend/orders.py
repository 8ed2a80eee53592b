"""The shop's order pages: the signed-in visitor's orders, one order's timeline, cancelling.

They call the checkout process's ``OrderService`` with the visitor's token, so
a visitor sees their own orders only: another user's order is a 404, as an
unknown one. Each step of an order's timeline links to its trace in the
viewer when the shop knows one (``VIEWER_URL``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from clue import log
from reference_services.frontend.calls import call
from reference_services.frontend.errors import ShopError
from reference_services.frontend.forms import FormError, order_id, page_token
from reference_services.frontend.visitor import Visitor, to_login, visitor_of
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import order_pb2 as opb

if TYPE_CHECKING:
    from reference_services.frontend.app import Shop

#: Orders on one page of the list.
PAGE_SIZE = 20
#: Why an order cancelled in the shop was cancelled (kept in its history).
CANCEL_REASON = "cancelled by the customer in the shop"
#: Statuses a customer may still cancel from (the parcel is not on its way yet).
CANCELLABLE = frozenset({ev.ORDER_STATUS_PENDING, ev.ORDER_STATUS_PAID, ev.ORDER_STATUS_SHIPPED})
TRACE_ID = re.compile(r"[0-9a-f]{32}")


def status_label(status: int) -> str:
    """``In transit`` for ``ORDER_STATUS_IN_TRANSIT``; empty for none."""
    if status == ev.ORDER_STATUS_UNSPECIFIED or status not in ev.OrderStatus.values():
        return ""
    return ev.OrderStatus.Name(status).removeprefix("ORDER_STATUS_").replace("_", " ").capitalize()


def when(at: str) -> str:
    """An RFC 3339 UTC time as the pages show it: ``2026-12-06 21:30:05 UTC``."""
    return at[:19].replace("T", " ") + " UTC" if at else ""


@dataclass(frozen=True)
class Step:
    """One move of an order's timeline, as its page shows it."""

    from_status: str
    to_status: str
    at: str
    shown_at: str
    reason: str
    trace_id: str
    trace_url: str


class OrderPages:
    """The order pages of ``shop``; ``viewer_url`` is the trace viewer's (empty: no links)."""

    def __init__(self, shop: Shop, viewer_url: str = "") -> None:
        self.shop = shop
        self.viewer_url = viewer_url.rstrip("/")

    def trace_url(self, trace_id: str) -> str:
        """The viewer's page of ``trace_id``; empty without a viewer or a trace."""
        if not self.viewer_url or not TRACE_ID.fullmatch(trace_id):
            return ""
        return f"{self.viewer_url}/trace/{trace_id}"

    def steps(self, order: opb.Order) -> list[Step]:
        """The order's timeline, oldest first."""
        return [
            Step(
                status_label(change.from_status),
                status_label(change.to_status),
                change.at,
                when(change.at),
                change.reason,
                change.trace_id,
                self.trace_url(change.trace_id),
            )
            for change in order.history
        ]

    async def _order(self, visitor: Visitor, wanted: str) -> opb.Order:
        """The visitor's order ``wanted``; a 404 page when it is not theirs or not at all."""
        try:
            order: opb.Order = await call(
                f"reading order {wanted}",
                self.shop.clients.orders.GetOrder,
                opb.GetOrderRequest(order_id=wanted),
                visitor.metadata,
            )
        except ShopError as error:
            if error.status == 404:
                raise _no_such_order(wanted, error) from None
            raise
        return order

    # --- pages -----------------------------------------------------------------------

    async def orders(self, request: Request) -> Response:
        """The visitor's orders, newest first, a page at a time (``?page=``)."""
        token = page_token(request.query_params.get("page", ""))
        visitor = visitor_of(request)
        if visitor is None:
            return to_login("/orders")
        try:
            frame, listed = await asyncio.gather(
                self.shop.frame(request),
                call(
                    "listing your orders",
                    self.shop.clients.orders.ListOrders,
                    opb.ListOrdersRequest(page_size=PAGE_SIZE, page_token=token),
                    visitor.metadata,
                ),
            )
        except ShopError as error:
            if error.status == 422:  # the order service's INVALID_ARGUMENT: the token
                raise FormError({"page": "is not a page of the order list"}) from None
            raise
        return self.shop.render(
            request,
            "orders.html",
            frame,
            orders=listed.orders,
            next_page=listed.next_page_token,
            first_page=not token,
            status_label=status_label,
            when=when,
        )

    async def order(self, request: Request) -> Response:
        """One order: its lines, costs, address, status and timeline."""
        wanted = order_id(request.path_params["id"])
        visitor = visitor_of(request)
        if visitor is None:
            return to_login(f"/orders/{wanted}")
        frame, order = await asyncio.gather(self.shop.frame(request), self._order(visitor, wanted))
        products = await self.shop.products(list(dict.fromkeys(i.product_id for i in order.items)))
        return self.shop.render(
            request,
            "order_status.html",
            frame,
            order=order,
            status_name=status_label(order.status),
            steps=self.steps(order),
            names={product.id: product.name for product in products},
            cancellable=order.status in CANCELLABLE,
            placed_at=when(order.placed_at),
        )

    async def cancel(self, request: Request) -> Response:
        """Cancel the order (its refund, restock and voided shipment are the order
        service's); 409 once the parcel is on its way."""
        wanted = order_id(request.path_params["id"])
        visitor = visitor_of(request)
        if visitor is None:
            return to_login(f"/orders/{wanted}")
        try:
            await call(
                f"cancelling order {wanted}",
                self.shop.clients.orders.CancelOrder,
                opb.CancelOrderRequest(order_id=wanted, reason=CANCEL_REASON),
                visitor.metadata,
            )
        except ShopError as error:
            if error.status == 404:
                raise _no_such_order(wanted, error) from None
            if error.status == 409:
                raise ShopError(
                    409,
                    "Too late to cancel",
                    "This order can no longer be cancelled: its parcel is on its way.",
                    reasons=error.reasons,
                    chain=error.chain,
                ) from None
            raise
        log.info("order cancelled", order_id=wanted)
        return RedirectResponse(f"/orders/{wanted}", status_code=303)


def _no_such_order(wanted: str, error: ShopError) -> ShopError:
    """The 404 of an order that is unknown or another user's (the page cannot tell)."""
    return ShopError(
        404,
        "Order not found",
        f"There is no order {wanted} in your account.",
        chain=error.chain,
    )
