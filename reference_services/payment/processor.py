"""The card processor both payment RPCs go through: Charge and the ledger's ChargeOrder.

It checks the amount and the card, applies the ``failure_rate`` fault switch,
and counts, traces and logs each decline and charge. No money moves in the
demo: a charge is a new transaction id. A card number is never logged or
kept, only its last four digits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import metrics, trace

from clue import log
from reference_services.common import money
from reference_services.common.faults import Faults
from reference_services.common.rpc import RpcFailure, invalid_argument, unavailable
from reference_services.payment.card import CardError, CardType, digits_of, last_four, validate
from reference_services.protos import hipstershop_pb2 as pb

METER = metrics.get_meter("reference_services.payment")
FAILURES = METER.create_counter(
    "boutique.payment.failures", unit="{charge}", description="Declined charges, by reason"
)
CHARGES = METER.create_counter(
    "boutique.payment.charges", unit="{charge}", description="Successful charges"
)
FAILURE_RATE = "failure_rate"


@dataclass(frozen=True)
class Accepted:
    """A charge that may be made: its amount, and what may be known of its card (its
    type and last four digits)."""

    amount: pb.Money
    kind: CardType
    last_four: str


class Processor:
    """Validates and charges cards; ``switches`` holds the `FAILURE_RATE` switch."""

    def __init__(self, switches: Faults, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.faults = switches
        self.today = today

    def _decline(self, reason: str, failure: RpcFailure) -> RpcFailure:
        FAILURES.add(1, {"reason": reason})
        trace.get_current_span().set_attribute("app.payment.failure_reason", reason)
        log.warn("charge declined", reason=reason, message=failure.message)
        return failure

    def accept(self, amount: pb.Money | None, card: pb.CreditCardInfo) -> Accepted:
        """The charge if ``amount`` (None: missing) is positive and well formed and the card
        can be charged today; INVALID_ARGUMENT naming the reason otherwise."""
        if amount is None:
            raise self._decline("invalid_amount", invalid_argument("amount is required"))
        try:
            money.check(amount, "amount")
        except money.MoneyError as exc:
            raise self._decline("invalid_amount", exc) from None
        if money.to_nanos(amount) <= 0:
            raise self._decline("invalid_amount", invalid_argument("amount must be positive"))
        span = trace.get_current_span()
        span.set_attribute("app.payment.amount", money.format_money(amount))
        span.set_attribute("app.payment.currency", amount.currency_code)
        try:
            kind = validate(card, self.today())
        except CardError as exc:
            raise self._decline(exc.reason, invalid_argument(str(exc))) from None
        span.set_attribute("app.payment.card_type", kind.value)
        return Accepted(amount, kind, last_four(digits_of(card.credit_card_number)))

    def authorize(self, charge: Accepted) -> str:
        """A new transaction id for ``charge``; UNAVAILABLE when the
        `FAILURE_RATE` switch says the processor is down."""
        if self.faults.roll(FAILURE_RATE):
            FAILURES.add(1, {"reason": "processor_unavailable"})
            span = trace.get_current_span()
            span.set_attribute("app.payment.failure_reason", "processor_unavailable")
            tail = charge.last_four
            log.error("charge failed", reason="processor_unavailable", card_last_four=tail)
            raise unavailable("payment processor unavailable (injected fault failure_rate)")
        return str(uuid.uuid4())

    def charged(self, charge: Accepted, transaction: str, **context: str) -> None:
        """Count, trace and log a charge that went through (``context``: more log fields)."""
        amount = charge.amount
        CHARGES.add(1, {"currency": amount.currency_code, "card_type": charge.kind.value})
        trace.get_current_span().set_attribute("app.payment.transaction_id", transaction)
        log.info(
            "card charged",
            transaction_id=transaction,
            card_type=charge.kind.value,
            card_last_four=charge.last_four,
            amount=money.format_money(amount),
            **context,
        )
