"""Exchange rates and the conversion algorithm of the boutique's currency service.

Rates are units of each currency per 1 EUR. Conversion goes through EUR:
divide units and nanos separately by the source rate, carry, round the euro
nanos half-up, multiply by the target rate, carry again and floor both fields.
The float arithmetic is deliberate: it gives the same answers as the classic
demo's service, to the nano.
"""

from __future__ import annotations

import math

from reference_services.common import money
from reference_services.common.rpc import quote
from reference_services.protos import hipstershop_pb2 as pb

RATES: dict[str, float] = {
    "EUR": 1.0,
    "USD": 1.1305,
    "JPY": 126.40,
    "BGN": 1.9558,
    "CZK": 25.592,
    "DKK": 7.4609,
    "GBP": 0.85970,
    "HUF": 315.51,
    "PLN": 4.2996,
    "RON": 4.7463,
    "SEK": 10.5375,
    "CHF": 1.1360,
    "ISK": 136.80,
    "NOK": 9.8040,
    "HRK": 7.4210,
    "RUB": 74.4208,
    "TRY": 6.1247,
    "AUD": 1.6072,
    "BRL": 4.2682,
    "CAD": 1.5128,
    "CNY": 7.5857,
    "HKD": 8.8743,
    "IDR": 15999.40,
    "ILS": 4.0875,
    "INR": 79.4320,
    "KRW": 1275.05,
    "MXN": 21.7999,
    "MYR": 4.6289,
    "NZD": 1.6679,
    "PHP": 59.083,
    "SGD": 1.5349,
    "THB": 36.012,
    "ZAR": 16.0583,
}

_NANOS = float(money.NANOS_PER_UNIT)


def supported() -> list[str]:
    """The supported currency codes."""
    return list(RATES)


def rate(code: str, field: str) -> float:
    """The rate of ``code``; MoneyError when malformed or unknown."""
    money.check_code(code, field)
    try:
        return RATES[code]
    except KeyError:
        raise money.MoneyError(f"{field} {quote(code)} is not a supported currency") from None


def _carry(units: float, nanos: float) -> tuple[float, float]:
    """Move fractional units into nanos and whole billions of nanos into units."""
    nanos += math.fmod(units, 1.0) * _NANOS
    units = math.floor(units) + math.floor(nanos / _NANOS)
    return units, math.fmod(nanos, _NANOS)


def _round_half_up(x: float) -> float:
    return math.floor(x + 0.5)


def convert(amount: pb.Money, to_code: str) -> pb.Money:
    """``amount`` expressed in ``to_code``; MoneyError for a bad amount or code."""
    money.check(amount, "from")
    source = rate(amount.currency_code, "from.currency_code")
    target = rate(to_code, "to_code")
    euro_units, euro_nanos = _carry(amount.units / source, amount.nanos / source)
    euro_nanos = _round_half_up(euro_nanos)
    units, nanos = _carry(euro_units * target, euro_nanos * target)
    whole = money.whole_units(math.floor(units))
    return pb.Money(currency_code=to_code, units=whole, nanos=math.floor(nanos))
