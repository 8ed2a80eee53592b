"""Access tokens for tests of the services that verify them: a user service to publish
the keys, and tokens signed with them (as its Authenticate signs them)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_services.common.auth import AUDIENCE, ISSUER, SCOPES, bearer
from reference_services.common.runtime import GrpcService
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.user import service as user
from reference_services.user.keys import KeyRing


@dataclass(frozen=True)
class Issuer:
    """A running user service (``address``) and its signing keys."""

    address: str
    keys: KeyRing

    def token(self, sub: str, role: str = "customer") -> str:
        """A token of ``sub`` with every customer scope, valid 15 minutes."""
        now = int(time.time())
        claims = {
            "sub": sub,
            "email": f"{sub}@example.com",
            "scope": " ".join(SCOPES),
            "role": role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 900,
        }
        return self.keys.sign(claims)


@asynccontextmanager
async def issuing(data: Path) -> AsyncIterator[Issuer]:
    """A user service (publishing no events) with its store and keys under ``data``."""
    config = user.Config(f"sqlite:///{data / 'issuer.db'}", data / "issuer-keys")
    service = GrpcService("user", await user.build(config), host="127.0.0.1", grace=1.0)
    await service.start()
    try:
        yield Issuer(service.address, KeyRing.load(data / "issuer-keys"))
    finally:
        await service.stop()


@dataclass
class History:
    """NotificationService's stub, called with one token (an admin's reads anyone's)."""

    stub: Any  # a NotificationServiceStub over an aio channel
    token: str

    def GetNotificationHistory(self, request: npb.GetNotificationHistoryRequest) -> Any:
        return self.stub.GetNotificationHistory(request, metadata=bearer(self.token))
