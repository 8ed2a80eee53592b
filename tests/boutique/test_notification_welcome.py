"""The welcome notification: an account registered through the real user service is
welcomed once by the notification service (events over a real NATS JetStream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from reference_services.common.auth import bearer
from reference_services.common.events import Broker, Stream
from reference_services.common.runtime import GrpcService
from reference_services.email import service as email
from reference_services.notification import service as notification
from reference_services.notification.welcome import SUBJECT, TEMPLATE
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.user import service as user
from tests.boutique.conftest import rpc_error, serving, stub_for, unique
from tests.conftest import Lines

PASSWORD = "correct horse battery"
ADMIN = "admin@example.com"
DEADLINE = 20.0


@dataclass
class Accounts:
    """The user and notification services on a stream of their own."""

    users: upb_grpc.UserServiceAsyncStub
    history: npb_grpc.NotificationServiceAsyncStub
    notification: GrpcService

    async def login(self, email: str) -> tuple[str, str]:
        """Register ``email`` and log in: (user id, access token)."""
        made = await self.users.Register(
            upb.RegisterRequest(email=email, name="N", password=PASSWORD)
        )
        reply = await self.users.Authenticate(
            upb.AuthenticateRequest(email=email, password=PASSWORD)
        )
        return made.id, reply.token

    async def notifications(self, token: str, **recipient: str) -> list[npb.Notification]:
        request = npb.GetNotificationHistoryRequest(**recipient)  # type: ignore[arg-type]
        reply = await self.history.GetNotificationHistory(request, metadata=bearer(token))
        return list(reply.notifications)

    async def welcomed(self, token: str, user_id: str) -> list[npb.Notification]:
        """The user's history once it holds a notification (within `DEADLINE`)."""
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not (found := await self.notifications(token, user_id=user_id)):
            assert asyncio.get_running_loop().time() < deadline, "no welcome recorded"
            await asyncio.sleep(0.05)
        return found


@pytest.fixture
async def accounts(nats_url: str, tmp_path: Path) -> AsyncIterator[Accounts]:
    stream = Stream(unique("WELCOME").upper())
    async with AsyncExitStack() as stack:
        broker = Broker(nats_url, stream)
        stack.push_async_callback(broker.close)
        stack.push_async_callback(stream.delete, await broker.jetstream())
        users_config = user.Config(
            f"sqlite:///{tmp_path / 'user.db'}",
            tmp_path / "keys",
            frozenset({ADMIN}),
            nats_url=nats_url,
            stream=stream.name,
        )
        users = await stack.enter_async_context(serving("user", await user.build(users_config)))
        mail = await stack.enter_async_context(serving("email", await email.build()))
        config = notification.Config(
            database_url=f"sqlite:///{tmp_path / 'notification.db'}",
            email_addr=mail.address,
            nats_url=nats_url,
            stream=stream.name,
            user_addr=users.address,
            backoff=(0.05,),
        )
        service = await stack.enter_async_context(
            serving("notification", await notification.build(config))
        )
        yield Accounts(
            await stack.enter_async_context(stub_for(users, upb_grpc.UserServiceStub)),
            await stack.enter_async_context(stub_for(service, npb_grpc.NotificationServiceStub)),
            service,
        )


async def test_a_registered_user_is_welcomed_once(accounts: Accounts, lines: Lines) -> None:
    email = f"{unique('ann')}@Example.com"
    user_id, token = await accounts.login(email)
    (welcome,) = await accounts.welcomed(token, user_id)
    assert (welcome.template, welcome.subject) == (TEMPLATE, SUBJECT)
    assert (welcome.channel, welcome.status) == (npb.CHANNEL_EMAIL, npb.NOTIFICATION_STATUS_SENT)
    assert (welcome.user_id, welcome.email, welcome.order_id) == (user_id, email.lower(), "")
    sent = [e for e in lines.entries("welcome e-mail sent") if e.get("user_id") == user_id]
    assert len(sent) == 1
    assert email.lower() not in lines.text  # the address is never logged


async def test_the_history_is_read_only_with_a_token_of_its_user_or_an_admin(
    accounts: Accounts,
) -> None:
    ann_email, bob_email = f"{unique('ann')}@example.com", f"{unique('bob')}@example.com"
    ann, ann_token = await accounts.login(ann_email)
    bob, bob_token = await accounts.login(bob_email)
    _, admin_token = await accounts.login(ADMIN)
    assert [n.user_id for n in await accounts.welcomed(ann_token, ann)] == [ann]

    request = npb.GetNotificationHistoryRequest
    refused = [
        (request(user_id=ann), None, grpc.StatusCode.UNAUTHENTICATED, "authorization"),
        (request(user_id=ann), "not-a-jwt", grpc.StatusCode.UNAUTHENTICATED, "not a JWT"),
        (request(user_id=ann), bob_token, grpc.StatusCode.PERMISSION_DENIED, "their own"),
        (request(email=ann_email), bob_token, grpc.StatusCode.PERMISSION_DENIED, "by e-mail"),
        (request(email=bob_email), bob_token, grpc.StatusCode.PERMISSION_DENIED, "by e-mail"),
        (request(), bob_token, grpc.StatusCode.INVALID_ARGUMENT, "user_id or email"),
    ]
    for asked, token, code, says in refused:
        metadata = bearer(token) if token else None
        error = await rpc_error(accounts.history.GetNotificationHistory(asked, metadata=metadata))
        assert (error.code(), says in (error.details() or "")) == (code, True), asked

    # an admin reads anyone's, by id or by e-mail
    assert [n.user_id for n in await accounts.welcomed(admin_token, bob)] == [bob]
    by_email = await accounts.notifications(admin_token, email=ann_email.upper())
    assert [n.user_id for n in by_email] == [ann]
