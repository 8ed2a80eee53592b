"""Guard: who may reach the admin and debug endpoints (loopback or allowed peers, bearer token)."""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "CLUE_ADMIN_TOKEN"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Guard:
    """ASGI wrapper refusing HTTP and WebSocket requests to ``app`` from unwelcome callers.

    A peer that is neither loopback nor in ``allow_from`` (CIDR strings such
    as ``"10.0.0.0/8"``) gets 403. When ``token`` is set (by default from
    ``CLUE_ADMIN_TOKEN``, read once here), a request without
    ``Authorization: Bearer <token>`` gets 401; tokens are compared in
    constant time. Requests for one of ``open_paths`` (exact paths within
    ``app``, such as ``"/livez"``) pass unchecked; nothing else does.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        allow_from: Iterable[str] = (),
        open_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        secret = os.environ.get(TOKEN_ENV, "") if token is None else token
        self._token = secret.encode() if secret else None
        self._networks = tuple(_network(cidr) for cidr in allow_from)
        self.open_paths = frozenset(_path(path) for path in open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._open(scope):
            client = scope.get("client")
            if not self._allowed(client[0] if client else None):
                await _refuse(scope, send, 403, "this endpoint only answers local callers")
                return
            if self._token is not None and not self._authorized(scope):
                await _refuse(scope, send, 401, "missing or wrong bearer token")
                return
        await self.app(scope, receive, send)

    def _open(self, scope: Scope) -> bool:
        if not self.open_paths:
            return False
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix: match within the app
            path = path[len(root) :]
        return path in self.open_paths

    def _allowed(self, host: str | None) -> bool:
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback or any(address in net for net in self._networks)

    def _authorized(self, scope: Scope) -> bool:
        assert self._token is not None
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(credentials.strip(), self._token)
        return False


def _network(cidr: str) -> Network:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ValueError(f"allow_from: {cidr!r} is not an IP network ({exc})") from None


def _path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"open paths must start with '/', got {path[:40]!r}")
    return path


async def _refuse(scope: Scope, send: Send, code: int, message: str) -> None:
    if scope["type"] == "websocket":  # closing before accepting makes the server answer 403
        await send({"type": "websocket.close", "code": 1008, "reason": message})
        return
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if code == 401:
        headers.append((b"www-authenticate", b'Bearer realm="clue"'))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
