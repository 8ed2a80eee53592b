"""Per-request shop state: session cookie, currency cookie and request id."""

from __future__ import annotations

import re
import uuid
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clue import log
from reference_services.frontend import metrics

SESSION_COOKIE = "shop_session-id"
CURRENCY_COOKIE = "shop_currency"
COOKIE_MAX_AGE = 48 * 3600
DEFAULT_CURRENCY = "USD"
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
REQUEST_ID = b"x-request-id"
#: A caller's X-Request-ID the shop takes on (it is shown on every page): at
#: most 64 characters among letters, digits and ``._:-``; another gets a new id.
REQUEST_ID_FORMAT = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is ignored, not fatal
                continue
    return {key: morsel.value for key, morsel in jar.items()}


class ShopSession:
    """ASGI middleware: ``scope["state"]`` gets ``session_id``, ``currency`` and
    ``request_id``. Only a request without a session cookie mints one, so health
    probes sending ``shop_session-id=x-readiness-probe`` never create a session.

    It wraps :class:`clue.asgi.ClueMiddleware`: the request id it picks (the
    caller's ``X-Request-ID`` when it is short and plain, else a new one) goes
    into the request headers, so
    clue's logs, response header and this page all show the same id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        session_id = cookies.get(SESSION_COOKIE, "")
        minted = not session_id
        if minted:
            session_id = str(uuid.uuid4())
            metrics.session_started(scope.get("path", ""))
        currency = cookies.get(CURRENCY_COOKIE, "")
        if not CURRENCY_CODE.match(currency):
            currency = DEFAULT_CURRENCY
        headers = list(scope.get("headers", ()))
        request_id = next((v.decode("latin-1") for k, v in headers if k == REQUEST_ID), "")
        if not REQUEST_ID_FORMAT.fullmatch(request_id):
            request_id = uuid.uuid4().hex[:16]
            headers = [(k, v) for k, v in headers if k != REQUEST_ID]
            headers.append((REQUEST_ID, request_id.encode("latin-1")))
        scope = {**scope, "headers": headers}
        state = scope.setdefault("state", {})
        state.update(session_id=session_id, currency=currency, request_id=request_id)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and minted:
                headers = MutableHeaders(scope=message)
                if SESSION_COOKIE not in _set_cookie_names(headers):
                    headers.append("set-cookie", session_cookie(session_id))
            await send(message)

        with log.context(session_id=session_id):
            await self.app(scope, receive, send_with_cookie)


def _set_cookie_names(headers: MutableHeaders) -> set[str]:
    return {value.split("=", 1)[0] for value in headers.getlist("set-cookie")}


def session_cookie(session_id: str) -> str:
    """The Set-Cookie value of a session id."""
    return (
        f"{SESSION_COOKIE}={session_id}; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=Lax"
    )
