"""The payment ledger through real gRPC calls to the payment service, its events on a real
NATS, its store on SQLite and the real PostgreSQL: charged once per order, refunded once,
bad input refused naming the field, the upstream Charge untouched."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reference_services.common.config import ConfigError
from reference_services.common.database import Postgres, SQLite
from reference_services.common.events import (
    PAYMENT_COMPLETED,
    PAYMENT_REFUNDED,
    TYPE_HEADER,
    Broker,
    Outbox,
    Stream,
)
from reference_services.common.pages import Cursor
from reference_services.common.rpc import quote
from reference_services.common.runtime import GrpcService
from reference_services.payment import service as payment
from reference_services.payment.ledger_store import (
    CHARGED,
    REFUNDED,
    SCHEMA_VERSION,
    VOIDED,
    LedgerStore,
    Payment,
)
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import ledger_pb2 as lpb
from reference_services.protos.boutique.v1 import ledger_pb2_grpc as lpb_grpc
from tests.boutique.conftest import Telemetry, rpc_error, serving, stub_for, unique
from tests.boutique.test_events import eventually, stream_messages
from tests.boutique.test_runtime import service_env, start, stop, wait_ready
from tests.conftest import Lines, free_port

VISA = "4432801561520454"
USD = pb.Money(currency_code="USD", units=42, nanos=500_000_000)


def card(number: str = VISA, year: int = 2099, month: int = 1) -> pb.CreditCardInfo:
    return pb.CreditCardInfo(
        credit_card_number=number,
        credit_card_cvv=672,
        credit_card_expiration_year=year,
        credit_card_expiration_month=month,
    )


def charge(
    order_id: str, user_id: str = "u-1", amount: pb.Money = USD, number: str = VISA
) -> lpb.ChargeOrderRequest:
    return lpb.ChargeOrderRequest(
        order_id=order_id, user_id=user_id, amount=amount, credit_card=card(number)
    )


def new_order() -> str:
    return str(uuid.uuid4())


@dataclass
class Ledger:
    service: GrpcService
    stub: lpb_grpc.PaymentLedgerAsyncStub
    broker: Broker
    store: LedgerStore

    async def rows(self) -> list[tuple[object, ...]]:
        """Every row of the payments table, as stored."""
        return await self.store.db.execute(f"SELECT * FROM {self.store.table}")


@pytest.fixture
async def ledger(tmp_path: Path, nats_url: str) -> AsyncIterator[Ledger]:
    """The payment service as ``python -m`` builds it, its ledger on SQLite in a temp
    directory and its events on a stream of the test's own."""
    stream = Stream(unique("PAY").upper())
    config = payment.Config(f"sqlite:///{tmp_path / 'payment.db'}", nats_url, stream.name)
    broker = Broker(nats_url, stream)
    async with (
        serving("payment", await payment.build(config)) as service,
        stub_for(service, lpb_grpc.PaymentLedgerStub) as stub,
    ):
        servicer = service.wiring.servicers[1][1]
        store = servicer.store  # type: ignore[attr-defined]
        yield Ledger(service, stub, broker, store)
    await stream.delete(await broker.jetstream())
    await broker.close()


async def test_an_order_is_charged_once_and_answered_the_same_payment_again(
    ledger: Ledger, otel: Telemetry
) -> None:
    order = new_order()
    first = await ledger.stub.ChargeOrder(charge(order))
    assert (first.order_id, first.user_id, first.amount) == (order, "u-1", USD)
    assert first.status == lpb.PAYMENT_STATUS_CHARGED
    assert uuid.UUID(first.id) and uuid.UUID(first.transaction_id).version == 4
    charged_at = dt.datetime.fromisoformat(first.charged_at)
    assert first.charged_at.endswith("Z") and abs(charged_at - dt.datetime.now(dt.UTC)).seconds < 5
    assert (first.refunded_at, first.refund_reason) == ("", "")
    again = await ledger.stub.ChargeOrder(charge(order))
    assert again == first
    assert await ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id=order)) == first
    charges = otel.points("boutique.payment.charges")
    assert sum(point.value for _, point in charges) == 1
    assert charges[0][0] == {"currency": "USD", "card_type": "visa"}
    # the card is kept as its type and last four digits, never its number
    (row,) = await ledger.rows()
    assert "visa" in row and "0454" in row and VISA not in str(row)


async def test_the_same_order_with_another_amount_or_user_is_refused(ledger: Ledger) -> None:
    order = new_order()
    paid = await ledger.stub.ChargeOrder(charge(order))
    refused = {
        "amount USD 43.50 differs from the USD 42.50 the order was charged": charge(
            order, amount=pb.Money(currency_code="USD", units=43, nanos=500_000_000)
        ),
        "amount EUR 42.50 differs from the USD 42.50 the order was charged": charge(
            order, amount=pb.Money(currency_code="EUR", units=42, nanos=500_000_000)
        ),
        "user_id 'u-2' is not the user the order was charged for": charge(order, user_id="u-2"),
    }
    for message, request in refused.items():
        error = await rpc_error(ledger.stub.ChargeOrder(request))
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert await ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id=order)) == paid
    assert len(await ledger.rows()) == 1


def without_amount() -> lpb.ChargeOrderRequest:
    request = charge("o-bad")
    request.ClearField("amount")
    return request


BAD_CHARGES: list[tuple[Callable[[], lpb.ChargeOrderRequest], str]] = [
    (lambda: charge(""), "order_id must not be empty"),
    (lambda: charge("o" * 129), "order_id is 129 characters long, more than 128"),
    (lambda: charge("o 1"), "order_id 'o 1' may hold only visible ASCII characters, no spaces"),
    (lambda: charge("o-bad", user_id=""), "user_id must not be empty"),
    (
        lambda: charge("o-bad", user_id="u\x00"),
        "user_id holds a control character (U+0000) at position 1",
    ),
    (without_amount, "amount is required"),
    (lambda: charge("o-bad", amount=pb.Money(currency_code="USD")), "amount must be positive"),
    (
        lambda: charge("o-bad", amount=pb.Money(currency_code="USD", units=-3)),
        "amount must be positive",
    ),
    (
        lambda: charge("o-bad", amount=pb.Money(currency_code="usd", units=3)),
        "amount.currency_code 'usd' is not an ISO 4217 code (three capital letters)",
    ),
    (
        lambda: charge("o-bad", amount=pb.Money(currency_code="USD", units=10**13)),
        "amount.units 10000000000000 is outside -1000000000000..1000000000000",
    ),
    (
        lambda: charge("o-bad", number="4432801561520455"),
        "credit card number ending 0455 is not valid",
    ),
    (
        lambda: charge("o-bad", number="378282246310005"),
        "amex cards are not accepted, only VISA or MasterCard (card ending 0005)",
    ),
    (
        lambda: charge("o-bad", number="4" * 40),
        "credit_card_number is longer than 32 characters",
    ),
    (
        lambda: lpb.ChargeOrderRequest(
            order_id="o-bad", user_id="u-1", amount=USD, credit_card=card(year=2020, month=3)
        ),
        "credit card ending 0454 expired on 03/2020",
    ),
]


async def test_bad_charges_name_the_field_and_record_nothing(ledger: Ledger) -> None:
    for make, message in BAD_CHARGES:
        error = await rpc_error(ledger.stub.ChargeOrder(make()))
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert await ledger.rows() == []
    assert await ledger.store.outbox.count_pending() == 0
    bad = {
        "order_id must not be empty": ledger.stub.Refund(lpb.RefundRequest()),
        "reason is 257 characters long, more than 256": ledger.stub.Refund(
            lpb.RefundRequest(order_id="o-1", reason="r" * 257)
        ),
        "order_id holds a control character (U+000A) at position 1": (
            ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id="o\n"))
        ),
        "user_id must not be empty": ledger.stub.ListPayments(lpb.ListPaymentsRequest()),
        "page_size 101 is outside 0..100": ledger.stub.ListPayments(
            lpb.ListPaymentsRequest(user_id="u-1", page_size=101)
        ),
        "page_token 'nope' is not a token this service gave": ledger.stub.ListPayments(
            lpb.ListPaymentsRequest(user_id="u-1", page_token="nope")
        ),
        "page_token is 300 characters long, more than 256": ledger.stub.ListPayments(
            lpb.ListPaymentsRequest(user_id="u-1", page_token="x" * 300)
        ),
    }
    for message, call in bad.items():
        error = await rpc_error(call)
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    long = "o" * 2000
    error = await rpc_error(ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id=long)))
    assert long[:40] not in (error.details() or "")  # a huge value is never echoed


async def test_the_failure_rate_switch_fails_a_new_charge_and_records_nothing(
    ledger: Ledger, lines: Lines
) -> None:
    paid = await ledger.stub.ChargeOrder(charge(order := new_order()))
    ledger.service.wiring.faults.set({"failure_rate": "1"})  # type: ignore[union-attr]
    error = await rpc_error(ledger.stub.ChargeOrder(charge(other := new_order())))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == "payment processor unavailable (injected fault failure_rate)"
    missing = await rpc_error(ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id=other)))
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    # an order charged before is answered: the processor is not asked again
    assert await ledger.stub.ChargeOrder(charge(order)) == paid
    # the upstream Charge fails alike, on the same switch
    request = pb.ChargeRequest(amount=USD, credit_card=card())
    async with stub_for(ledger.service, pb_grpc.PaymentServiceStub) as upstream:
        assert (await rpc_error(upstream.Charge(request))).code() is grpc.StatusCode.UNAVAILABLE
        ledger.service.wiring.faults.set({"failure_rate": "0"})  # type: ignore[union-attr]
        assert uuid.UUID((await upstream.Charge(request)).transaction_id)
    assert (await ledger.stub.ChargeOrder(charge(other))).order_id == other
    assert len(await ledger.rows()) == 2
    assert lines.entries("charge failed")[0]["card_last_four"] == "0454"
    assert VISA not in lines.text


async def test_a_refund_is_made_once(ledger: Ledger) -> None:
    order = new_order()
    paid = await ledger.stub.ChargeOrder(charge(order))
    refunded = await ledger.stub.Refund(lpb.RefundRequest(order_id=order, reason="out of stock"))
    assert refunded.status == lpb.PAYMENT_STATUS_REFUNDED
    assert (refunded.id, refunded.amount, refunded.charged_at) == (
        paid.id,
        paid.amount,
        paid.charged_at,
    )
    assert refunded.refunded_at.endswith("Z") and refunded.refunded_at >= paid.charged_at
    assert refunded.refund_reason == "out of stock"
    again = await ledger.stub.Refund(lpb.RefundRequest(order_id=order, reason="another"))
    assert again == refunded  # the first refund, its reason kept
    assert await ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id=order)) == refunded
    # a refunded order is not charged again
    assert await ledger.stub.ChargeOrder(charge(order)) == refunded


async def test_an_order_refunded_before_its_charge_is_never_charged(
    ledger: Ledger, otel: Telemetry
) -> None:
    order = new_order()
    never = (grpc.StatusCode.NOT_FOUND, f"order {quote(order)} was never charged")
    error = await rpc_error(ledger.stub.Refund(lpb.RefundRequest(order_id=order, reason="gave up")))
    assert (error.code(), error.details()) == never
    # the saga gave the order up while its charge was on its way: the charge comes too late
    error = await rpc_error(ledger.stub.ChargeOrder(charge(order)))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"order {quote(order)} was refunded before it was charged: it cannot be charged any more",
    )
    for call in (
        ledger.stub.GetPayment(lpb.GetPaymentRequest(order_id=order)),
        ledger.stub.Refund(lpb.RefundRequest(order_id=order)),
    ):
        error = await rpc_error(call)
        assert (error.code(), error.details()) == never
    listed = await ledger.stub.ListPayments(lpb.ListPaymentsRequest(user_id="u-1"))
    assert order not in [p.order_id for p in listed.payments]
    assert otel.points("boutique.payment.charges") == []
    assert await ledger.store.outbox.count_pending() == 0


async def test_payments_are_listed_newest_first_a_page_at_a_time(ledger: Ledger) -> None:
    orders = [new_order() for _ in range(5)]
    for order in orders:
        await ledger.stub.ChargeOrder(charge(order, user_id="u-pages"))
    await ledger.stub.ChargeOrder(charge(new_order(), user_id="someone-else"))
    seen: list[str] = []
    token = ""
    while True:
        page = await ledger.stub.ListPayments(
            lpb.ListPaymentsRequest(user_id="u-pages", page_size=2, page_token=token)
        )
        assert len(page.payments) <= 2
        seen += [p.order_id for p in page.payments]
        token = page.next_page_token
        if not token:
            break
    assert seen == orders[::-1]
    everything = await ledger.stub.ListPayments(lpb.ListPaymentsRequest(user_id="u-pages"))
    assert [p.order_id for p in everything.payments] == seen
    assert everything.next_page_token == ""
    none = await ledger.stub.ListPayments(lpb.ListPaymentsRequest(user_id="nobody"))
    assert list(none.payments) == [] and none.next_page_token == ""


async def test_concurrent_charges_of_one_order_charge_it_once(
    ledger: Ledger, otel: Telemetry
) -> None:
    order = new_order()
    answers = await asyncio.gather(*(ledger.stub.ChargeOrder(charge(order)) for _ in range(8)))
    assert len({a.SerializeToString() for a in answers}) == 1
    assert len(await ledger.rows()) == 1
    assert sum(point.value for _, point in otel.points("boutique.payment.charges")) == 1
    async with (
        serving("payment", await payment.build()) as other,
        stub_for(other, pb_grpc.PaymentServiceStub) as stub,
    ):  # without a ledger: the upstream service alone, as before
        reply = await stub.Charge(pb.ChargeRequest(amount=USD, credit_card=card()))
        assert uuid.UUID(reply.transaction_id).version == 4


async def test_charges_and_refunds_are_published_once_in_their_trace(
    ledger: Ledger, otel: Telemetry
) -> None:
    order = new_order()
    paid = await ledger.stub.ChargeOrder(charge(order))
    await ledger.stub.ChargeOrder(charge(order))
    await ledger.stub.Refund(lpb.RefundRequest(order_id=order, reason="cancelled"))
    await ledger.stub.Refund(lpb.RefundRequest(order_id=order))

    async def both_published() -> bool:
        return len(await stream_messages(ledger.broker)) >= 2

    await eventually(both_published, "the payment events")
    messages = await stream_messages(ledger.broker)
    assert [ledger.broker.stream.event_subject(m.subject) for m in messages] == [
        PAYMENT_COMPLETED,
        PAYMENT_REFUNDED,
    ]
    completed = ev.PaymentCompleted.FromString(messages[0].data)
    assert completed == ev.PaymentCompleted(payment_id=paid.id, order_id=order, amount=USD)
    refunded = ev.PaymentRefunded.FromString(messages[1].data)
    assert refunded == ev.PaymentRefunded(
        payment_id=paid.id, order_id=order, amount=USD, reason="cancelled"
    )
    assert (messages[0].headers or {})[TYPE_HEADER] == "boutique.v1.PaymentCompleted"
    charge_span = next(
        s for s in otel.finished() if s.name == "boutique.v1.PaymentLedger/ChargeOrder"
    )
    assert charge_span.context is not None
    trace_id = format(charge_span.context.trace_id, "032x")
    assert trace_id in (messages[0].headers or {})["traceparent"]
    assert await ledger.store.outbox.count_pending() == 0


async def test_health_pings_the_store_and_the_broker(ledger: Ledger) -> None:
    async with httpx.AsyncClient() as client:

        async def healthy() -> bool:  # the broker is connected in the background
            healthz = await client.get(f"{ledger.service.admin.url}/healthz")
            status = healthz.json()["status"]
            assert set(status) == {"payment-store", "nats"}
            return healthz.status_code == 200 and set(status.values()) == {"OK"}

        await eventually(healthy, "the store and the broker to answer")
    async with grpc.aio.insecure_channel(ledger.service.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("boutique.v1.PaymentLedger", "hipstershop.PaymentService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_the_payment_process_serves_the_ledger_from_its_environment(
    tmp_path: Path, nats_url: str
) -> None:
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    stream = Stream(unique("PAYP").upper())
    env = service_env(PORT=str(port), ADMIN_PORT=str(admin_port), DATA_DIR=str(tmp_path))
    env.update(NATS_URL=nats_url, EVENTS_STREAM=stream.name, CLUE_DEBUG="1")
    proc = start("payment", env)
    try:
        await wait_ready(proc, admin)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = lpb_grpc.PaymentLedgerStub(channel)
            paid = await stub.ChargeOrder(charge(order := new_order()))
            assert paid.status == lpb.PAYMENT_STATUS_CHARGED
            upstream = pb_grpc.PaymentServiceStub(channel)
            await upstream.Charge(pb.ChargeRequest(amount=USD, credit_card=card()))
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{admin}/healthz")).status_code == 200
    finally:
        code, output = stop(proc)
        broker = Broker(nats_url, stream)
        await stream.delete(await broker.jetstream())
        await broker.close()
    assert code == 0, output
    assert (tmp_path / "payment.db").is_file()  # the default store, in DATA_DIR
    assert order in output and VISA not in output  # payloads logged, the card masked
    db = SQLite(tmp_path / "payment.db")
    reopened = LedgerStore(db, Outbox(db))
    found = await reopened.get(order)
    await reopened.close()
    assert found is not None and found.id == paid.id


def test_the_store_url_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_DATABASE_URL", "mysql://db/payments")
    with pytest.raises(ConfigError, match="PAYMENT_DATABASE_URL must be a URL"):
        payment.Config.from_env()
    monkeypatch.setenv("PAYMENT_DATABASE_URL", "postgresql://db/payments")
    assert payment.Config.from_env().database_url == "postgresql://db/payments"


# --- the store on SQLite and PostgreSQL ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], LedgerStore]]:
    """Makes migrated-later stores over the same tables, each on its own connection (as
    two replicas of the service would be)."""
    prefix, box = unique("pay") + "_", unique("outbox")
    made: list[LedgerStore] = []

    def make() -> LedgerStore:
        if request.param == "sqlite":
            db: SQLite | Postgres = SQLite(tmp_path / "payment.db")
        else:
            db = Postgres(request.getfixturevalue("postgres_url"))
        store = LedgerStore(db, Outbox(db, box), prefix)
        made.append(store)
        return store

    yield make
    await made[0].drop()
    for store in made:
        await store.close()


def recorded(order_id: str, user_id: str = "u-1", at_ns: int = 1) -> Payment:
    return Payment(
        id=str(uuid.uuid4()),
        order_id=order_id,
        user_id=user_id,
        amount=USD,
        status=CHARGED,
        transaction_id=str(uuid.uuid4()),
        card_type="visa",
        card_last_four="0454",
        charged_at_ns=at_ns,
    )


async def test_the_store_schema_is_versioned_and_migrated_once(
    stores: Callable[[], LedgerStore],
) -> None:
    store = stores()
    assert await store.migrate() == 0
    assert await store.migrate() == SCHEMA_VERSION
    await store.db.execute(f"UPDATE {store.schema_table} SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this service's"):
        await store.migrate()


async def test_the_store_charges_refunds_and_pages_with_one_event_each(
    stores: Callable[[], LedgerStore],
) -> None:
    store = stores()
    await store.migrate()
    first = recorded("o-1", at_ns=10)
    assert await store.charge(first) == (first, True)
    assert await store.charge(recorded("o-1", at_ns=11)) == (first, False)
    assert await store.get("o-1") == first
    assert await store.outbox.count_pending() == 1
    refunded, done = await store.refund("o-1", "cancelled", 20)
    assert done and refunded is not None
    assert (refunded.status, refunded.refunded_at_ns, refunded.refund_reason) == (
        "REFUNDED",
        20,
        "cancelled",
    )
    assert await store.refund("o-1", "again", 30) == (refunded, False)
    assert await store.refund("o-none", "", 30) == (None, False)
    voided, charged = await store.charge(recorded("o-none", at_ns=40))
    assert (voided.status, charged) == (VOIDED, False)  # refunded before: never charged
    assert await store.outbox.count_pending() == 2
    events = await store.outbox.pending()
    assert [e.subject for e in events] == [PAYMENT_COMPLETED, PAYMENT_REFUNDED]
    for n in range(2, 6):
        await store.charge(recorded(f"o-{n}", at_ns=10 * n))
    page, after = await store.page("u-1", 3)
    assert [p.order_id for p in page] == ["o-5", "o-4", "o-3"]
    assert after == Cursor(30, page[-1].id) and Cursor.parse(after.token()) == after
    rest, end = await store.page("u-1", 3, after)
    assert [p.order_id for p in rest] == ["o-2", "o-1"] and end is None


async def test_two_stores_charging_one_order_at_once_record_one_payment(
    stores: Callable[[], LedgerStore],
) -> None:
    one, two = stores(), stores()
    await one.migrate()
    await two.migrate()
    for n in range(10):
        a, b = recorded(f"race-{n}"), recorded(f"race-{n}")
        (got_a, new_a), (got_b, new_b) = await asyncio.gather(one.charge(a), two.charge(b))
        assert sorted([new_a, new_b]) == [False, True]
        assert got_a == got_b == (a if new_a else b)
    assert await one.outbox.count_pending() == 10
    rows = await one.db.execute(f"SELECT COUNT(*) FROM {one.table}")
    assert rows == [(10,)]


async def test_a_refund_racing_a_charge_leaves_no_money_kept(
    stores: Callable[[], LedgerStore],
) -> None:
    one, two = stores(), stores()
    await one.migrate()
    await two.migrate()
    for n in range(10):
        order = f"late-{n}"
        (got, charged), (refunded, done) = await asyncio.gather(
            one.charge(recorded(order)), two.refund(order, "gave up", 5)
        )
        if charged:  # the charge first: the refund refunds it
            assert done and refunded is not None and refunded.id == got.id
        else:  # the refund first: the order is void, the charge refused
            assert got.status == VOIDED and (refunded, done) == (None, False)
        final = await one.get(order)
        assert final is not None and final.status in (REFUNDED, VOIDED)
    subjects = [e.subject for e in await one.outbox.pending()]
    assert subjects.count(PAYMENT_COMPLETED) == subjects.count(PAYMENT_REFUNDED)
