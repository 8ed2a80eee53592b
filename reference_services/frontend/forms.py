"""The shop's forms and path parameters: read within bounds, each bad field named.

A bad field is a :class:`FormError` (a 400 page listing each field with what is
wrong with it). Values are never quoted whole: at most :data:`QUOTED` characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request

from reference_services.frontend.session import CURRENCY_CODE

#: Bounds of a posted form: its encoded size and its number of fields (the
#: checkout form, the largest, has ten fields in about 400 bytes).
MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 32
#: Longest product id, in the path of a product page or in the cart form.
MAX_PRODUCT_ID = 64
#: Longest value of any other text field, and of an email address (RFC 5321).
MAX_TEXT = 256
MAX_EMAIL = 254
#: How much of a bad value an error message quotes.
QUOTED = 32
FORM_TYPE = "application/x-www-form-urlencoded"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: ASCII digits only: int() also takes Arabic-Indic digits and "1_0".
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,12}")
MAX_QUANTITY = 10
#: Bounds of an account's fields (the user service's own).
MIN_PASSWORD = 8
MAX_PASSWORD = 128
MAX_NAME = 128
#: Longest ``next`` path a login returns to.
MAX_NEXT = 512
#: An order id as checkout makes them: a UUID (any case; the shop asks in lower case).
ORDER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
#: Longest page token of the order list (the order service's own bound).
MAX_PAGE_TOKEN = 256
Form = Mapping[str, str]


class FormError(Exception):
    """A request with bad fields: ``errors`` maps each field to its problem."""

    def __init__(self, errors: dict[str, str], status: int = 400) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors.items()))
        self.errors = errors
        self.status = status


def quote(text: str) -> str:
    """``text`` quoted for a message, cut to :data:`QUOTED` characters."""
    return repr(text) if len(text) <= QUOTED else repr(text[:QUOTED]) + "…"


async def read_form(request: Request) -> Form:
    """The fields of a url-encoded form post (the first value of a repeated field).

    The body is read only up to :data:`MAX_FORM_BYTES`: a larger one names the
    field it was in the middle of (or says there are too many fields).
    """
    cached: Form | None = getattr(request.state, "form", None)
    if cached is not None:  # read once already (the CSRF check reads it first)
        return cached
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _too_large(bytes(body[:MAX_FORM_BYTES]))
    if not body:
        request.state.form = {}
        return {}
    if media_type != FORM_TYPE:
        raise FormError({"form": f"must be sent as {FORM_TYPE}"}, status=415)
    if body.count(b"&") >= MAX_FIELDS:
        raise FormError({"form": f"has more than {MAX_FIELDS} fields"})
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise FormError({"form": "is not valid url-encoded UTF-8"}) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    request.state.form = fields
    return fields


def _too_large(head: bytes) -> FormError:
    """The error of a form whose first :data:`MAX_FORM_BYTES` are ``head``."""
    if head.count(b"&") >= MAX_FIELDS:
        return FormError({"form": f"has more than {MAX_FIELDS} fields"})
    name = head.rsplit(b"&", 1)[-1].split(b"=", 1)[0].decode("ascii", "replace")
    if len(name) > QUOTED or not name.isidentifier():
        return FormError({"form": f"is larger than {MAX_FORM_BYTES} bytes"})
    return FormError({name: f"is too long (a form holds at most {MAX_FORM_BYTES} bytes)"})


def _text(
    form: Form, field: str, errors: dict[str, str], *, limit: int = MAX_TEXT, required: bool = True
) -> str:
    text = form.get(field, "").strip()
    if required and not text:
        errors[field] = "is required"
    elif len(text) > limit:
        errors[field] = f"is longer than {limit} characters"
    elif not text.isprintable():
        errors[field] = "must not contain control characters"
    return text


def _integer(form: Form, field: str, low: int, high: int, errors: dict[str, str]) -> int:
    text = _text(form, field, errors)
    if field in errors:
        return 0
    if not WHOLE_NUMBER.fullmatch(text):
        errors[field] = f"must be a whole number in ASCII digits, got {quote(text)}"
        return 0
    number = int(text)
    if not low <= number <= high:
        errors[field] = f"must be between {low} and {high}, got {number}"
    return number


def _product(form: Form, field: str, errors: dict[str, str]) -> str:
    product = _text(form, field, errors, limit=MAX_PRODUCT_ID)
    if field not in errors and not product.isascii():
        errors[field] = f"must be ASCII, got {quote(product)}"
    return product


def product_id(text: str) -> str:
    """The product id of a product page's path, checked for size and characters."""
    errors: dict[str, str] = {}
    product = _product({"product id": text}, "product id", errors)
    if errors:
        raise FormError(errors)
    return product


def order_id(text: str) -> str:
    """The order id of an order page's path: a UUID, in lower case."""
    if not ORDER_ID.fullmatch(text):
        problem = f"must be an order number (a UUID, 36 characters), got {quote(text)}"
        raise FormError({"order id": problem})
    return text.lower()


def page_token(text: str) -> str:
    """The ``page`` of the order list: a token the list gave, checked for size and characters."""
    if len(text) > MAX_PAGE_TOKEN:
        raise FormError({"page": f"is longer than {MAX_PAGE_TOKEN} characters"})
    if not (text.isascii() and text.isprintable()):
        raise FormError({"page": f"is not a page of the order list: {quote(text)}"})
    return text


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


def cart_form(form: Form) -> CartForm:
    """``product_id`` and ``quantity`` (1..10) of an add-to-cart post."""
    errors: dict[str, str] = {}
    product = _product(form, "product_id", errors)
    quantity = _integer(form, "quantity", 1, MAX_QUANTITY, errors)
    if errors:
        raise FormError(errors)
    return CartForm(product, quantity)


def currency_form(form: Form, supported: list[str]) -> str:
    """The ``currency_code`` of a currency change, one of ``supported``."""
    errors: dict[str, str] = {}
    code = _text(form, "currency_code", errors)
    if not errors and not CURRENCY_CODE.match(code):
        errors["currency_code"] = (
            f"must be an ISO 4217 code of three capital letters, got {quote(code)}"
        )
    elif not errors and code not in supported:
        errors["currency_code"] = f"{code} is not a supported currency"
    if errors:
        raise FormError(errors)
    return code


def checkout_form(form: Form) -> CheckoutForm:
    """The shipping address, email and card of a checkout post."""
    errors: dict[str, str] = {}
    email = _text(form, "email", errors, limit=MAX_EMAIL)
    if "email" not in errors and not EMAIL.fullmatch(email):
        errors["email"] = f"is not an email address: {quote(email)}"
    street = _text(form, "street_address", errors)
    zip_code = _integer(form, "zip_code", 0, 2**31 - 1, errors)
    city = _text(form, "city", errors)
    state = _text(form, "state", errors, required=False)
    country = _text(form, "country", errors)
    card = re.sub(r"[\s-]", "", _text(form, "credit_card_number", errors, limit=32))
    if "credit_card_number" not in errors and not re.fullmatch(r"[0-9]{12,19}", card):
        errors["credit_card_number"] = "must be 12 to 19 digits"
    month = _integer(form, "credit_card_expiration_month", 1, 12, errors)
    year = _integer(form, "credit_card_expiration_year", 2000, 2100, errors)
    cvv = _integer(form, "credit_card_cvv", 0, 9999, errors)
    if errors:
        raise FormError(errors)
    return CheckoutForm(email, street, zip_code, city, state, country, card, month, year, cvv)


@dataclass(frozen=True)
class SignupForm:
    email: str
    name: str
    password: str


@dataclass(frozen=True)
class LoginForm:
    email: str
    password: str
    next: str


def _email(form: Form, errors: dict[str, str]) -> str:
    email = _text(form, "email", errors, limit=MAX_EMAIL)
    if "email" not in errors and not EMAIL.fullmatch(email):
        errors["email"] = f"is not an email address: {quote(email)}"
    return email


def _password(form: Form, errors: dict[str, str], minimum: int) -> str:
    """The password as typed (spaces kept), never quoted back."""
    secret = form.get("password", "")
    if not secret:
        errors["password"] = "is required"
    elif len(secret) > MAX_PASSWORD:
        errors["password"] = f"is longer than {MAX_PASSWORD} characters"
    elif len(secret) < minimum:
        errors["password"] = f"is shorter than {minimum} characters"
    return secret


def safe_next(path: str) -> str:
    """``path`` when it is a path of this site (``/account``), else ``/``: a login
    never sends its visitor to another site (``//evil.example``, ``https://...``)."""
    if (
        not path.startswith("/")
        or path.startswith(("//", "/\\"))
        or len(path) > MAX_NEXT
        or not path.isascii()
        or not path.isprintable()
    ):
        return "/"
    return path


def signup_form(form: Form) -> SignupForm:
    """``email``, ``name`` and ``password`` (8..128 characters) of a sign-up."""
    errors: dict[str, str] = {}
    email = _email(form, errors)
    name = _text(form, "name", errors, limit=MAX_NAME)
    secret = _password(form, errors, MIN_PASSWORD)
    if errors:
        raise FormError(errors)
    return SignupForm(email, name, secret)


def login_form(form: Form) -> LoginForm:
    """``email`` and ``password`` of a log-in, and the local ``next`` path to go to."""
    errors: dict[str, str] = {}
    email = _email(form, errors)
    secret = _password(form, errors, 1)
    if errors:
        raise FormError(errors)
    return LoginForm(email, secret, safe_next(form.get("next", "/")))


def name_form(form: Form) -> str:
    """The new ``name`` of a profile update."""
    errors: dict[str, str] = {}
    name = _text(form, "name", errors, limit=MAX_NAME)
    if errors:
        raise FormError(errors)
    return name


def delete_form(form: Form) -> None:
    """A deletion must be confirmed: ``confirm`` is ``yes``."""
    if form.get("confirm") != "yes":
        raise FormError({"confirm": "must be ticked to delete the account"})
