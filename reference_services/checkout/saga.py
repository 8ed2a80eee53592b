"""The checkout as an orchestrated saga (docs/boutique.md, "The checkout saga").

Placing an order: create it PENDING, reserve its stock, charge it (PAID), ship it
(the label: a tracking id), then commit the stock, empty the cart and mark it
SHIPPED with its ``boutique.order.placed`` event. A failing step is compensated
backwards: void the shipment, refund, release the stock, mark the order FAILED
with the reason in its history. Cancelling a shipped order is a saga of its own:
void the shipment (the courier must not have it yet), mark it CANCELLED, refund,
release.

The saga's state is written in the order database (`SagaLog`) before each
step, in one transaction with the status move and outbox event the previous
step caused, so a process killed anywhere leaves a row recovery can act on.
Every call a step makes is idempotent by the order id, so recovery may repeat
the step that was running. The card is never stored: recovery cannot charge,
so a saga interrupted before its payment was recorded is compensated (a refund
of a charge that may have gone through included); one interrupted after it is
driven forward. Every step and compensation is a span of the order's trace,
recovery's too (the trace context is kept in the saga's row).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.context import Context

from clue import log, messaging
from reference_services.checkout.order_service import trace_id
from reference_services.checkout.orders import (
    PENDING,
    PLACED,
    Forbidden,
    OrderStore,
    PlacedOrder,
    order_placed,
)
from reference_services.checkout.saga_log import (
    CANCEL,
    COMPENSATING,
    DONE,
    FORWARD,
    PLACE,
    SagaLog,
    SagaState,
)
from reference_services.common.events import ORDER_PLACED, Outbox, Relay
from reference_services.common.faults import Choice, Faults
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import inventory_pb2 as ipb
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import ledger_pb2 as lpb
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc
from reference_services.protos.boutique.v1 import shipment_pb2 as spb
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc

T = TypeVar("T")
TRACER = trace.get_tracer("reference_services.checkout")
CALL_TIMEOUT = 5.0
ORDER_ID_METADATA = "boutique-order-id"
"""The metadata that makes ShippingService.ShipOrder record (idempotently) the order's parcel."""

CREATE, RESERVE, CHARGE, SHIP, COMPLETE = "create", "reserve", "charge", "ship", "complete"
STEPS = (CREATE, RESERVE, CHARGE, SHIP, COMPLETE)
"""The steps of placing an order, in order."""
LABELS = {RESERVE: "reserve stock", CHARGE: "charge card", SHIP: "ship order"}
"""How a failed step is named in errors, reasons and the failure metric."""
VOID, CANCELLING, REFUND, RELEASE = "void", "cancelled", "refund", "release"
"""The steps of cancelling an order (``cancelled``: the status move)."""
INTERRUPTED = "checkout interrupted before the payment was recorded"
CRASH_SWITCH = "crash_after"
PAID = "PAID"
FAILED = "FAILED"
CANCELLED = "CANCELLED"


def crash_switch() -> Choice:
    """The fault switch that SIGKILLs the process right after a step's state is written."""
    return Choice(
        CRASH_SWITCH,
        "kill the process (SIGKILL) right after this saga step's state is written",
        choices=STEPS,
    )


@dataclass
class Partners:
    """The services the saga's steps call."""

    inventory: ipb_grpc.InventoryServiceAsyncStub
    ledger: lpb_grpc.PaymentLedgerAsyncStub
    shipping: pb_grpc.ShippingServiceAsyncStub
    shipments: spb_grpc.ShipmentServiceAsyncStub
    cart: pb_grpc.CartServiceAsyncStub


@dataclass(frozen=True)
class Plan:
    """An order to place, priced: its result (id, items, shipping cost and address; the
    tracking id comes with the label), who places it, its total and card (None when
    recovery resumes it: the card is never stored)."""

    result: pb.OrderResult
    user_id: str
    email: str
    total: pb.Money
    card: pb.CreditCardInfo | None = None

    @property
    def order_id(self) -> str:
        return self.result.order_id

    @classmethod
    def of(cls, order: PlacedOrder) -> Plan:
        """The plan of a recorded order (for recovery)."""
        return cls(order.result, order.user_id, order.email, order.total)


class StepFailed(Exception):
    """A step's call failed; the saga was compensated (or is left to recovery)."""

    def __init__(self, step: str, error: grpc.aio.AioRpcError) -> None:
        self.step = step
        self.label = LABELS.get(step, step)
        self.error = error
        self.reason = f"{self.label}: {error.details()}"
        super().__init__(self.reason)


class Saga:
    """Runs the sagas of one checkout process (`place`, `cancel`, `resume`).

    With ``durable`` False (a benchmark's unsafe baseline, never for real use) no
    saga state and no event is written: only the shipped order, at the end, and a
    crash loses track of any money and stock the saga held.
    """

    def __init__(
        self,
        store: OrderStore,
        log_: SagaLog,
        outbox: Outbox,
        relay: Relay,
        partners: Partners,
        faults: Faults,
        *,
        durable: bool = True,
        timeout: float = CALL_TIMEOUT,
    ) -> None:
        self.store = store
        self.log = log_
        self.outbox = outbox
        self.relay = relay
        self.partners = partners
        self.faults = faults
        self.durable = durable
        self.timeout = timeout
        self.running: dict[str, asyncio.Future[Any]] = {}
        """The sagas this process runs now, by order id (recovery leaves them alone)."""

    # -- running a saga in a task of its own ---------------------------------------------

    async def _own(self, order_id: str, work: Awaitable[T]) -> T:
        """Run ``work`` in a task the caller's cancellation does not stop (a client that
        hangs up must not leave a saga half done), registered as running."""
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self.running[order_id] = task
        task.add_done_callback(lambda _: self.running.pop(order_id, None))
        return await asyncio.shield(task)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the sagas running now to finish (forward or
        compensated); how many are still running then (left to recovery, with a warning)."""
        running = list(self.running.values())
        if running:
            await asyncio.wait(running, timeout=timeout)
        left = sum(1 for task in running if not task.done())
        if left:
            log.warn("sagas still running at stop, left to recovery", sagas=left)
        return left

    def _crash_point(self, step: str) -> None:
        if self.faults.choice(CRASH_SWITCH) == step:
            print(f"checkout: crash_after={step}: killing myself", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    @contextmanager
    def _span(self, name: str, order_id: str, context: Context | None = None) -> Iterator[None]:
        with TRACER.start_as_current_span(
            f"saga {name}", context=context, attributes={"app.order.id": order_id}
        ):
            yield

    async def _call(self, step: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise StepFailed(step, exc) from None

    # -- writing its state -----------------------------------------------------------------

    async def _write(
        self,
        order_id: str,
        *,
        kind: str = PLACE,
        step: str,
        state: str = FORWARD,
        reason: str = "",
        move: tuple[str, str] | None = None,
        transaction_id: str | None = None,
        result: pb.OrderResult | None = None,
        placed: Plan | None = None,
    ) -> None:
        """Commit the saga's next step with what the last one caused: a status move (to,
        reason) with its event, the order's payment or result (its tracking id), its
        OrderPlaced event. The relay is woken when the saga ends (its events go out
        together; one of a step before waits that long, or the relay's poll)."""
        if not self.durable:
            return
        async with self.store.db.transaction() as tx:
            await self.store.settle(tx, order_id, transaction_id=transaction_id, result=result)
            if move is not None:
                await self.store.move(tx, order_id, move[0], move[1], trace_id(), self.outbox)
            if placed is not None:
                event = order_placed(
                    placed.result, user_id=placed.user_id, email=placed.email, total=placed.total
                )
                await self.outbox.add(tx, ORDER_PLACED, event)
            await self.log.write(tx, order_id, kind=kind, step=step, state=state, reason=reason)
        if state == DONE:
            self.relay.wake()

    # -- placing an order ---------------------------------------------------------------

    async def place(self, plan: Plan) -> pb.OrderResult:
        """Place the order: its result with the tracking id once it is SHIPPED.

        `StepFailed` once a step failed and the saga was compensated (or, a
        compensation failing too, left to recovery)."""
        return await self._own(plan.order_id, self._place(plan))

    async def _place(self, plan: Plan) -> pb.OrderResult:
        carrier = dict(messaging.inject({}))
        with self._span(CREATE, plan.order_id):
            if self.durable:
                async with self.store.db.transaction() as tx:
                    await self.store.create(
                        tx,
                        plan.result,
                        user_id=plan.user_id,
                        email=plan.email,
                        total=plan.total,
                        trace_id=trace_id(),
                    )
                    await self.log.write(
                        tx, plan.order_id, kind=PLACE, step=RESERVE, carrier=carrier
                    )
            self._crash_point(CREATE)
        return await self._forward(plan, RESERVE)

    async def _forward(self, plan: Plan, step: str) -> pb.OrderResult:
        """Take the steps from ``step`` on; compensate when one fails."""
        order_id = plan.order_id
        result = pb.OrderResult()
        result.CopyFrom(plan.result)
        transaction_id = ""
        outer = trace.get_current_span()  # PlaceOrder's (or recovery's): the milestones
        try:
            if step == RESERVE:
                with self._span(RESERVE, order_id):
                    await self._reserve(plan)
                    await self._write(order_id, step=CHARGE)
                    self._crash_point(RESERVE)
                step = CHARGE
            if step == CHARGE:
                if plan.card is None:
                    raise ValueError("a saga resumed without its card cannot charge")
                with self._span(CHARGE, order_id):
                    transaction_id = await self._charge(plan, plan.card)
                    outer.add_event("charged", {"transaction_id": transaction_id})
                    await self._write(
                        order_id,
                        step=SHIP,
                        move=(PAID, "payment charged"),
                        transaction_id=transaction_id,
                    )
                    self._crash_point(CHARGE)
                step = SHIP
            if step == SHIP:
                with self._span(SHIP, order_id):
                    result.shipping_tracking_id = await self._ship(plan)
                    outer.add_event("shipped", {"tracking_id": result.shipping_tracking_id})
                    await self._write(order_id, step=COMPLETE, result=result)
                    self._crash_point(SHIP)
        except StepFailed as failure:
            log.warn("order failed, compensating", order_id=order_id, reason=failure.reason)
            try:
                await self.compensate(plan, failure.step, failure.reason)
            except Exception as exc:  # left to recovery, which compensates again
                log.error("order compensation failed", order_id=order_id, exc=exc)
            raise
        placed = Plan(result, plan.user_id, plan.email, plan.total)
        await self._complete(placed, transaction_id)
        return result

    async def _reserve(self, plan: Plan) -> None:
        lines = [
            ipb.ReservationLine(product_id=i.item.product_id, quantity=i.item.quantity)
            for i in plan.result.items
        ]
        request = ipb.ReserveRequest(order_id=plan.order_id, items=lines)
        await self._call(RESERVE, self.partners.inventory.Reserve(request, timeout=self.timeout))

    async def _charge(self, plan: Plan, card: pb.CreditCardInfo) -> str:
        request = lpb.ChargeOrderRequest(
            order_id=plan.order_id, user_id=plan.user_id, amount=plan.total, credit_card=card
        )
        payment = await self._call(
            CHARGE, self.partners.ledger.ChargeOrder(request, timeout=self.timeout)
        )
        trace.get_current_span().set_attribute("app.payment.id", payment.id)
        return payment.transaction_id

    async def _ship(self, plan: Plan) -> str:
        result = plan.result
        request = pb.ShipOrderRequest(
            address=result.shipping_address, items=[i.item for i in result.items]
        )
        shipped = await self._call(
            SHIP,
            self.partners.shipping.ShipOrder(
                request, timeout=self.timeout, metadata=((ORDER_ID_METADATA, plan.order_id),)
            ),
        )
        trace.get_current_span().set_attribute("app.order.tracking_id", shipped.tracking_id)
        return shipped.tracking_id

    async def _complete(self, plan: Plan, transaction_id: str) -> None:
        """Commit the stock, empty the cart, mark the order SHIPPED with its OrderPlaced
        event. A commit that cannot be made now leaves the step to recovery (the order
        is paid and labelled: it only goes forward)."""
        order_id = plan.order_id
        with self._span(COMPLETE, order_id):
            try:
                await self.partners.inventory.Commit(
                    ipb.CommitRequest(order_id=order_id), timeout=self.timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.NOT_FOUND,
                ):
                    log.warn("stock not committed yet; recovery retries", order_id=order_id)
                    return
                # the reservation's stock is gone (expired and sold, or released): the
                # parcel is labelled and paid, so the order goes on, the gap in plain view
                log.error(
                    "stock of a shipped order not committed",
                    order_id=order_id,
                    reason=exc.details(),
                )
                trace.get_current_span().set_status(
                    trace.StatusCode.ERROR, f"stock not committed: {exc.details()}"
                )
            try:
                await self.partners.cart.EmptyCart(
                    pb.EmptyCartRequest(user_id=plan.user_id), timeout=self.timeout
                )
            except grpc.aio.AioRpcError as exc:
                log.error("order placed but the cart was not emptied", reason=exc.details())
            if self.durable:
                await self._write(
                    order_id, step=COMPLETE, state=DONE, move=(PLACED, "placed"), placed=plan
                )
                self._crash_point(COMPLETE)
            else:
                await self.store.record(
                    plan.result,
                    user_id=plan.user_id,
                    email=plan.email,
                    total=plan.total,
                    transaction_id=transaction_id,
                    trace_id=trace_id(),
                )

    # -- compensating -------------------------------------------------------------------

    async def compensate(self, plan: Plan, reached: str, reason: str) -> None:
        """Undo what the steps up to ``reached`` did (its own call may have taken effect
        before it failed), then mark the order FAILED with ``reason``."""
        order_id = plan.order_id
        with self._span("compensate", order_id):
            trace.get_current_span().set_attribute("app.saga.reason", reason)
            await self._write(order_id, step=reached, state=COMPENSATING, reason=reason)
            index = STEPS.index(reached)
            if index >= STEPS.index(SHIP):
                await self._void(order_id, required=False)
            if index >= STEPS.index(CHARGE):
                await self._refund(order_id, reason)
            if index >= STEPS.index(RESERVE):
                await self._release(order_id)
            order = await self.store.get(order_id) if self.durable else None
            move = None if order is None or order.status == FAILED else (FAILED, reason)
            await self._write(order_id, step=reached, state=DONE, reason=reason, move=move)

    async def _void(self, order_id: str, *, required: bool) -> bool:
        """Void the order's shipment, if it has one; False when the courier has it
        (an error unless not ``required``: a compensation cannot undo a pickup)."""
        with self._span(VOID, order_id):
            try:
                shipment = await self.partners.shipments.GetOrderShipment(
                    spb.GetOrderShipmentRequest(order_id=order_id), timeout=self.timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return True  # never labelled
                raise
            try:
                await self.partners.shipments.VoidShipment(
                    spb.VoidShipmentRequest(tracking_id=shipment.tracking_id),
                    timeout=self.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                if not required:
                    log.error("a failed order's parcel is already with the courier")
                return False
        return True

    async def _refund(self, order_id: str, reason: str) -> None:
        with self._span(REFUND, order_id):
            try:
                await self.partners.ledger.Refund(
                    lpb.RefundRequest(order_id=order_id, reason=reason[:256]),
                    timeout=self.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: never charged
                    raise

    async def _release(self, order_id: str) -> None:
        with self._span(RELEASE, order_id):
            await self.partners.inventory.Release(
                ipb.ReleaseRequest(order_id=order_id), timeout=self.timeout
            )

    # -- cancelling -----------------------------------------------------------------------

    async def cancel(self, order: PlacedOrder, reason: str) -> PlacedOrder:
        """Cancel a shipped order: void its shipment, CANCELLED, refund, release.
        `Forbidden` (nothing changed) when the courier already has the parcel."""
        return await self._own(order.order_id, self._cancel(order, reason))

    async def _cancel(self, order: PlacedOrder, reason: str) -> PlacedOrder:
        carrier = dict(messaging.inject({}))
        with self._span("cancel", order.order_id):
            async with self.store.db.transaction() as tx:
                await self.log.write(
                    tx, order.order_id, kind=CANCEL, step=VOID, reason=reason, carrier=carrier
                )
            await self._cancel_from(order.order_id, VOID, reason)
        cancelled = await self.store.get(order.order_id)
        assert cancelled is not None
        return cancelled

    async def _cancel_from(self, order_id: str, step: str, reason: str) -> None:
        if step == VOID:
            if not await self._void(order_id, required=True):
                await self._write(order_id, kind=CANCEL, step=VOID, state=DONE, reason=reason)
                raise Forbidden("the courier already has the parcel")
            step = CANCELLING
        if step == CANCELLING:
            order = await self.store.get(order_id)
            move = None if order is None or order.status == CANCELLED else (CANCELLED, reason)
            await self._write(order_id, kind=CANCEL, step=REFUND, reason=reason, move=move)
            step = REFUND
        if step == REFUND:
            await self._refund(order_id, reason)
            await self._write(order_id, kind=CANCEL, step=RELEASE, reason=reason)
        await self._release(order_id)
        await self._write(order_id, kind=CANCEL, step=RELEASE, state=DONE, reason=reason)

    # -- recovery -------------------------------------------------------------------------

    async def resume(self, saga: SagaState) -> None:
        """Settle a saga its process left unfinished: forward past the payment,
        compensated before it, a cancellation finished; in the saga's trace."""
        order = await self.store.get(saga.order_id)
        if order is None:  # created and its saga row are one transaction: never happens
            log.error("a saga without its order", order_id=saga.order_id)
            return
        await self._own(saga.order_id, self._resume(saga, order))

    async def _resume(self, saga: SagaState, order: PlacedOrder) -> None:
        context = messaging.extract(saga.carrier)
        plan = Plan.of(order)
        with self._span("recover", saga.order_id, context):
            span = trace.get_current_span()
            span.set_attributes({"app.saga.step": saga.step, "app.saga.state": saga.state})
            log.info("resuming a saga", order_id=saga.order_id, step=saga.step, state=saga.state)
            if saga.kind == CANCEL:
                try:
                    await self._cancel_from(saga.order_id, saga.step, saga.reason)
                except Forbidden:
                    log.warn("cancellation abandoned: the courier has the parcel")
            elif saga.state == COMPENSATING:
                await self.compensate(plan, saga.step, saga.reason)
            elif saga.step in (RESERVE, CHARGE) and order.status == PENDING:
                await self.compensate(plan, saga.step, INTERRUPTED)
            elif saga.step == COMPLETE:
                await self._complete(plan, order.transaction_id)
            else:
                with contextlib.suppress(StepFailed):  # compensated, the reason in its history
                    await self._forward(plan, saga.step)
