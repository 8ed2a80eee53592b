"""Credit card validation: number (Luhn and length), type, expiry.

Only VISA and MasterCard are accepted. Error messages never hold the full
number, only its last four digits.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum

from reference_services.common.fields import MAX_CARD_NUMBER
from reference_services.protos import hipstershop_pb2 as pb

MAX_YEARS_AHEAD = 99
"""How far ahead an expiry year may be (a card prints it with two digits)."""


class CardError(ValueError):
    """A card that cannot be charged; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CardType(Enum):
    """The card types the shop knows."""

    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    UNKNOWN = "unknown"


_LENGTHS = {
    CardType.VISA: (13, 16, 19),
    CardType.MASTERCARD: (16,),
    CardType.AMEX: (15,),
    CardType.DISCOVER: (16, 19),
}
ACCEPTED = (CardType.VISA, CardType.MASTERCARD)


def digits_of(number: str) -> str:
    """The number without spaces and dashes; CardError if anything else is not a digit."""
    if len(number) > MAX_CARD_NUMBER:
        raise CardError(
            "invalid_number", f"credit_card_number is longer than {MAX_CARD_NUMBER} characters"
        )
    cleaned = number.replace(" ", "").replace("-", "")
    if not cleaned.isdigit() or not cleaned.isascii():
        raise CardError("invalid_number", "credit_card_number must hold only digits")
    return cleaned


def last_four(number: str) -> str:
    """The last four characters, the only part of a card number ever shown."""
    return number[-4:]


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_type(digits: str) -> CardType:
    """The card type told by the number's prefix."""
    if digits.startswith("4"):
        return CardType.VISA
    if 51 <= int(digits[:2] or 0) <= 55 or 2221 <= int(digits[:4] or 0) <= 2720:
        return CardType.MASTERCARD
    if digits[:2] in ("34", "37"):
        return CardType.AMEX
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3] or 0) <= 649:
        return CardType.DISCOVER
    return CardType.UNKNOWN


def validate(card: pb.CreditCardInfo, today: dt.date) -> CardType:
    """The card's type if it can be charged on ``today``; CardError otherwise."""
    digits = digits_of(card.credit_card_number)
    kind = card_type(digits)
    tail = last_four(digits)
    if len(digits) not in _LENGTHS.get(kind, range(12, 20)) or not luhn_ok(digits):
        raise CardError("invalid_number", f"credit card number ending {tail} is not valid")
    if kind not in ACCEPTED:
        raise CardError(
            "type_not_accepted",
            f"{kind.value} cards are not accepted, only VISA or MasterCard (card ending {tail})",
        )
    if not 0 <= card.credit_card_cvv <= 9999:
        raise CardError("invalid_cvv", "credit_card_cvv must have 3 or 4 digits")
    month, year = card.credit_card_expiration_month, card.credit_card_expiration_year
    if not 1 <= month <= 12:
        raise CardError("invalid_expiry", f"credit_card_expiration_month {month} is not 1..12")
    if year > today.year + MAX_YEARS_AHEAD:
        raise CardError(
            "invalid_expiry",
            f"credit_card_expiration_year {year} is more than {MAX_YEARS_AHEAD} years ahead",
        )
    if (year, month) < (today.year, today.month):
        raise CardError("expired", f"credit card ending {tail} expired on {month:02d}/{year}")
    return kind
