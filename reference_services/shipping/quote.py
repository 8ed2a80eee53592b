"""Shipping cost and tracking ids."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable

from reference_services.protos import hipstershop_pb2 as pb

FLAT_RATE = pb.Money(currency_code="USD", units=8, nanos=990_000_000)


def quote(items: Iterable[pb.CartItem]) -> pb.Money:
    """USD 0 for nothing to ship, otherwise a flat USD 8.99."""
    total = sum(item.quantity for item in items)
    if total == 0:
        return pb.Money(currency_code="USD")
    result = pb.Money()
    result.CopyFrom(FLAT_RATE)
    return result


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def tracking_id(address: pb.Address) -> str:
    """A tracking id ``XX-NNNNN-NNNNNNNNN``: two letters, then digits.

    Each digit group starts with two digits derived from the length of the
    address (street, city and state), followed by random digits.
    """
    length = len(address.street_address + address.city + address.state)
    letters = "".join(secrets.choice(string.ascii_uppercase) for _ in range(2))
    return f"{letters}-{length % 100:02d}{_digits(3)}-{length // 2 % 100:02d}{_digits(7)}"
