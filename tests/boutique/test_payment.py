"""Card validation and the Charge RPC: reasons, status codes, no card number in any log."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import grpc
import pytest

from clue import log
from reference_services.payment import service as payment
from reference_services.payment.card import CardError, CardType, luhn_ok, validate
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import rpc_error, serving, stub_for
from tests.conftest import Lines

TODAY = dt.date(2026, 6, 15)
VISA = "4432801561520454"


def card(number: str = VISA, year: int = 2027, month: int = 1, cvv: int = 672) -> pb.CreditCardInfo:
    return pb.CreditCardInfo(
        credit_card_number=number,
        credit_card_cvv=cvv,
        credit_card_expiration_year=year,
        credit_card_expiration_month=month,
    )


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("79927398710")


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        (VISA, CardType.VISA),
        ("4111 1111 1111 1111", CardType.VISA),
        ("4222222222222", CardType.VISA),
        ("5555-5555-5555-4444", CardType.MASTERCARD),
        ("2223003122003222", CardType.MASTERCARD),
    ],
)
def test_visa_and_mastercard_are_accepted(number: str, kind: CardType) -> None:
    assert validate(card(number), TODAY) is kind


def test_card_is_valid_through_its_expiry_month() -> None:
    assert validate(card(year=2026, month=6), TODAY) is CardType.VISA
    with pytest.raises(CardError, match="expired on 05/2026") as caught:
        validate(card(year=2026, month=5), TODAY)
    assert caught.value.reason == "expired" and "0454" in str(caught.value)


@pytest.mark.parametrize(
    ("number", "reason", "message"),
    [
        ("4432801561520455", "invalid_number", "ending 0455 is not valid"),
        ("44328015615", "invalid_number", "is not valid"),
        ("4432-8015-abcd-0454", "invalid_number", "only digits"),
        ("", "invalid_number", "only digits"),
        ("378282246310005", "type_not_accepted", "amex cards are not accepted"),
        ("6011111111111117", "type_not_accepted", "discover cards are not accepted"),
    ],
)
def test_refused_numbers_name_the_reason(number: str, reason: str, message: str) -> None:
    with pytest.raises(CardError, match=message) as caught:
        validate(card(number), TODAY)
    assert caught.value.reason == reason
    assert number.replace("-", "") not in str(caught.value) or not number


def test_bad_month_and_cvv() -> None:
    with pytest.raises(CardError, match="credit_card_expiration_month 13"):
        validate(card(month=13), TODAY)
    with pytest.raises(CardError, match="credit_card_cvv"):
        validate(card(cvv=-1), TODAY)


async def test_charge_over_grpc(lines: Lines) -> None:
    log.set_debug(True)  # payloads are logged in debug mode: the number must be masked
    usd = pb.Money(currency_code="USD", units=42, nanos=500_000_000)
    async with (
        serving("payment", await payment.build()) as service,
        stub_for(service, pb_grpc.PaymentServiceStub) as stub,
    ):
        reply = await stub.Charge(pb.ChargeRequest(amount=usd, credit_card=card(year=2099)))
        assert uuid.UUID(reply.transaction_id).version == 4

        bad = {
            "credit card ending 0454 expired on 03/2020": card(year=2020, month=3),
            "amex cards are not accepted, only VISA or MasterCard (card ending 0005)": card(
                "378282246310005", year=2099
            ),
            "credit card number ending 1234 is not valid": card("4000000000001234", year=2099),
        }
        for message, refused in bad.items():
            error = await rpc_error(stub.Charge(pb.ChargeRequest(amount=usd, credit_card=refused)))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == message

        amounts = {
            "amount must be positive": pb.Money(currency_code="USD"),
            "amount.nanos 5 has a different sign from amount.units -1": pb.Money(
                currency_code="USD", units=-1, nanos=5
            ),
            "amount.currency_code '' is not an ISO 4217 code (three capital letters)": pb.Money(
                units=3
            ),
        }
        for message, amount in amounts.items():
            request = pb.ChargeRequest(amount=amount, credit_card=card(year=2099))
            error = await rpc_error(stub.Charge(request))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == message

        service.wiring.faults.set({"failure_rate": "1"})  # type: ignore[union-attr]
        error = await rpc_error(
            stub.Charge(pb.ChargeRequest(amount=usd, credit_card=card(year=2099)))
        )
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert error.details() == "payment processor unavailable (injected fault failure_rate)"
    assert lines.entries("charge failed")[0]["card_last_four"] == "0454"
    charged = json.loads(lines.entries("request payload")[0]["payload"])
    assert charged["credit_card"] == {  # payloads were logged, never the card number
        "credit_card_number": "[REDACTED]",
        "credit_card_cvv": "[REDACTED]",
        "credit_card_expiration_year": 2099,
        "credit_card_expiration_month": 1,
    }
    assert VISA not in lines.text
    assert "378282246310005" not in lines.text
