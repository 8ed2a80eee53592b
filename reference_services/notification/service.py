"""The notification service: consumes order events, sends e-mails, answers the history.

It runs the durable consumer ``notification`` of ``boutique.order.placed`` (see
`confirmations`) and ``notification-dead-letters`` of its dead letters (see
`dead_letters`), ``notification-welcome`` of ``boutique.user.registered`` (see
`welcome`), ``notification-status`` of ``boutique.order.status_changed`` and
``notification-refunds`` of ``boutique.payment.refunded`` (see `orders`) beside
the gRPC NotificationService (see `history`), on its own store. Dead letters are
replayed with ``python -m reference_services.notification replay-dead-letters``
(see `replay`). The history is read with a token of the user service (see `history`). Its
health pings the store, the broker, the e-mail and the user services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reference_services.common.auth import Authorizer, PublishedKeys
from reference_services.common.clients import Clients
from reference_services.common.config import env_addr, env_int
from reference_services.common.database import StoreUnavailable, open_database
from reference_services.common.events import (
    BACKOFF,
    ORDER_PLACED,
    ORDER_STATUS_CHANGED,
    PAYMENT_REFUNDED,
    USER_REGISTERED,
    Broker,
    EventConsumer,
    Stream,
    nats_url,
)
from reference_services.common.runtime import Entry, Wiring
from reference_services.common.settings import store_url
from reference_services.notification.confirmations import CONSUMER, OrderConfirmations, faults
from reference_services.notification.dead_letters import DeadLetters, FailedConfirmations
from reference_services.notification.history import RULES, NotificationHistory
from reference_services.notification.orders import CONSUMER as STATUS
from reference_services.notification.orders import REFUNDS, OrderMails
from reference_services.notification.store import NotificationStore
from reference_services.notification.welcome import CONSUMER as WELCOME
from reference_services.notification.welcome import Welcomes
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc

DEAD_LETTERS = f"{CONSUMER}-dead-letters"
MAX_DELIVER = 5
ACK_WAIT = 30


@dataclass(frozen=True)
class Config:
    """Where the store, the broker and the e-mail service are; how events are retried."""

    database_url: str
    email_addr: str
    nats_url: str
    user_addr: str
    """The user service, whose published keys verify the callers' tokens."""
    stream: str = "BOUTIQUE"
    max_deliver: int = MAX_DELIVER
    backoff: Sequence[float] = BACKOFF
    ack_wait: float = ACK_WAIT

    @classmethod
    def from_env(cls) -> Config:
        """``NOTIFICATION_DATABASE_URL`` (default ``$DATA_DIR/notification.db``),
        ``EMAIL_SERVICE_ADDR``, ``NATS_URL``, ``USER_SERVICE_ADDR``, ``EVENTS_STREAM``,
        ``NOTIFICATION_MAX_DELIVER`` (deliveries of an event before its dead letter,
        default 5) and ``NOTIFICATION_ACK_WAIT`` (seconds before an event delivered to a
        consumer that died is delivered again, default 30)."""
        return cls(
            database_url=store_url("NOTIFICATION_DATABASE_URL", "notification.db"),
            email_addr=env_addr("EMAIL_SERVICE_ADDR"),
            nats_url=nats_url(),
            user_addr=env_addr("USER_SERVICE_ADDR"),
            stream=Stream.from_env().name,
            max_deliver=env_int("NOTIFICATION_MAX_DELIVER", MAX_DELIVER, minimum=1, maximum=100),
            ack_wait=env_int("NOTIFICATION_ACK_WAIT", ACK_WAIT, minimum=1, maximum=3600),
        )


async def build(config: Config) -> Wiring:
    """The history servicer and the running consumers (the confirmations, and their dead
    letters recorded as failed), on a store migrated first."""
    db = open_database(config.database_url)
    store = NotificationStore(db)
    try:
        await store.migrate()
    except StoreUnavailable as exc:
        await store.close()
        raise OSError(f"notification store: {exc}") from exc
    clients = Clients()
    email = clients.stub("email", config.email_addr, pb_grpc.EmailServiceStub)
    users = clients.stub("user", config.user_addr, upb_grpc.UserServiceStub)
    authorizer = Authorizer(PublishedKeys.from_stub(users), RULES)
    switches = faults()
    broker = Broker(config.nats_url, Stream(config.stream))
    consumer = EventConsumer(
        broker,
        db,
        CONSUMER,
        [ORDER_PLACED],
        OrderConfirmations(email, store, switches),
        max_deliver=config.max_deliver,
        backoff=config.backoff,
        ack_wait=config.ack_wait,
    )
    failed = DeadLetters(
        broker, db, DEAD_LETTERS, [ORDER_PLACED], FailedConfirmations(store), backoff=config.backoff
    )
    welcomes = EventConsumer(
        broker,
        db,
        WELCOME,
        [USER_REGISTERED],
        Welcomes(store),
        max_deliver=config.max_deliver,
        backoff=config.backoff,
        ack_wait=config.ack_wait,
    )
    mails = OrderMails(store)
    later = [
        EventConsumer(
            broker,
            db,
            name,
            [subject],
            mails,
            max_deliver=config.max_deliver,
            backoff=config.backoff,
            ack_wait=config.ack_wait,
        )
        for name, subject in ((STATUS, ORDER_STATUS_CHANGED), (REFUNDS, PAYMENT_REFUNDED))
    ]
    broker.start()
    consumer.start()
    failed.start()
    welcomes.start()
    for each in later:
        each.start()
    add = npb_grpc.add_NotificationServiceServicer_to_server
    return Wiring(
        servicers=[(add, NotificationHistory(store))],
        pingers=[store, broker, *clients.pingers],
        faults=switches,
        authorizer=authorizer,
        # run last to first: the consumers stop, then the broker, the channels, the store
        closers=[
            store.close,
            clients.close,
            broker.close,
            *(each.stop for each in later),
            welcomes.stop,
            failed.stop,
            consumer.stop,
        ],
    )


ENTRY = Entry("notification", build, Config.from_env)
