"""Paging of the list calls: the page size asked for, and the opaque page token that
says where the next page starts.

A list is ordered newest first by a time and then an id, so a page ends at its last
item's (time, id): the `Cursor`. Its token is that pair, ``<ns>:<id>``, in unpadded
URL-safe base64; a token given out once keeps parsing the same.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from reference_services.common.rpc import invalid_argument, quote

DEFAULT_PAGE_SIZE = 20
"""The page size of a call that asks for 0."""
MAX_PAGE_SIZE = 100
MAX_PAGE_TOKEN = 256
"""The longest page token taken (those given out are far shorter)."""
MAX_AT_NS = 2**63 - 1
"""The latest time a cursor holds: the stores keep it in a signed 64-bit integer."""


def cursor_time(text: str) -> int:
    """The ``<ns>`` of a token: ASCII digits up to `MAX_AT_NS`; ValueError otherwise
    (a larger number would reach the database and fail there, not as a bad token)."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_AT_NS:
        raise ValueError("not a page token")
    return int(text)


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: its last item's time (ns since the epoch) and id."""

    at_ns: int
    id: str

    def token(self) -> str:
        """The opaque page token standing for this cursor."""
        raw = f"{self.at_ns}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """The cursor a `token` stands for; ValueError if it is not one."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a page token") from None
        at, sep, id_ = raw.partition(":")
        if not sep or not id_:
            raise ValueError("not a page token")
        return cls(cursor_time(at), id_)


def page_size(value: int) -> int:
    """The page size asked for: 0 is the default, else 1..`MAX_PAGE_SIZE`
    (INVALID_ARGUMENT otherwise)."""
    if not 0 <= value <= MAX_PAGE_SIZE:
        raise invalid_argument(f"page_size {value} is outside 0..{MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def page_token(value: str) -> Cursor | None:
    """Where the page starts: None for the first page; INVALID_ARGUMENT for a token
    this service did not give."""
    if not value:
        return None
    if len(value) > MAX_PAGE_TOKEN:
        raise invalid_argument(
            f"page_token is {len(value)} characters long, more than {MAX_PAGE_TOKEN}"
        )
    try:
        return Cursor.parse(value)
    except ValueError:
        message = f"page_token {quote(value)} is not a token this service gave"
        raise invalid_argument(message) from None
