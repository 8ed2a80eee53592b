"""Who is shopping: the signed-in visitor of the token cookie, and their CSRF token.

The user service's access token lives in an HttpOnly, SameSite=Lax cookie
(``Secure`` when the page was served over https), for as long as the token
is valid. Each request verifies it with the user service's published keys
(:mod:`reference_services.common.auth`); an expired or forged one signs the
visitor out and drops the cookie.

A signed-in visitor's POSTs carry a CSRF token bound to their session: a hash
of their access token. Another site can neither read the HttpOnly cookie nor
the pages, so it cannot compute the token, and the shop keeps no secret.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import urlencode

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from clue import log
from reference_services.common.auth import Authorizer, Refused, Rule

TOKEN_COOKIE = "shop_token"
CSRF_FIELD = "csrf_token"
PROFILE = Rule("profile")
#: The token cookie's path and flags.
COOKIE_PATH = "/"


@dataclass(frozen=True)
class Visitor:
    """A signed-in visitor: their user id, e-mail and access token."""

    user_id: str
    email: str
    token: str

    @property
    def csrf(self) -> str:
        """The CSRF token their forms carry."""
        return csrf_token(self.token)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata of a call made on their behalf."""
        return (("authorization", f"Bearer {self.token}"),)


def visitor_of(request: Request) -> Visitor | None:
    """The signed-in visitor of the request (None: anonymous)."""
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    return visitor


def to_login(next_path: str) -> Response:
    """Where a page for signed-in visitors sends an anonymous one: the login, then back."""
    return RedirectResponse("/login?" + urlencode({"next": next_path}), status_code=302)


def cart_id(request: Request) -> str:
    """Whose cart a page shows: the signed-in user's (their user id), else the session's."""
    visitor = visitor_of(request)
    return visitor.user_id if visitor else str(request.state.session_id)


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose access token is ``token``."""
    digest = hashlib.sha256(b"boutique-shop-csrf\0" + token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Verifier:
    """Reads the visitor of a request from its token cookie."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def visitor(self, request: Request) -> tuple[Visitor | None, bool]:
        """The signed-in visitor (None: anonymous), and whether the cookie must be
        dropped (its token is expired, forged or otherwise refused)."""
        token = request.cookies.get(TOKEN_COOKIE, "")
        if not token:
            return None, False
        try:
            principal = await self.authorizer.verify(f"Bearer {token}", PROFILE)
        except Refused as refused:
            if refused.code == grpc.StatusCode.UNAVAILABLE:
                # the keys cannot be fetched now: anonymous for this page, the cookie kept
                log.warn("cannot verify the token cookie now", reason=refused.reason)
                return None, False
            log.info("token cookie refused", reason=refused.reason)
            return None, True
        return Visitor(principal.user_id, principal.email, token), False


def set_token_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """Sign the visitor in: the token cookie, ``Secure`` over https."""
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def drop_token_cookie(response: Response) -> None:
    """Sign the visitor out."""
    response.delete_cookie(TOKEN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
