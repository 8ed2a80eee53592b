"""OrderService over gRPC: a customer's placed orders and their status timeline.

Every RPC needs an access token (`RULES`). A caller sees their own orders;
another user's order is NOT_FOUND, never revealed; the role admin reads and
moves any. A move is stored with the trace id of the current span and
published as ``boutique.order.status_changed`` through the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace

from clue import log
from reference_services.checkout.orders import (
    Forbidden,
    OrderStore,
    PlacedOrder,
    wire_status,
)
from reference_services.common import fields
from reference_services.common.auth import ADMIN, Rule, caller, methods
from reference_services.common.database import StoreUnavailable
from reference_services.common.events import Outbox, Relay
from reference_services.common.pages import page_size, page_token
from reference_services.common.rpc import (
    failed_precondition,
    invalid_argument,
    not_found,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.timestamps import rfc3339_ms
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import order_pb2 as opb
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc

SERVICE = "boutique.v1.OrderService"
RULES = methods(SERVICE, ("GetOrder", "ListOrders"), Rule("orders:read"))
RULES[f"/{SERVICE}/CancelOrder"] = Rule("orders:write")
RULES[f"/{SERVICE}/UpdateOrderStatus"] = Rule("orders:write", role=ADMIN)

MAX_REASON = 256
CANCELLED = "CANCELLED"
CANCELLABLE = frozenset({"SHIPPED"})
"""Statuses a customer may cancel from: once the label is made and until the courier
has the parcel (an order still PENDING or PAID is being placed: it settles in a moment)."""
DEFAULT_CANCEL_REASON = "cancelled by the customer"

Canceller = Callable[[PlacedOrder, str], Awaitable[PlacedOrder]]
"""Undoes a placed order (refund, restock, void the shipment) and marks it CANCELLED;
raises `Forbidden` when the courier already has the parcel."""


def trace_id() -> str:
    """The trace id of the current span, 32 hex digits; empty when untraced.

    A span the sampler dropped counts as untraced: its trace never reaches the
    viewer, so a stored id would only be a link to "not found".
    """
    span = trace.get_current_span()
    context = span.get_span_context()
    kept = context.is_valid and span.is_recording() and context.trace_flags.sampled
    return format(context.trace_id, "032x") if kept else ""


def target_status(value: int) -> str:
    """The stored name of a status asked for (``SHIPPED``), if it is one."""
    if value not in ev.OrderStatus.values() or value == ev.ORDER_STATUS_UNSPECIFIED:
        raise invalid_argument(f"status {value} is not an order status")
    return ev.OrderStatus.Name(value).removeprefix("ORDER_STATUS_")


def to_proto(order: PlacedOrder) -> opb.Order:
    """A recorded order on the wire."""
    result = order.result
    return opb.Order(
        id=order.order_id,
        user_id=order.user_id,
        email=order.email,
        items=[
            ev.OrderLine(
                product_id=line.item.product_id, quantity=line.item.quantity, unit_cost=line.cost
            )
            for line in result.items
        ],
        shipping_cost=result.shipping_cost,
        total=order.total,
        currency=order.total.currency_code,
        shipping_address=result.shipping_address,
        tracking_id=result.shipping_tracking_id,
        status=wire_status(order.status),
        history=[
            opb.StatusChange(
                from_status=wire_status(c.from_status),
                to_status=wire_status(c.to_status),
                at=rfc3339_ms(c.at_ns),
                reason=c.reason,
                trace_id=c.trace_id,
            )
            for c in order.history
        ],
        placed_at=rfc3339_ms(order.placed_at_ns),
    )


class Orders(opb_grpc.OrderServiceServicer):
    """Answers from the order store; a move's event goes to ``outbox``, which ``relay``
    publishes."""

    def __init__(
        self, store: OrderStore, outbox: Outbox, relay: Relay, canceller: Canceller | None = None
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.relay = relay
        self.canceller = canceller

    async def _visible(self, order_id: str) -> PlacedOrder:
        """The order if the caller may see it; NOT_FOUND alike when absent or another's."""
        fields.identifier(order_id, "order_id")
        who = caller()
        try:
            order = await self.store.get(order_id)
        except StoreUnavailable as exc:
            raise unavailable(f"order store: {exc}") from None
        if order is None or (order.user_id != who.user_id and not who.is_admin):
            raise not_found(f"no order with id {quote(order_id)}")
        return order

    @rpc
    async def GetOrder(self, request: opb.GetOrderRequest, context: Any) -> opb.Order:
        """One of the caller's orders with its history."""
        return to_proto(await self._visible(request.order_id))

    @rpc
    async def ListOrders(
        self, request: opb.ListOrdersRequest, context: Any
    ) -> opb.ListOrdersResponse:
        """The caller's orders, newest first, from ``page_token`` on."""
        size = page_size(request.page_size)
        after = page_token(request.page_token)
        try:
            found, following = await self.store.page(caller().user_id, size, after)
        except StoreUnavailable as exc:
            raise unavailable(f"order store: {exc}") from None
        return opb.ListOrdersResponse(
            orders=[to_proto(o) for o in found],
            next_page_token=following.token() if following else "",
        )

    @rpc
    async def UpdateOrderStatus(
        self, request: opb.UpdateOrderStatusRequest, context: Any
    ) -> opb.Order:
        """Move the order to ``status`` if its lifecycle allows it (admin only)."""
        fields.identifier(request.order_id, "order_id")
        to = target_status(request.status)
        reason = fields.text(request.reason, "reason", MAX_REASON, required=False)
        try:
            order = await self.store.transition(
                request.order_id, to, reason, trace_id(), self.outbox
            )
        except Forbidden as exc:
            raise failed_precondition(f"order {quote(request.order_id)}: {exc}") from None
        except StoreUnavailable as exc:
            raise unavailable(f"order store: {exc}") from None
        if order is None:
            raise not_found(f"no order with id {quote(request.order_id)}")
        self.relay.wake()
        log.info("order status changed", order_id=order.order_id, status=to, reason=reason)
        return to_proto(order)

    @rpc
    async def CancelOrder(self, request: opb.CancelOrderRequest, context: Any) -> opb.Order:
        """Cancel one of the caller's orders until the courier has it; a cancelled order
        is answered unchanged."""
        reason = fields.text(request.reason, "reason", MAX_REASON, required=False)
        order = await self._visible(request.order_id)
        if order.status == CANCELLED:
            return to_proto(order)
        quoted = quote(request.order_id)
        if order.status not in CANCELLABLE or self.canceller is None:
            raise failed_precondition(f"order {quoted} is {order.status} and cannot be cancelled")
        try:
            cancelled = await self.canceller(order, reason.strip() or DEFAULT_CANCEL_REASON)
        except Forbidden as exc:
            raise failed_precondition(f"order {quoted} cannot be cancelled: {exc}") from None
        except StoreUnavailable as exc:
            raise unavailable(f"order store: {exc}") from None
        except grpc.aio.AioRpcError as exc:  # its state is written: recovery finishes it
            raise unavailable(f"cancel order: {exc.details()}; it is retried") from None
        log.info("order cancelled", order_id=order.order_id, reason=reason)
        return to_proto(cancelled)
