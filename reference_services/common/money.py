"""Money arithmetic and validation on ``hipstershop.Money`` messages.

Amounts are handled as whole nanos (integers), so sums and products are exact;
a result whose units do not fit the wire's int64 is a MoneyError, never a crash.
"""

from __future__ import annotations

import re

import grpc

from reference_services.common.rpc import RpcFailure, quote
from reference_services.protos import hipstershop_pb2 as pb

NANOS_PER_UNIT = 1_000_000_000
INT64_MAX = 2**63 - 1
MAX_UNITS = 10**12
"""The largest amount (in whole units of any currency) a service accepts: the biggest
cart (100 lines of 1,000 units) of the dearest product, in rupiah, is about 1.6e11."""
_CODE = re.compile(r"[A-Z]{3}")


class MoneyError(RpcFailure):
    """A malformed, out-of-bounds or overflowing amount of money or currency code:
    answered INVALID_ARGUMENT."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_code(code: str, field: str = "currency_code") -> str:
    """``code`` if it looks like an ISO 4217 code (three capital letters), else MoneyError."""
    if not _CODE.fullmatch(code):
        raise MoneyError(f"{field} {quote(code)} is not an ISO 4217 code (three capital letters)")
    return code


def check(money: pb.Money, field: str = "money") -> pb.Money:
    """``money`` if well formed: valid code, nanos in range and of the units' sign,
    and units within ±`MAX_UNITS`."""
    check_code(money.currency_code, f"{field}.currency_code")
    if not -MAX_UNITS <= money.units <= MAX_UNITS:
        raise MoneyError(f"{field}.units {money.units} is outside -{MAX_UNITS}..{MAX_UNITS}")
    if not -NANOS_PER_UNIT < money.nanos < NANOS_PER_UNIT:
        raise MoneyError(f"{field}.nanos {money.nanos} is outside -999999999..999999999")
    if (money.units > 0 and money.nanos < 0) or (money.units < 0 and money.nanos > 0):
        raise MoneyError(
            f"{field}.nanos {money.nanos} has a different sign from {field}.units {money.units}"
        )
    return money


def whole_units(units: int) -> int:
    """``units`` if it fits the wire's int64, else MoneyError."""
    if not -INT64_MAX - 1 <= units <= INT64_MAX:
        raise MoneyError(f"the amount overflows: {units} units do not fit in 64 bits")
    return units


def to_nanos(money: pb.Money) -> int:
    """The amount as a whole number of nanos."""
    return money.units * NANOS_PER_UNIT + money.nanos


def from_nanos(currency_code: str, nanos: int) -> pb.Money:
    """A Money of ``nanos`` nanos; units and nanos carry the same sign."""
    units = abs(nanos) // NANOS_PER_UNIT
    rest = abs(nanos) % NANOS_PER_UNIT
    sign = -1 if nanos < 0 else 1
    return pb.Money(currency_code=currency_code, units=whole_units(sign * units), nanos=sign * rest)


def add(a: pb.Money, b: pb.Money) -> pb.Money:
    """``a + b``; both must be in the same currency."""
    if a.currency_code != b.currency_code:
        raise MoneyError(f"cannot add {quote(a.currency_code)} to {quote(b.currency_code)}")
    return from_nanos(a.currency_code, to_nanos(a) + to_nanos(b))


def multiply(money: pb.Money, factor: int) -> pb.Money:
    """``money * factor`` for a whole ``factor``."""
    return from_nanos(money.currency_code, to_nanos(money) * factor)


def format_money(money: pb.Money) -> str:
    """``"USD 19.99"``-style text (two decimals, truncated), for logs and emails."""
    total = to_nanos(money)
    sign = "-" if total < 0 else ""
    cents = abs(total) // (NANOS_PER_UNIT // 100)
    return f"{money.currency_code} {sign}{cents // 100}.{cents % 100:02d}"
