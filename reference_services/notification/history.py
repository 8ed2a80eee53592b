"""NotificationService.GetNotificationHistory: a customer's notifications, a page at a time.

Only with a token of the user service (`RULES`): a customer reads their own history,
by their user id; an admin reads anyone's, by user id or e-mail.
"""

from __future__ import annotations

from typing import Any

import grpc

from reference_services.common import fields
from reference_services.common.auth import Principal, Rule, caller, methods
from reference_services.common.database import StoreUnavailable
from reference_services.common.pages import page_size, page_token
from reference_services.common.rpc import RpcFailure, invalid_argument, rpc, unavailable
from reference_services.notification.store import Notification, NotificationStore
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc

SERVICE = "boutique.v1.NotificationService"
RULES = methods(SERVICE, ("GetNotificationHistory",), Rule("profile"))
"""The history needs a token with the scope ``profile`` (a customer's token has it)."""
CHANNELS = {"email": npb.CHANNEL_EMAIL}
STATUSES = {"sent": npb.NOTIFICATION_STATUS_SENT, "failed": npb.NOTIFICATION_STATUS_FAILED}


def recipient(request: npb.GetNotificationHistoryRequest) -> tuple[str, str]:
    """(column, value) of whose history is asked for, validated."""
    which = request.WhichOneof("recipient")
    if which == "user_id":
        return "user_id", fields.identifier(request.user_id, "user_id")
    if which == "email":
        return "email", fields.email(request.email).lower()
    raise invalid_argument("user_id or email is required")


def allowed(who: Principal, by: str, value: str) -> None:
    """PERMISSION_DENIED unless ``who`` may read the history of (``by``, ``value``)."""
    if who.is_admin:
        return
    if by != "user_id":
        raise RpcFailure(
            grpc.StatusCode.PERMISSION_DENIED, "only an admin reads a history by e-mail"
        )
    if value != who.user_id:
        raise RpcFailure(
            grpc.StatusCode.PERMISSION_DENIED, "a customer reads only their own history"
        )


def to_proto(n: Notification) -> npb.Notification:
    """A recorded notification on the wire."""
    return npb.Notification(
        id=n.id,
        channel=CHANNELS.get(n.channel, npb.CHANNEL_UNSPECIFIED),
        template=n.template,
        subject=n.subject,
        status=STATUSES.get(n.status, npb.NOTIFICATION_STATUS_UNSPECIFIED),
        sent_at=n.sent_at,
        order_id=n.order_id,
        user_id=n.user_id,
        email=n.email,
    )


class NotificationHistory(npb_grpc.NotificationServiceServicer):
    """Answers what was sent to whom, from the store."""

    def __init__(self, store: NotificationStore) -> None:
        self.store = store

    @rpc
    async def GetNotificationHistory(
        self, request: npb.GetNotificationHistoryRequest, context: Any
    ) -> npb.GetNotificationHistoryResponse:
        """The recipient's notifications, newest first, from ``page_token`` on."""
        by, value = recipient(request)
        allowed(caller(), by, value)
        size = page_size(request.page_size)
        after = page_token(request.page_token)
        try:
            found, following = await self.store.history(by, value, size, after)
        except StoreUnavailable as exc:
            raise unavailable(f"notification store: {exc}") from None
        return npb.GetNotificationHistoryResponse(
            notifications=[to_proto(n) for n in found],
            next_page_token=following.token() if following else "",
        )
