"""The page tokens and times the stores give out keep their form: a token a client
holds from an earlier release still parses to the same place, times read the same."""

from __future__ import annotations

import pytest

from reference_services.checkout.order_service import to_proto
from reference_services.checkout.orders import PlacedOrder
from reference_services.common.pages import Cursor
from reference_services.common.timestamps import rfc3339_ms, rfc3339_ms_or_empty
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.user.store import User

#: tokens as the payment, notification and order stores wrote them before they shared one
ISSUED = {
    "MzA6cC0x": Cursor(30, "p-1"),
    "MTc2NDQ2NDAwMDAwMTAwMDAwMDo5Zjg2ZDA4MS04ODRjLTRkNjMtOGYxYy00YjRjOGE5ZTBmMTE": Cursor(
        1764464000001000000, "9f86d081-884c-4d63-8f1c-4b4c8a9e0f11"
    ),
}


@pytest.mark.parametrize("token", ISSUED)
def test_a_token_issued_before_parses_to_the_same_place_and_is_written_the_same(
    token: str,
) -> None:
    assert Cursor.parse(token) == ISSUED[token]
    assert ISSUED[token].token() == token


def test_an_id_with_the_separator_in_it_comes_back_whole() -> None:
    cursor = Cursor(5, "a:b")
    assert Cursor.parse(cursor.token()) == cursor


@pytest.mark.parametrize("token", ["", "nope", "OjE", "MTI6", "YWI6Yw", "_w"])
def test_what_is_not_a_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not a page token"):
        Cursor.parse(token)


def test_times_are_rfc3339_to_the_millisecond_cut_not_rounded() -> None:
    assert rfc3339_ms(1764464000_001_000_000) == "2025-11-30T00:53:20.001Z"
    assert rfc3339_ms(1764464000_000_999_999) == "2025-11-30T00:53:20.000Z"
    assert rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_ms_or_empty(None) == ""
    assert rfc3339_ms_or_empty(30_000_000) == "1970-01-01T00:00:00.030Z"


def test_an_account_and_an_order_show_their_times_cut_too() -> None:
    """A time a nanosecond short of a second is that second's last millisecond (through a
    float it read as the next second)."""
    late = 1_796_596_525_999_999_999
    user = User(id="u", email="e@example.com", name="n", role="", created_at_ns=late)
    assert user.created_at == "2026-12-06T22:35:25.999Z"
    order = to_proto(
        PlacedOrder(
            order_id="o",
            user_id="u",
            email="e@example.com",
            total=pb.Money(currency_code="USD", units=1),
            transaction_id="t",
            result=pb.OrderResult(order_id="o"),
            placed_at_ns=late,
        )
    )
    assert order.placed_at == "2026-12-06T22:35:25.999Z"
