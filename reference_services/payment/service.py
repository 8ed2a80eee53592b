"""PaymentService over gRPC, with its failure-rate switch."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from opentelemetry import metrics, trace

from clue import log
from reference_services.common import money
from reference_services.common.faults import Faults, Rate
from reference_services.common.rpc import Context, RpcFailure, invalid_argument, rpc, unavailable
from reference_services.common.runtime import Entry, Wiring
from reference_services.payment.card import CardError, digits_of, last_four, validate
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc

METER = metrics.get_meter("reference_services.payment")
FAILURES = METER.create_counter(
    "boutique.payment.failures", unit="{charge}", description="Declined charges, by reason"
)
CHARGES = METER.create_counter(
    "boutique.payment.charges", unit="{charge}", description="Successful charges"
)


def faults() -> Faults:
    """The payment switch: a share of charges fails as if the processor were down."""
    return Faults(Rate("failure_rate", "share of charges that fail (processor unavailable)"))


class Payment(pb_grpc.PaymentServiceServicer):
    """Validates cards and charges them; never logs a full card number."""

    def __init__(self, switches: Faults, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.faults = switches
        self.today = today

    def _decline(self, reason: str, failure: RpcFailure) -> RpcFailure:
        FAILURES.add(1, {"reason": reason})
        span = trace.get_current_span()
        span.set_attribute("app.payment.failure_reason", reason)
        log.warn("charge declined", reason=reason, message=failure.message)
        return failure

    @rpc
    async def Charge(self, request: pb.ChargeRequest, context: Context) -> pb.ChargeResponse:
        """A transaction id; INVALID_ARGUMENT naming the reason a card is refused."""
        if not request.HasField("amount"):
            raise self._decline("invalid_amount", invalid_argument("amount is required"))
        try:
            money.check(request.amount, "amount")
        except money.MoneyError as exc:
            raise self._decline("invalid_amount", exc) from None
        if money.to_nanos(request.amount) <= 0:
            raise self._decline("invalid_amount", invalid_argument("amount must be positive"))
        span = trace.get_current_span()
        span.set_attribute("app.payment.amount", money.format_money(request.amount))
        span.set_attribute("app.payment.currency", request.amount.currency_code)
        try:
            kind = validate(request.credit_card, self.today())
        except CardError as exc:
            raise self._decline(exc.reason, invalid_argument(str(exc))) from None
        tail = last_four(digits_of(request.credit_card.credit_card_number))
        span.set_attribute("app.payment.card_type", kind.value)
        if self.faults.roll("failure_rate"):
            failure = unavailable("payment processor unavailable (injected fault failure_rate)")
            FAILURES.add(1, {"reason": "processor_unavailable"})
            span.set_attribute("app.payment.failure_reason", "processor_unavailable")
            log.error("charge failed", reason="processor_unavailable", card_last_four=tail)
            raise failure
        transaction = str(uuid.uuid4())
        CHARGES.add(1, {"currency": request.amount.currency_code, "card_type": kind.value})
        span.set_attribute("app.payment.transaction_id", transaction)
        log.info(
            "card charged",
            transaction_id=transaction,
            card_type=kind.value,
            card_last_four=tail,
            amount=money.format_money(request.amount),
        )
        return pb.ChargeResponse(transaction_id=transaction)


async def build() -> Wiring:
    """The payment servicer and its switch."""
    switches = faults()
    return Wiring(
        servicers=[(pb_grpc.add_PaymentServiceServicer_to_server, Payment(switches))],
        faults=switches,
    )


ENTRY = Entry("payment", build)
