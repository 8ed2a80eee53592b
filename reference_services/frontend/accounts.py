"""The shop's account pages: sign up, log in, the account (profile, notifications, delete).

They call the user service on the visitor's behalf: a login or sign-up forwards
the visitor's address (``x-forwarded-for``), so that its lockout and its limit on
registrations count per visitor, not per shop (the user service trusts it from
the addresses in ``USER_TRUSTED_PROXIES``). Signing in moves the session's cart into the user's
(the user's cart id is their user id).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from clue import log
from reference_services.frontend.calls import Metadata, call, optional
from reference_services.frontend.errors import ShopError
from reference_services.frontend.forms import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    FormError,
    delete_form,
    login_form,
    name_form,
    read_form,
    safe_next,
    signup_form,
)
from reference_services.frontend.visitor import (
    PROFILE,
    Visitor,
    cart_id,
    drop_token_cookie,
    set_token_cookie,
    to_login,
    visitor_of,
)
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import user_pb2 as upb

if TYPE_CHECKING:
    from reference_services.frontend.app import Shop

#: Notifications the account page lists (the newest).
HISTORY_SIZE = 20
FIELDS = ("email", "name", "password")


def forwarded(request: Request) -> Metadata:
    """The metadata naming the visitor's address to the user service."""
    return (("x-forwarded-for", request.client.host),) if request.client else ()


def _field_of(error: ShopError) -> str:
    """The form field a user service refusal is about (its details start with it)."""
    first = (error.reasons[0] if error.reasons else "").split(" ", 1)[0]
    return first if first in FIELDS else "form"


class Accounts:
    """The account pages of ``shop``."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    @property
    def users(self) -> Any:
        """The user service's stub; a 503 page when the shop has none."""
        if self.shop.clients.user is None:
            raise ShopError(503, "Accounts unavailable", "This shop has no accounts.")
        return self.shop.clients.user

    async def _form_page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        errors: dict[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        frame = await self.shop.frame(request)
        return self.shop.render(
            request,
            template,
            frame,
            status,
            errors=errors or {},
            min_password=MIN_PASSWORD,
            max_password=MAX_PASSWORD,
            **extra,
        )

    # --- signing in ------------------------------------------------------------------

    async def signup_page(self, request: Request) -> Response:
        self.users  # noqa: B018 - a shop without accounts answers 503
        return await self._form_page(request, "signup.html", values={})

    async def signup(self, request: Request) -> Response:
        fields = await read_form(request)
        values = {"email": fields.get("email", "")[:254], "name": fields.get("name", "")[:128]}
        try:
            form = signup_form(fields)
            await call(
                "creating the account",
                self.users.Register,
                upb.RegisterRequest(email=form.email, name=form.name, password=form.password),
                forwarded(request),  # its registrations are limited per visitor address
            )
        except FormError as error:
            return await self._refused(request, "signup.html", error.status, error.errors, values)
        except ShopError as error:
            if error.status == 409:
                errors = {"email": "is already registered: log in instead"}
                return await self._refused(request, "signup.html", 409, errors, values)
            if error.status == 422:  # the user service's INVALID_ARGUMENT: a bad field
                errors = {_field_of(error): error.reasons[0] if error.reasons else error.message}
                return await self._refused(request, "signup.html", 400, errors, values)
            if error.status == 429:  # too many registrations from this address
                errors = {"form": error.reasons[0] if error.reasons else error.message}
                return await self._refused(request, "signup.html", 429, errors, values)
            raise
        log.info("signed up")
        return await self._sign_in(request, form.email, form.password, "/")

    async def login_page(self, request: Request) -> Response:
        self.users  # noqa: B018 - a shop without accounts answers 503
        next_path = safe_next(request.query_params.get("next", "/"))
        return await self._form_page(request, "login.html", values={}, next=next_path)

    async def login(self, request: Request) -> Response:
        fields = await read_form(request)
        values = {"email": fields.get("email", "")[:254]}
        next_path = safe_next(fields.get("next", "/"))
        try:
            form = login_form(fields)
            return await self._sign_in(request, form.email, form.password, form.next)
        except FormError as error:
            return await self._refused(
                request, "login.html", error.status, error.errors, values, next=next_path
            )
        except ShopError as error:
            if error.status == 401:
                errors = {"form": "wrong e-mail or password"}
            elif error.status == 429:
                errors = {"form": error.reasons[0] if error.reasons else error.message}
            elif error.status == 422:
                errors = {_field_of(error): error.reasons[0] if error.reasons else error.message}
            else:
                raise
            status = 400 if error.status == 422 else error.status
            return await self._refused(
                request, "login.html", status, errors, values, next=next_path
            )

    async def _refused(
        self,
        request: Request,
        template: str,
        status: int,
        errors: dict[str, str],
        values: dict[str, str],
        **extra: Any,
    ) -> Response:
        log.info("account form refused", status=status, fields=sorted(errors))
        return await self._form_page(request, template, status, errors, values=values, **extra)

    async def _sign_in(self, request: Request, email: str, secret: str, to: str) -> Response:
        """Log in as ``email``: the token cookie, the session's cart moved to the user's,
        and a redirect to ``to``."""
        token: upb.Token = await call(
            "logging in",
            self.users.Authenticate,
            upb.AuthenticateRequest(email=email, password=secret),
            forwarded(request),
        )
        verifier = self.shop.verifier
        assert verifier is not None  # accounts exist, so tokens are verified
        principal = await verifier.authorizer.verify(f"Bearer {token.token}", PROFILE)
        visitor = Visitor(principal.user_id, principal.email, token.token)
        await self._merge_cart(request, visitor)
        log.info("signed in", user_id=visitor.user_id)
        response = RedirectResponse(to, status_code=302)
        set_token_cookie(response, request, token.token, int(token.expires_in))
        return response

    async def _merge_cart(self, request: Request, visitor: Visitor) -> None:
        """Add the session's cart to the user's, then empty the session's."""
        session = str(request.state.session_id)
        cart = await optional(
            "reading the session's cart",
            self.shop.clients.cart.GetCart,
            pb.GetCartRequest(user_id=session),
        )
        if cart is None or not cart.items:
            return
        for item in cart.items:
            await call(
                "moving the cart to the account",
                self.shop.clients.cart.AddItem,
                pb.AddItemRequest(user_id=visitor.user_id, item=item),
            )
        await call(
            "emptying the session's cart",
            self.shop.clients.cart.EmptyCart,
            pb.EmptyCartRequest(user_id=session),
        )
        log.info("cart moved to the account", items=len(cart.items))

    # --- the account -----------------------------------------------------------------

    async def account(self, request: Request) -> Response:
        visitor = visitor_of(request)
        if visitor is None:
            return to_login("/account")
        frame, history = await self._history(request, visitor)
        user: upb.User | None = frame["user"]
        if user is None:
            raise ShopError(503, "Account unavailable", "Your account cannot be read right now.")
        return self.shop.render(request, "account.html", frame, history=history, errors={})

    async def _history(
        self, request: Request, visitor: Visitor
    ) -> tuple[dict[str, Any], npb.GetNotificationHistoryResponse | str]:
        """The page frame, and the visitor's notifications or why they are not shown."""
        stub = self.shop.clients.notification
        if stub is None:
            return await self.shop.frame(request), "Notification history is not available here."
        frame, history = await asyncio.gather(
            self.shop.frame(request),
            optional(
                "reading the notification history",
                stub.GetNotificationHistory,
                npb.GetNotificationHistoryRequest(user_id=visitor.user_id, page_size=HISTORY_SIZE),
                visitor.metadata,
            ),
        )
        if history is None:
            return frame, "The notification history cannot be read right now."
        return frame, history

    async def rename(self, request: Request) -> Response:
        visitor = visitor_of(request)
        if visitor is None:
            return to_login("/account")
        name = name_form(await read_form(request))
        await call(
            "renaming the account",
            self.users.UpdateUser,
            upb.UpdateUserRequest(name=name),
            visitor.metadata,
        )
        log.info("account renamed")
        return RedirectResponse("/account", status_code=302)

    async def delete(self, request: Request) -> Response:
        visitor = visitor_of(request)
        if visitor is None:
            return to_login("/account")
        delete_form(await read_form(request))
        await call(
            "deleting the account",
            self.users.DeleteUser,
            upb.DeleteUserRequest(),
            visitor.metadata,
        )
        await optional(
            "emptying the account's cart",
            self.shop.clients.cart.EmptyCart,
            pb.EmptyCartRequest(user_id=cart_id(request)),
        )
        log.info("account deleted")
        response = RedirectResponse("/", status_code=302)
        drop_token_cookie(response)
        return response
