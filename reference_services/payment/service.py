"""The payment process: the upstream PaymentService and the PaymentLedger, on one server.

Both charge through one `Processor` and its ``failure_rate`` switch. The ledger
keeps its own store (``PAYMENT_DATABASE_URL``), migrated at start, and publishes
its events through the store's outbox; its health pings the store and the broker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from reference_services.common.database import StoreUnavailable, open_database
from reference_services.common.events import Broker, Outbox, Relay, Stream, nats_url
from reference_services.common.faults import Faults, Rate
from reference_services.common.rpc import Context, rpc
from reference_services.common.runtime import Entry, Wiring
from reference_services.common.settings import store_url
from reference_services.payment.ledger import Ledger
from reference_services.payment.ledger_store import LedgerStore
from reference_services.payment.processor import FAILURE_RATE, Processor
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc


def faults() -> Faults:
    """The payment switch: a share of charges fails as if the processor were down."""
    return Faults(Rate(FAILURE_RATE, "share of charges that fail (processor unavailable)"))


class Payment(pb_grpc.PaymentServiceServicer):
    """Validates cards and charges them; never logs a full card number."""

    def __init__(self, switches: Faults, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.processor = Processor(switches, today)

    @rpc
    async def Charge(self, request: pb.ChargeRequest, context: Context) -> pb.ChargeResponse:
        """A transaction id; INVALID_ARGUMENT naming the reason a card is refused."""
        amount = request.amount if request.HasField("amount") else None
        charge = self.processor.accept(amount, request.credit_card)
        transaction = self.processor.authorize(charge)
        self.processor.charged(charge, transaction)
        return pb.ChargeResponse(transaction_id=transaction)


@dataclass(frozen=True)
class Config:
    """Where the ledger keeps its payments and publishes its events."""

    database_url: str
    nats_url: str
    stream: str = "BOUTIQUE"

    @classmethod
    def from_env(cls) -> Config:
        """``PAYMENT_DATABASE_URL`` (default ``$DATA_DIR/payment.db``, or postgresql://...),
        ``NATS_URL`` and ``EVENTS_STREAM``."""
        return cls(
            database_url=store_url("PAYMENT_DATABASE_URL", "payment.db"),
            nats_url=nats_url(),
            stream=Stream.from_env().name,
        )


async def build(config: Config | None = None) -> Wiring:
    """The payment servicer and its switch, and with ``config`` the ledger on its store,
    migrated first (None: the upstream PaymentService alone, as in tests of it)."""
    switches = faults()
    payment = Payment(switches)
    add_payment = pb_grpc.add_PaymentServiceServicer_to_server
    if config is None:
        return Wiring(servicers=[(add_payment, payment)], faults=switches)
    db = open_database(config.database_url)
    store = LedgerStore(db, Outbox(db))
    try:
        await store.migrate()
    except StoreUnavailable as exc:
        await store.close()
        raise OSError(f"payment store: {exc}") from exc
    broker = Broker(config.nats_url, Stream(config.stream))
    relay = Relay(store.outbox, broker)
    broker.start()
    relay.start()
    ledger = Ledger(store, payment.processor, relay)
    return Wiring(
        servicers=[
            (add_payment, payment),
            (lpb_grpc.add_PaymentLedgerServicer_to_server, ledger),
        ],
        pingers=[store, broker],
        faults=switches,
        closers=[store.close, broker.close, relay.stop],  # run last to first
    )


ENTRY = Entry("payment", build, Config.from_env)
