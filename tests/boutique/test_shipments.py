"""Shipments and the courier, over gRPC on the running shipping service: recorded once per
order by ShipOrder, picked up and delivered with their events on a real NATS, voided before
pickup only, carried on by a restarted process; and their store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import StatusCode

from reference_services.common.config import ConfigError
from reference_services.common.database import Database, Postgres, SQLite
from reference_services.common.events import (
    SHIPMENT_DELIVERED,
    SHIPMENT_PICKED_UP,
    Broker,
    Outbox,
    Stream,
)
from reference_services.common.runtime import GrpcService
from reference_services.launcher import Process, is_healthy
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import shipment_pb2 as spb
from reference_services.protos.boutique.v1 import shipment_pb2_grpc as spb_grpc
from reference_services.shipping import service as shipping
from reference_services.shipping.shipment_store import (
    DELIVERED,
    LABEL_CREATED,
    PICKED_UP,
    VOIDED,
    PickedUp,
    ShipmentStore,
)
from tests.boutique.conftest import Telemetry, rpc_error, serving, unique
from tests.boutique.test_events import eventually, stream_messages
from tests.conftest import Lines, free_port

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = pb.Address(street_address="1 Quai", city="Lyon", country="FR", zip_code=69001)
ITEMS = [pb.CartItem(product_id="OLJCESPC7Z", quantity=2)]
SHIP = pb.ShipOrderRequest(address=ADDRESS, items=ITEMS)
Status = spb.ShipmentStatus


def order_id() -> str:
    return unique("order")


def metadata(order: str) -> tuple[tuple[str, str], ...]:
    return (("boutique-order-id", order),)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Shop:
    """Stubs of a running shipping service at ``address``."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.shipping = pb_grpc.ShippingServiceStub(channel)
        self.shipments = spb_grpc.ShipmentServiceStub(channel)

    async def ship(self, order: str) -> str:
        reply = await self.shipping.ShipOrder(SHIP, metadata=metadata(order))
        return str(reply.tracking_id)

    async def get(self, tracking_id: str) -> spb.Shipment:
        return await self.shipments.GetShipment(spb.GetShipmentRequest(tracking_id=tracking_id))

    async def until(self, tracking_id: str, status: int) -> spb.Shipment:
        """The shipment once it has ``status``."""

        async def reached() -> bool:
            return (await self.get(tracking_id)).status == status

        await eventually(reached, f"{tracking_id} {Status.Name(status)}")
        return await self.get(tracking_id)


class Running(Shop):
    """The shipping service served in-process: its stubs, its store and its admin URL."""

    def __init__(self, service: GrpcService, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.admin_url = service.admin.url
        [(_, upstream), _shipments] = service.wiring.servicers
        assert isinstance(upstream, shipping.Shipping) and upstream.shipments is not None
        self.store = upstream.shipments.store


Start = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[Broker]:
    """A broker over a stream of this test's own (deleted at the end)."""
    b = Broker(nats_url, Stream(unique("SHIP").upper()))
    js = await b.jetstream()
    yield b
    await b.stream.delete(js)
    await b.close()


@pytest.fixture
def start(tmp_path: Path, nats_url: str, broker: Broker) -> Start:
    """Serves shipping in-process on its own SQLite store and the test's stream, with the
    courier's delays given (seconds)."""

    @asynccontextmanager
    async def running(pickup: float = 60.0, delivery: float = 60.0) -> AsyncIterator[Running]:
        config = shipping.Config(
            database_url=f"sqlite:///{tmp_path / 'shipping.db'}",
            nats_url=nats_url,
            stream=broker.stream.name,
            pickup_delay=pickup,
            delivery_delay=delivery,
        )
        async with (
            serving("shipping", await shipping.build(config)) as service,
            grpc.aio.insecure_channel(service.address) as channel,
        ):
            yield Running(service, channel)

    return running


async def events_of(broker: Broker, tracking_id: str) -> list[tuple[str, str]]:
    """(subject, order id) of the stream's shipment events of ``tracking_id``, in order."""
    found = []
    for message in await stream_messages(broker, "shipment.>"):
        subject = broker.stream.event_subject(message.subject)
        kind = ev.ShipmentPickedUp if subject == SHIPMENT_PICKED_UP else ev.ShipmentDelivered
        event = kind.FromString(message.data)
        if event.tracking_id == tracking_id:
            found.append((subject, event.order_id))
    return found


# --- ShipOrder ----------------------------------------------------------------------------


async def test_ship_order_records_a_shipment_once_per_order_and_nothing_without_one(
    start: Start,
) -> None:
    async with start() as shop:
        order = order_id()
        before = time.time()
        tracking = await shop.ship(order)
        assert await shop.ship(order) == tracking  # a retry: the same parcel
        shipment = await shop.get(tracking)
        assert shipment.order_id == order
        assert shipment.status == Status.SHIPMENT_STATUS_LABEL_CREATED
        assert before - 1 <= at(shipment.created_at).timestamp() <= time.time() + 1
        assert (shipment.picked_up_at, shipment.delivered_at, shipment.voided_at) == ("", "", "")
        by_order = await shop.shipments.GetOrderShipment(
            spb.GetOrderShipmentRequest(order_id=order)
        )
        assert by_order == shipment
        other = await shop.ship(order_id())
        assert other != tracking

        # the upstream contract: no metadata, a tracking id and nothing stored
        upstream = (await shop.shipping.ShipOrder(SHIP)).tracking_id
        assert upstream not in (tracking, other)
        error = await rpc_error(
            shop.shipments.GetShipment(spb.GetShipmentRequest(tracking_id=upstream))
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert error.details() == f"no shipment with tracking_id {upstream!r}"


async def test_health_answers_for_the_shipment_service_and_pings_store_and_broker(
    start: Start,
) -> None:
    async with start() as shop, httpx.AsyncClient(base_url=shop.admin_url) as admin:

        async def connected() -> bool:  # the broker connects in the background
            return (await admin.get("/healthz")).status_code == 200

        await eventually(connected, "a healthy shipping service")
        report = (await admin.get("/healthz")).json()
        assert report["status"] == {"shipment-store": "OK", "nats": "OK"}
        health = health_pb2_grpc.HealthStub(shop.channel)
        for name in ("boutique.v1.ShipmentService", "hipstershop.ShippingService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_concurrent_retries_of_one_order_get_one_tracking_id(start: Start) -> None:
    async with start() as shop:
        order = order_id()
        ids = await asyncio.gather(*(shop.ship(order) for _ in range(8)))
        assert len(set(ids)) == 1


# --- the courier --------------------------------------------------------------------------


async def test_the_courier_picks_up_then_delivers_with_its_events_in_the_order_trace(
    start: Start, broker: Broker, otel: Telemetry
) -> None:
    async with start(pickup=0.2, delivery=0.3) as shop:
        order = order_id()
        tracking = await shop.ship(order)
        delivered = await shop.until(tracking, Status.SHIPMENT_STATUS_DELIVERED)
        created, picked = at(delivered.created_at), at(delivered.picked_up_at)
        assert (picked - created).total_seconds() >= 0.2
        assert (at(delivered.delivered_at) - picked).total_seconds() >= 0.3
        assert delivered.voided_at == ""

        async def both_published() -> bool:
            return len(await events_of(broker, tracking)) == 2

        await eventually(both_published, "the shipment's two events")
        assert await events_of(broker, tracking) == [
            (SHIPMENT_PICKED_UP, order),
            (SHIPMENT_DELIVERED, order),
        ]
    spans = otel.finished()
    [ship] = [s for s in spans if s.name == "hipstershop.ShippingService/ShipOrder"]
    assert ship.context is not None
    assert ship.attributes is not None and ship.attributes["app.order.id"] == order
    moves = [s for s in spans if s.name in ("courier pick up", "courier deliver")]
    assert [s.name for s in moves] == ["courier pick up", "courier deliver"]
    for move in moves:  # the order's trace goes on in the courier, after the delay
        assert move.context is not None and move.parent is not None
        assert move.context.trace_id == ship.context.trace_id
        assert move.parent.span_id == ship.context.span_id
        assert move.attributes is not None
        assert move.attributes["app.shipping.tracking_id"] == tracking
    # each event's trace context is its move's: the consumer continues the same trace
    messages = [
        m for m in await stream_messages(broker, "shipment.>") if tracking.encode() in m.data
    ]
    for message, move in zip(messages, moves, strict=True):
        assert move.context is not None
        traceparent = (message.headers or {})["traceparent"]
        assert traceparent.split("-")[1] == f"{ship.context.trace_id:032x}"


async def test_void_before_pickup_is_never_picked_up_and_after_pickup_is_refused(
    start: Start, broker: Broker
) -> None:
    async with start(pickup=0.3, delivery=60.0) as shop:
        voided_order, late_order = order_id(), order_id()
        voided = await shop.ship(voided_order)
        late = await shop.ship(late_order)
        void = await shop.shipments.VoidShipment(spb.VoidShipmentRequest(tracking_id=voided))
        assert void.status == Status.SHIPMENT_STATUS_VOIDED
        assert void.voided_at and not void.picked_up_at
        again = await shop.shipments.VoidShipment(spb.VoidShipmentRequest(tracking_id=voided))
        assert again == void  # voiding twice: no change, no error
        assert await shop.ship(voided_order) == voided  # a late retry: still that parcel

        picked = await shop.until(late, Status.SHIPMENT_STATUS_PICKED_UP)
        error = await rpc_error(
            shop.shipments.VoidShipment(spb.VoidShipmentRequest(tracking_id=late))
        )
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == (
            f"shipment {late!r} is picked up (picked up at {picked.picked_up_at}): too late to void"
        )
        assert await shop.get(late) == picked

        await asyncio.sleep(0.3)  # past the voided one's pickup time, and then some
        assert (await shop.get(voided)).status == Status.SHIPMENT_STATUS_VOIDED

        async def published() -> bool:
            return len(await events_of(broker, late)) == 1

        await eventually(published, "the pickup event")
        assert await events_of(broker, voided) == []


# --- bad input and the fault switch -------------------------------------------------------


async def test_bad_input_is_refused_naming_the_field_and_stores_nothing(start: Start) -> None:
    async with start() as shop:
        long = "x" * 500
        tracking_cases = {
            "": "tracking_id must not be empty",
            long: "tracking_id is 500 characters long, more than 128",
            "AB 12": "tracking_id 'AB 12' may hold only visible ASCII characters, no spaces",
        }
        for value, message in tracking_cases.items():
            for error in (
                await rpc_error(
                    shop.shipments.GetShipment(spb.GetShipmentRequest(tracking_id=value))
                ),
                await rpc_error(
                    shop.shipments.VoidShipment(spb.VoidShipmentRequest(tracking_id=value))
                ),
            ):
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, value
                assert error.details() == message
        error = await rpc_error(
            shop.shipments.GetOrderShipment(spb.GetOrderShipmentRequest(order_id="o\t1"))
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "order_id holds a control character (U+0009) at position 1"

        unknown = "ZZ-" + "9" * 60
        quoted = f"{unknown[:32]!r}... (63 characters)"
        for error in (
            await rpc_error(
                shop.shipments.GetShipment(spb.GetShipmentRequest(tracking_id=unknown))
            ),
            await rpc_error(
                shop.shipments.VoidShipment(spb.VoidShipmentRequest(tracking_id=unknown))
            ),
        ):
            assert error.code() is grpc.StatusCode.NOT_FOUND
            assert error.details() == f"no shipment with tracking_id {quoted}"
        error = await rpc_error(
            shop.shipments.GetOrderShipment(spb.GetOrderShipmentRequest(order_id="nope"))
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert error.details() == "no shipment for order_id 'nope'"

        bad_metadata = {
            (("boutique-order-id", "an order"),): (
                "boutique-order-id 'an order' may hold only visible ASCII characters, no spaces"
            ),
            (("boutique-order-id", ""),): "boutique-order-id must not be empty",
            (("boutique-order-id", "o" * 129),): (
                "boutique-order-id is 129 characters long, more than 128"
            ),
            (("boutique-order-id", "o-1"), ("boutique-order-id", "o-2")): (
                "boutique-order-id is given 2 times, not once"
            ),
        }
        for sent, message in bad_metadata.items():
            error = await rpc_error(shop.shipping.ShipOrder(SHIP, metadata=sent))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, sent
            assert error.details() == message
        # a bad request with a good order id records nothing either
        error = await rpc_error(
            shop.shipping.ShipOrder(pb.ShipOrderRequest(items=ITEMS), metadata=metadata("o-3"))
        )
        assert error.details() == "address is required"
        store = shop.store
        assert await store.db.execute(f"SELECT COUNT(*) FROM {store.table}") == [(0,)]


async def test_failure_rate_fails_ship_order_unavailable_and_stores_nothing(
    start: Start, otel: Telemetry, lines: Lines
) -> None:
    async with start() as shop, httpx.AsyncClient(base_url=shop.admin_url) as admin:
        assert (await admin.post("/faults?failure_rate=1")).status_code == 200
        order = order_id()
        error = await rpc_error(shop.shipping.ShipOrder(SHIP, metadata=metadata(order)))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert error.details() == "carrier unavailable (injected fault failure_rate)"
        error = await rpc_error(
            shop.shipments.GetOrderShipment(spb.GetOrderShipmentRequest(order_id=order))
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
        (failed,) = lines.entries("shipping failed")
        assert (failed["level"], failed["order_id"]) == ("error", order)
        (span,) = [s for s in otel.finished() if s.name.endswith("/ShipOrder")]
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["app.shipping.failure_reason"] == "carrier_unavailable"
        refused = await admin.post("/faults?failure_rate=2")
        assert refused.status_code == 400
        assert (await admin.post("/faults?failure_rate=0")).status_code == 200
        tracking = await shop.ship(order)
        assert (await shop.get(tracking)).status == Status.SHIPMENT_STATUS_LABEL_CREATED


# --- a restarted process ------------------------------------------------------------------


class ShippingProcess:
    """``python -m reference_services.shipping`` as a child process, killed and restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.probe = Process("shipping", int(env["PORT"]), int(env["ADMIN_PORT"]), str(log))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.env['PORT']}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reference_services.shipping"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = self.process

        async def healthy() -> bool:
            assert process.poll() is None, self.log.read_text()[-2000:]
            return await asyncio.to_thread(is_healthy, self.probe)

        await eventually(healthy, "shipping healthy")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


async def test_a_restarted_service_delivers_when_due_from_its_store(start: Start) -> None:
    async with start(pickup=0.05, delivery=1.0) as shop:
        tracking = await shop.ship(order_id())
        picked = await shop.until(tracking, Status.SHIPMENT_STATUS_PICKED_UP)
        stored = await shop.store.get(tracking)
        assert stored is not None and stored.due_ns is not None
        assert stored.due_ns > time.time_ns()  # the delivery, due later, is in the store
    async with start(pickup=0.05, delivery=1.0) as shop:  # stopped mid delivery delay
        delivered = await shop.until(tracking, Status.SHIPMENT_STATUS_DELIVERED)
    assert delivered.picked_up_at == picked.picked_up_at
    waited = at(delivered.delivered_at) - at(delivered.picked_up_at)
    assert waited.total_seconds() >= 1.0


@pytest.mark.e2e
async def test_a_killed_shipping_process_carries_on_where_it_was(
    tmp_path: Path, nats_url: str, broker: Broker
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    database = tmp_path / "shipping.db"
    env.update(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        ADMIN_PORT=str(free_port()),
        NATS_URL=nats_url,
        EVENTS_STREAM=broker.stream.name,
        SHIPPING_DATABASE_URL=f"sqlite:///{database}",
        SHIPPING_PICKUP_DELAY_S="1.0",
        SHIPPING_DELIVERY_DELAY_S="0.3",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    process = ShippingProcess(env, tmp_path / "shipping.log")
    store = ShipmentStore(SQLite(database))
    order = order_id()
    try:
        await process.start()
        async with grpc.aio.insecure_channel(process.address) as channel:
            tracking = await Shop(channel).ship(order)
        process.kill()  # mid pickup delay
        stored = await store.get(tracking)
        assert stored is not None and stored.status == LABEL_CREATED

        await process.start()
        async with grpc.aio.insecure_channel(process.address) as channel:
            delivered = await Shop(channel).until(tracking, Status.SHIPMENT_STATUS_DELIVERED)
        picked = at(delivered.picked_up_at)
        assert (picked - at(delivered.created_at)).total_seconds() >= 1.0
        assert (at(delivered.delivered_at) - picked).total_seconds() >= 0.3

        async def both_published() -> bool:
            return len(await events_of(broker, tracking)) >= 2

        await eventually(both_published, "the shipment's events")
        assert await events_of(broker, tracking) == [
            (SHIPMENT_PICKED_UP, order),
            (SHIPMENT_DELIVERED, order),
        ]
    finally:
        process.stop()
        await store.close()


# --- configuration ------------------------------------------------------------------------


def test_the_delays_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPING_DATABASE_URL", "sqlite:///var/ship.db")
    config = shipping.Config.from_env()
    assert (config.pickup_delay, config.delivery_delay) == (30.0, 60.0)
    monkeypatch.setenv("SHIPPING_PICKUP_DELAY_S", "0.25")
    monkeypatch.setenv("SHIPPING_DELIVERY_DELAY_S", "1.5")
    config = shipping.Config.from_env()
    assert (config.pickup_delay, config.delivery_delay) == (0.25, 1.5)
    for value, message in {
        "soon": "SHIPPING_PICKUP_DELAY_S='soon' is not a number",
        "-1": "SHIPPING_PICKUP_DELAY_S=-1 is below the minimum 0",
        "nan": "SHIPPING_PICKUP_DELAY_S='nan' is not a finite number",
    }.items():
        monkeypatch.setenv("SHIPPING_PICKUP_DELAY_S", value)
        with pytest.raises(ConfigError) as caught:
            shipping.Config.from_env()
        assert str(caught.value) == message


# --- the store on SQLite and PostgreSQL ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database: Database
    if request.param == "sqlite":
        database = SQLite(tmp_path / "shipping.db")
    else:
        database = Postgres(request.getfixturevalue("postgres_url"))
    yield database
    await database.close()


@pytest.fixture
async def store(db: Database) -> AsyncIterator[tuple[ShipmentStore, Outbox]]:
    prefix = unique("ship") + "_"
    shipments = ShipmentStore(db, prefix)
    outbox = Outbox(db, f"{prefix}outbox")
    assert await shipments.migrate() == 0
    assert await shipments.migrate() == 1  # again: nothing to do
    await outbox.setup()
    yield shipments, outbox
    await shipments.drop()
    await outbox.drop()


async def test_the_store_moves_each_shipment_once_with_its_event(
    store: tuple[ShipmentStore, Outbox],
) -> None:
    shipments, outbox = store
    first, created = await shipments.create("o-1", "AA-1", 1_000, 5_000, '{"traceparent": "x"}')
    assert created and first.status == LABEL_CREATED and first.due_ns == 5_000
    again, created = await shipments.create("o-1", "BB-2", 2_000, 6_000, "{}")
    assert not created and again == first
    second, _ = await shipments.create("o-2", "CC-3", 1_500, 4_000, "{}")
    assert await shipments.next_due() == 4_000
    assert await shipments.due(3_999) == []
    assert [s.tracking_id for s in await shipments.due(5_000)] == ["CC-3", "AA-1"]
    assert await shipments.for_order("o-1") == first
    assert await shipments.get("nope") is None

    voided = await shipments.void("CC-3", 4_500)
    assert voided is not None and (voided.status, voided.voided_at_ns) == (VOIDED, 4_500)
    assert await shipments.void("CC-3", 9_999) == voided  # again: unchanged
    assert await shipments.pick_up(second, 5_000, 9_000, outbox) is None  # voided: never
    picked = await shipments.pick_up(first, 5_000, 9_000, outbox)
    assert picked is not None and (picked.status, picked.due_ns) == (PICKED_UP, 9_000)
    assert await shipments.pick_up(first, 5_001, 9_001, outbox) is None  # once only
    with pytest.raises(PickedUp):
        await shipments.void("AA-1", 6_000)
    assert await shipments.get("AA-1") == picked
    assert await shipments.due(8_999) == []
    delivered = await shipments.deliver(picked, 9_100, outbox)
    assert delivered is not None and delivered.status == DELIVERED
    assert (delivered.delivered_at_ns, delivered.due_ns) == (9_100, None)
    assert await shipments.deliver(picked, 9_200, outbox) is None
    assert await shipments.next_due() is None
    assert await shipments.void("nope", 1) is None

    events = await outbox.pending()
    assert [e.subject for e in events] == [SHIPMENT_PICKED_UP, SHIPMENT_DELIVERED]
    assert ev.ShipmentPickedUp.FromString(events[0].payload) == ev.ShipmentPickedUp(
        order_id="o-1", tracking_id="AA-1"
    )
    await shipments.ping()


async def test_the_store_refuses_a_newer_schema(store: tuple[ShipmentStore, Outbox]) -> None:
    shipments, _ = store
    await shipments.db.execute(f"UPDATE {shipments.schema_table} SET version = 99")
    with pytest.raises(RuntimeError, match="holds shipment schema 99, newer than this"):
        await shipments.migrate()
