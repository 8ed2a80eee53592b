"""The notification store (SQLite and PostgreSQL, versioned schema) and
GetNotificationHistory over real gRPC: pages, and bad input refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from reference_services.common.auth import Authorizer
from reference_services.common.database import Postgres, SQLite
from reference_services.common.pages import MAX_PAGE_SIZE, Cursor
from reference_services.common.runtime import Wiring
from reference_services.notification.history import RULES, NotificationHistory
from reference_services.notification.store import (
    SCHEMA_VERSION,
    Notification,
    NotificationStore,
)
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from reference_services.user.keys import KeyRing
from tests.boutique.conftest import rpc_error, serving, stub_for, unique
from tests.boutique.test_auth import claims
from tests.boutique.tokens import History

T0 = 1_796_000_000_000_000_000  # 2026-11-30T00:53:20Z in ns


def sent(i: int, user_id: str = "alice", email: str = "alice@example.com") -> Notification:
    return Notification(
        id=f"evt-{i:03d}",
        channel="email",
        template="order_confirmation",
        subject=f"Your boutique order o-{i}",
        status="sent",
        sent_at_ns=T0 + i * 1_000_000,
        order_id=f"o-{i}",
        user_id=user_id,
        email=email,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NotificationStore]:
    """A migrated store on a real database, dropped afterwards."""
    if request.param == "sqlite":
        made = NotificationStore(SQLite(tmp_path / "notification.db"))
    else:
        db = Postgres(request.getfixturevalue("postgres_url"))
        made = NotificationStore(db, prefix=unique("n") + "_")
    assert await made.migrate() == 0
    yield made
    await made.drop()
    await made.close()


async def test_the_schema_is_versioned_and_migrated_once(store: NotificationStore) -> None:
    assert await store.migrate() == SCHEMA_VERSION  # already there: nothing to do
    version = await store.db.execute(f"SELECT version FROM {store.schema_table}")
    assert version == [(SCHEMA_VERSION,)]
    await store.db.execute(f"UPDATE {store.schema_table} SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this service's"):
        await store.migrate()


async def test_a_notification_is_recorded_once(store: NotificationStore) -> None:
    assert await store.record(sent(1))
    assert not await store.record(sent(1))  # the same event again: kept as it was
    assert await store.get("evt-001") == sent(1)
    assert await store.get("evt-404") is None
    assert sent(1).sent_at == "2026-11-30T00:53:20.001Z"


async def test_history_pages_newest_first(store: NotificationStore) -> None:
    for i in range(5):
        await store.record(sent(i))
    await store.record(sent(9, user_id="bob", email="bob@example.com"))
    page, cursor = await store.history("user_id", "alice", 2)
    assert [n.id for n in page] == ["evt-004", "evt-003"]
    assert cursor is not None
    page, cursor = await store.history("user_id", "alice", 2, Cursor.parse(cursor.token()))
    assert [n.id for n in page] == ["evt-002", "evt-001"]
    assert cursor is not None
    page, cursor = await store.history("user_id", "alice", 2, cursor)
    assert [n.id for n in page] == ["evt-000"]
    assert cursor is None
    page, _ = await store.history("email", "bob@example.com", 10)
    assert [n.id for n in page] == ["evt-009"]


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[History]:
    """GetNotificationHistory served over gRPC on a SQLite store with six notifications,
    its callers' tokens verified with the keys of ``tmp_path``."""
    keys = KeyRing.load(tmp_path / "keys")
    store = NotificationStore(SQLite(tmp_path / "notification.db"))
    await store.migrate()
    for i in range(5):
        await store.record(sent(i))
    await store.record(sent(9, user_id="bob", email="bob@example.com"))
    wiring = Wiring(
        servicers=[
            (npb_grpc.add_NotificationServiceServicer_to_server, NotificationHistory(store))
        ],
        closers=[store.close],
        authorizer=Authorizer(keys, RULES),
    )
    async with (
        serving("notification", wiring) as service,
        stub_for(service, npb_grpc.NotificationServiceStub) as stub,
    ):
        yield History(stub, keys.sign(claims(sub="root", role="admin")))


async def test_history_over_grpc_by_user_or_email(
    history: History,
) -> None:
    request = npb.GetNotificationHistoryRequest
    first = await history.GetNotificationHistory(request(user_id="alice", page_size=3))
    assert [n.order_id for n in first.notifications] == ["o-4", "o-3", "o-2"]
    top = first.notifications[0]
    assert top.channel == npb.CHANNEL_EMAIL
    assert top.status == npb.NOTIFICATION_STATUS_SENT
    assert (top.template, top.subject) == ("order_confirmation", "Your boutique order o-4")
    assert top.sent_at == "2026-11-30T00:53:20.004Z"
    rest = await history.GetNotificationHistory(
        request(user_id="alice", page_size=3, page_token=first.next_page_token)
    )
    assert [n.order_id for n in rest.notifications] == ["o-1", "o-0"]
    assert rest.next_page_token == ""
    by_email = await history.GetNotificationHistory(request(email="Bob@Example.com"))
    assert [n.id for n in by_email.notifications] == ["evt-009"]
    nobody = await history.GetNotificationHistory(request(user_id="carol"))
    assert list(nobody.notifications) == [] and nobody.next_page_token == ""


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, "user_id or email is required"),
        ({"user_id": ""}, "user_id must not be empty"),
        ({"user_id": "has space"}, "user_id 'has space' may hold only visible ASCII"),
        ({"user_id": "x" * 10_000}, "user_id is 10000 characters long, more than 128"),
        ({"email": "not-an-email"}, "email 'not-an-email' is not an email address"),
        ({"email": "a@b.c" + "x" * 10_000}, "email is 10005 characters long"),
        ({"user_id": "alice", "page_size": -1}, f"page_size -1 is outside 0..{MAX_PAGE_SIZE}"),
        ({"user_id": "alice", "page_size": 101}, f"page_size 101 is outside 0..{MAX_PAGE_SIZE}"),
        ({"user_id": "alice", "page_token": "%%%"}, "page_token '%%%' is not a token"),
        ({"user_id": "alice", "page_token": "bm9wZQ"}, "page_token 'bm9wZQ' is not a token"),
        ({"user_id": "alice", "page_token": "A" * 5000}, "page_token is 5000 characters long"),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    history: History, fields: dict[str, object], named: str
) -> None:
    request = npb.GetNotificationHistoryRequest(**fields)  # type: ignore[arg-type]
    error = await rpc_error(history.GetNotificationHistory(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (error.details() or "")
    assert len(error.details() or "") < 200  # a huge value is never echoed back
