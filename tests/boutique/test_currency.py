"""Currency conversion: the exact algorithm, half-up rounding, and bad input over gRPC."""

from __future__ import annotations

import grpc
import pytest

from reference_services.common.money import MoneyError
from reference_services.currency import rates
from reference_services.currency import service as currency
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import rpc_error, serving, stub_for


def money(code: str, units: int, nanos: int = 0) -> pb.Money:
    return pb.Money(currency_code=code, units=units, nanos=nanos)


@pytest.mark.parametrize(
    ("amount", "to", "expected"),
    [
        (money("USD", 19, 990_000_000), "EUR", money("EUR", 17, 682_441_398)),
        (money("USD", 19, 990_000_000), "JPY", money("JPY", 2235, 60_592_707)),
        (money("USD", 100), "USD", money("USD", 100)),
        (money("EUR", 3, 500_000_000), "EUR", money("EUR", 3, 500_000_000)),
        (money("EUR", 1), "GBP", money("GBP", 0, 859_700_000)),
        (money("USD", 0), "TRY", money("TRY", 0)),
    ],
)
def test_convert_goes_through_eur_and_floors(amount: pb.Money, to: str, expected: pb.Money) -> None:
    assert rates.convert(amount, to) == expected


def test_euro_nanos_round_half_up_not_to_even(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(rates.RATES, "XTS", 2.0)
    # 5 / 2 = 2.5 and 9 / 2 = 4.5: half-up gives 3 and 5 (banker's rounding: 2 and 4)
    assert rates.convert(money("XTS", 0, 5), "EUR") == money("EUR", 0, 3)
    assert rates.convert(money("XTS", 0, 9), "EUR") == money("EUR", 0, 5)


@pytest.mark.parametrize(
    ("amount", "to", "message"),
    [
        (money("usd", 1), "EUR", "from.currency_code 'usd' is not an ISO 4217 code"),
        (money("XYZ", 1), "EUR", "from.currency_code 'XYZ' is not a supported currency"),
        (money("USD", 1), "EURO", "to_code 'EURO' is not an ISO 4217 code"),
        (money("USD", 1), "ABC", "to_code 'ABC' is not a supported currency"),
        (money("USD", 1, 1_000_000_000), "EUR", "from.nanos 1000000000 is outside"),
        (money("USD", 1, -5), "EUR", "different sign"),
        (money("USD", -1, 5), "EUR", "different sign"),
    ],
)
def test_bad_amounts_and_codes_are_rejected(amount: pb.Money, to: str, message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        rates.convert(amount, to)


async def test_currency_service_over_grpc() -> None:
    async with (
        serving("currency", await currency.build()) as service,
        stub_for(service, pb_grpc.CurrencyServiceStub) as stub,
    ):
        codes = (await stub.GetSupportedCurrencies(pb.Empty())).currency_codes
        assert {"EUR", "USD", "JPY", "GBP", "TRY", "CAD"} <= set(codes) and len(codes) == 33
        request = pb.CurrencyConversionRequest(to_code="EUR")
        getattr(request, "from").CopyFrom(money("USD", 19, 990_000_000))
        assert await stub.Convert(request) == money("EUR", 17, 682_441_398)

        request.to_code = "XYZ"
        error = await rpc_error(stub.Convert(request))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "to_code 'XYZ' is not a supported currency"

        malformed = pb.CurrencyConversionRequest(to_code="EUR")
        getattr(malformed, "from").CopyFrom(money("USD", 2, -3))
        error = await rpc_error(stub.Convert(malformed))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "from.nanos -3 has a different sign from from.units 2"

        empty = pb.CurrencyConversionRequest(to_code="EUR")
        error = await rpc_error(stub.Convert(empty))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == (
            "from.currency_code '' is not an ISO 4217 code (three capital letters)"
        )
