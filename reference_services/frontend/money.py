"""How the web shop shows money: the offered currencies and their symbols."""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce

from reference_services.common.money import add, from_nanos, multiply
from reference_services.protos import hipstershop_pb2 as pb

__all__ = ["SHOP_CURRENCIES", "SYMBOLS", "multiply", "render", "total"]

#: Currencies offered by the selector, in display order.
SHOP_CURRENCIES = ("EUR", "USD", "JPY", "GBP", "TRY", "CAD")

SYMBOLS = {"USD": "$", "CAD": "$", "EUR": "€", "JPY": "¥", "GBP": "£", "TRY": "₺"}


def total(currency_code: str, amounts: Iterable[pb.Money]) -> pb.Money:
    """The sum of ``amounts``, all in ``currency_code`` (zero when empty)."""
    return reduce(add, amounts, from_nanos(currency_code, 0))


def render(money: pb.Money) -> str:
    """Display form: symbol, units and two decimals, e.g. ``$19.99``."""
    sign = "-" if money.units < 0 or money.nanos < 0 else ""
    units, cents = abs(money.units), abs(money.nanos) // 10_000_000
    symbol = SYMBOLS.get(money.currency_code, money.currency_code + " ")
    return f"{sign}{symbol}{units}.{cents:02d}"
