"""Request ids shared by the gRPC interceptors, the ASGI middleware and outgoing calls."""

from __future__ import annotations

import secrets

HEADER = "x-request-id"


def new_request_id() -> str:
    """A fresh random request id (16 hex digits)."""
    return secrets.token_hex(8)
