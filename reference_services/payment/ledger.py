"""PaymentLedger over gRPC: charges recorded per order, refunds, and a user's payments.

ChargeOrder checks its card as the upstream Charge does (the same `Processor`,
its ``failure_rate`` switch included) and charges an order at most once: a
second call for the order answers the first payment and charges nothing.
Refund is idempotent too; a refund of an order not yet charged voids it, so that
a ChargeOrder arriving after it is refused. Each charge and refund is written with its event
(``boutique.payment.completed``, ``boutique.payment.refunded``) in one
transaction of the ledger's store, which the relay publishes. The RPCs are
internal, as the upstream ones: no access token.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from opentelemetry import metrics, trace

from clue import log
from reference_services.common import fields, money
from reference_services.common.database import StoreUnavailable
from reference_services.common.events import Relay
from reference_services.common.pages import page_size, page_token
from reference_services.common.rpc import (
    RpcFailure,
    failed_precondition,
    invalid_argument,
    not_found,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.timestamps import rfc3339_ms, rfc3339_ms_or_empty
from reference_services.payment.ledger_store import (
    CHARGED,
    REFUNDED,
    VOIDED,
    LedgerStore,
    Payment,
)
from reference_services.payment.processor import Processor
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import ledger_pb2 as lpb
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc

METER = metrics.get_meter("reference_services.payment")
REFUNDS = METER.create_counter(
    "boutique.payment.refunds", unit="{refund}", description="Payments refunded, by currency"
)
MAX_REASON = 256
#: stored status -> its wire value
STATUSES = {CHARGED: lpb.PAYMENT_STATUS_CHARGED, REFUNDED: lpb.PAYMENT_STATUS_REFUNDED}


def to_proto(payment: Payment) -> lpb.Payment:
    """A recorded payment on the wire."""
    return lpb.Payment(
        id=payment.id,
        order_id=payment.order_id,
        user_id=payment.user_id,
        amount=payment.amount,
        status=STATUSES[payment.status],
        transaction_id=payment.transaction_id,
        charged_at=rfc3339_ms(payment.charged_at_ns),
        refunded_at=rfc3339_ms_or_empty(payment.refunded_at_ns),
        refund_reason=payment.refund_reason,
    )


def same_charge(payment: Payment, user_id: str, amount: pb.Money) -> Payment:
    """``payment`` if it is the charge asked for again (same user and amount);
    INVALID_ARGUMENT naming the field that differs otherwise, FAILED_PRECONDITION
    if the order was refunded before any charge."""
    if payment.status == VOIDED:
        raise failed_precondition(
            f"order {quote(payment.order_id)} was refunded before it was charged:"
            " it cannot be charged any more"
        )
    if payment.user_id != user_id:
        raise invalid_argument(
            f"user_id {quote(user_id)} is not the user the order was charged for"
        )
    old, new = payment.amount, amount
    if old.currency_code != new.currency_code or money.to_nanos(old) != money.to_nanos(new):
        raise invalid_argument(
            f"amount {money.format_money(new)} differs from the"
            f" {money.format_money(old)} the order was charged"
        )
    return payment


def store_down(exc: StoreUnavailable) -> RpcFailure:
    return unavailable(f"payment store: {exc}")


class Ledger(lpb_grpc.PaymentLedgerServicer):
    """Charges through ``processor`` and records them in ``store``, whose events
    ``relay`` publishes."""

    def __init__(self, store: LedgerStore, processor: Processor, relay: Relay) -> None:
        self.store = store
        self.processor = processor
        self.relay = relay

    async def _get(self, order_id: str) -> Payment | None:
        try:
            return await self.store.get(order_id)
        except StoreUnavailable as exc:
            raise store_down(exc) from None

    @rpc
    async def ChargeOrder(self, request: lpb.ChargeOrderRequest, context: Any) -> lpb.Payment:
        """The order's payment: charged now, or the one charged before."""
        order_id = fields.identifier(request.order_id, "order_id")
        user_id = fields.identifier(request.user_id, "user_id")
        span = trace.get_current_span()
        span.set_attribute("app.order.id", order_id)
        charge = self.processor.accept(
            request.amount if request.HasField("amount") else None, request.credit_card
        )
        amount = charge.amount
        before = await self._get(order_id)
        if before is not None:
            answer = same_charge(before, user_id, amount)
            span.set_attribute("app.payment.id", answer.id)
            log.info("order already charged", order_id=order_id, payment_id=answer.id)
            return to_proto(answer)
        transaction = self.processor.authorize(charge)
        payment = Payment(
            id=str(uuid.uuid4()),
            order_id=order_id,
            user_id=user_id,
            amount=amount,
            status=CHARGED,
            transaction_id=transaction,
            card_type=charge.kind.value,
            card_last_four=charge.last_four,
            charged_at_ns=time.time_ns(),
        )
        try:
            recorded, new = await self.store.charge(payment)
        except StoreUnavailable as exc:
            raise store_down(exc) from None
        if not new:  # a concurrent call charged (or a refund voided) the order first
            answer = same_charge(recorded, user_id, amount)
            log.info("order already charged", order_id=order_id, payment_id=answer.id)
            return to_proto(answer)
        span.set_attribute("app.payment.id", recorded.id)
        self.relay.wake()
        self.processor.charged(charge, transaction, order_id=order_id, payment_id=payment.id)
        return to_proto(payment)

    @rpc
    async def Refund(self, request: lpb.RefundRequest, context: Any) -> lpb.Payment:
        """The order's payment refunded (now, or by an earlier call); NOT_FOUND if none."""
        order_id = fields.identifier(request.order_id, "order_id")
        reason = fields.text(request.reason, "reason", MAX_REASON, required=False)
        trace.get_current_span().set_attribute("app.order.id", order_id)
        try:
            payment, refunded = await self.store.refund(order_id, reason, time.time_ns())
        except StoreUnavailable as exc:
            raise store_down(exc) from None
        if payment is None:
            raise not_found(f"order {quote(order_id)} was never charged")
        if refunded:
            self.relay.wake()
            REFUNDS.add(1, {"currency": payment.amount.currency_code})
            log.info(
                "payment refunded",
                order_id=order_id,
                payment_id=payment.id,
                amount=money.format_money(payment.amount),
                reason=reason,
            )
        return to_proto(payment)

    @rpc
    async def GetPayment(self, request: lpb.GetPaymentRequest, context: Any) -> lpb.Payment:
        """The order's payment; NOT_FOUND if the order was never charged."""
        order_id = fields.identifier(request.order_id, "order_id")
        payment = await self._get(order_id)
        if payment is None or payment.status == VOIDED:
            raise not_found(f"order {quote(order_id)} was never charged")
        return to_proto(payment)

    @rpc
    async def ListPayments(
        self, request: lpb.ListPaymentsRequest, context: Any
    ) -> lpb.ListPaymentsResponse:
        """The user's payments, newest first, from ``page_token`` on."""
        user_id = fields.identifier(request.user_id, "user_id")
        size = page_size(request.page_size)
        after = page_token(request.page_token)
        try:
            found, following = await self.store.page(user_id, size, after)
        except StoreUnavailable as exc:
            raise store_down(exc) from None
        return lpb.ListPaymentsResponse(
            payments=[to_proto(p) for p in found],
            next_page_token=following.token() if following else "",
        )
