"""The bounds of every request field, and the checks the services share.

Each check raises INVALID_ARGUMENT naming the field. A value's size is checked
before anything else is done with it, and error messages quote at most a short
prefix (`rpc.quote`). The table in docs/boutique.md ("Input limits") lists them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from reference_services.common import money
from reference_services.common.rpc import invalid_argument, quote
from reference_services.protos import hipstershop_pb2 as pb

MAX_ID = 128
"""user_id, order_id and tracking ids."""
MAX_PRODUCT_ID = 64
MAX_EMAIL = 254
"""The longest address SMTP can carry (RFC 5321)."""
MAX_STREET = 256
MAX_PLACE = 128
"""city, state and country."""
MAX_LINES = 100
"""Lines (distinct products) in a cart, an order or a shipment."""
MAX_QUANTITY = 1000
"""Units of one product in a line."""
MAX_CARD_NUMBER = 32
"""Characters of a card number (19 digits at most, with spaces or dashes)."""

_ID = re.compile(r"[!-~]+")  # visible ASCII: no spaces, no control characters
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _unprintable(value: str) -> int:
    """The index of the first character that is neither printable nor a space, or -1."""
    if value.isprintable():
        return -1
    for i, ch in enumerate(value):
        if not ch.isprintable() and unicodedata.category(ch) != "Zs":
            return i
    return -1


def text(value: str, field: str, limit: int, *, required: bool = True) -> str:
    """``value`` if at most ``limit`` printable characters (spaces allowed) and, when
    ``required``, not blank."""
    if len(value) > limit:
        raise invalid_argument(f"{field} is {len(value)} characters long, more than {limit}")
    if required and not value.strip():
        raise invalid_argument(f"{field} must not be empty")
    bad = _unprintable(value)
    if bad >= 0:
        raise invalid_argument(
            f"{field} holds a control character (U+{ord(value[bad]):04X}) at position {bad}"
        )
    return value


def identifier(value: str, field: str, limit: int = MAX_ID) -> str:
    """``value`` if 1..``limit`` visible ASCII characters (no spaces)."""
    text(value, field, limit)
    if not _ID.fullmatch(value):
        raise invalid_argument(
            f"{field} {quote(value)} may hold only visible ASCII characters, no spaces"
        )
    return value


def email(value: str, field: str = "email") -> str:
    """``value`` if it looks like ``name@domain.tld`` and is at most `MAX_EMAIL` long."""
    text(value, field, MAX_EMAIL)
    if not _EMAIL.fullmatch(value):
        raise invalid_argument(f"{field} {quote(value)} is not an email address")
    return value


def count(values: Sequence[object], field: str, limit: int) -> None:
    """INVALID_ARGUMENT when ``values`` holds more than ``limit`` entries."""
    if len(values) > limit:
        raise invalid_argument(f"{field} holds {len(values)} entries, more than {limit}")


def address(value: pb.Address, field: str = "address", *, required: bool = True) -> pb.Address:
    """A bounded address; with ``required``, street, city and country must be given."""
    text(value.street_address, f"{field}.street_address", MAX_STREET, required=required)
    text(value.city, f"{field}.city", MAX_PLACE, required=required)
    text(value.state, f"{field}.state", MAX_PLACE, required=False)
    text(value.country, f"{field}.country", MAX_PLACE, required=required)
    if value.zip_code < 0:
        raise invalid_argument(f"{field}.zip_code {value.zip_code} is negative")
    return value


def quantity(value: int, field: str) -> int:
    """``value`` if within 1..`MAX_QUANTITY`."""
    if not 1 <= value <= MAX_QUANTITY:
        raise invalid_argument(f"{field} {value} is outside 1..{MAX_QUANTITY}")
    return value


def cart_item(item: pb.CartItem, field: str) -> pb.CartItem:
    """A product id and a quantity within bounds."""
    identifier(item.product_id, f"{field}.product_id", MAX_PRODUCT_ID)
    quantity(item.quantity, f"{field}.quantity")
    return item


def cart_items(items: Sequence[pb.CartItem], field: str = "items") -> int:
    """At most `MAX_LINES` valid items; their total quantity."""
    count(items, field, MAX_LINES)
    for i, item in enumerate(items):
        cart_item(item, f"{field}[{i}]")
    return sum(item.quantity for item in items)


def price(value: pb.Money, field: str) -> pb.Money:
    """A well-formed, bounded amount that is not negative."""
    money.check(value, field)
    if value.units < 0 or value.nanos < 0:
        raise invalid_argument(f"{field} {money.format_money(value)} is negative")
    return value
