"""Catalog ids and a valid checkout form, shared by the tests that shop through the frontend."""

from __future__ import annotations

import datetime

SUNGLASSES, MUG, WATCH = "OLJCESPC7Z", "6E92ZMYYFZ", "1YMWWN1N4O"
ORDER_FORM = {
    "email": "someone@example.com",
    "street_address": "1600 Amphitheatre Parkway",
    "zip_code": "94043",
    "city": "Mountain View",
    "state": "CA",
    "country": "United States",
    "credit_card_number": "4432-8015-6152-0454",
    "credit_card_expiration_month": "1",
    "credit_card_expiration_year": str(datetime.date.today().year + 1),
    "credit_card_cvv": "672",
}
