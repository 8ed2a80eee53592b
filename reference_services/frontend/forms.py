"""Validation of the shop's forms: each bad field is named with what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import FormData

from reference_services.frontend.session import CURRENCY_CODE

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_QUANTITY = 10


class FormError(Exception):
    """A form with bad fields: ``errors`` maps each field to its problem."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class CartForm:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class CheckoutForm:
    email: str
    street_address: str
    zip_code: int
    city: str
    state: str
    country: str
    credit_card_number: str
    credit_card_expiration_month: int
    credit_card_expiration_year: int
    credit_card_cvv: int


def _text(form: FormData, field: str, errors: dict[str, str], *, required: bool = True) -> str:
    value = form.get(field, "")
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        errors[field] = "is required"
    return text


def _integer(form: FormData, field: str, low: int, high: int, errors: dict[str, str]) -> int:
    text = _text(form, field, errors)
    if field in errors:
        return 0
    try:
        number = int(text)
    except ValueError:
        errors[field] = f"must be a whole number, got {text!r}"
        return 0
    if not low <= number <= high:
        errors[field] = f"must be between {low} and {high}, got {number}"
    return number


def cart_form(form: FormData) -> CartForm:
    """``product_id`` and ``quantity`` (1..10) of an add-to-cart post."""
    errors: dict[str, str] = {}
    product_id = _text(form, "product_id", errors)
    quantity = _integer(form, "quantity", 1, MAX_QUANTITY, errors)
    if errors:
        raise FormError(errors)
    return CartForm(product_id, quantity)


def currency_form(form: FormData, supported: list[str]) -> str:
    """The ``currency_code`` of a currency change, one of ``supported``."""
    errors: dict[str, str] = {}
    code = _text(form, "currency_code", errors)
    if not errors and not CURRENCY_CODE.match(code):
        errors["currency_code"] = f"must be an ISO 4217 code of three capital letters, got {code!r}"
    elif not errors and code not in supported:
        errors["currency_code"] = f"{code} is not a supported currency"
    if errors:
        raise FormError(errors)
    return code


def checkout_form(form: FormData) -> CheckoutForm:
    """The shipping address, email and card of a checkout post."""
    errors: dict[str, str] = {}
    email = _text(form, "email", errors)
    if email and not EMAIL.match(email):
        errors["email"] = f"is not an email address: {email!r}"
    street = _text(form, "street_address", errors)
    zip_code = _integer(form, "zip_code", 0, 2**31 - 1, errors)
    city = _text(form, "city", errors)
    state = _text(form, "state", errors, required=False)
    country = _text(form, "country", errors)
    card = re.sub(r"[\s-]", "", _text(form, "credit_card_number", errors))
    if "credit_card_number" not in errors and not re.fullmatch(r"\d{12,19}", card):
        errors["credit_card_number"] = "must be 12 to 19 digits"
    month = _integer(form, "credit_card_expiration_month", 1, 12, errors)
    year = _integer(form, "credit_card_expiration_year", 2000, 2100, errors)
    cvv = _integer(form, "credit_card_cvv", 0, 9999, errors)
    if errors:
        raise FormError(errors)
    return CheckoutForm(email, street, zip_code, city, state, country, card, month, year, cvv)
