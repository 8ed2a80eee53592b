"""``kill -9`` of the notification service in the middle of a stream of orders, then a
restart: every order is notified, recorded once, and e-mailed once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest

from reference_services.common.database import SQLite
from reference_services.common.events import ORDER_PLACED, Broker, Outbox, Relay, Stream
from reference_services.email import service as email
from reference_services.launcher import Process, is_healthy
from reference_services.notification.service import CONSUMER
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from tests.boutique.conftest import serving, unique
from tests.boutique.test_notification_events import eventually, order_placed
from tests.boutique.tokens import History, issuing
from tests.conftest import Lines, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 300
USER = "crash-test"


class Notification:
    """The notification service as a child process (``python -m``), killed and restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.probe = Process("notification", int(env["PORT"]), int(env["ADMIN_PORT"]), str(log))

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reference_services.notification"],
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

        await eventually(healthy, bool)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture
async def producer(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Broker, Relay]]:
    """A broker on a stream of the test's own and a relay over a SQLite outbox."""
    broker = Broker(nats_url, Stream(unique("CRASH").upper()))
    js = await broker.jetstream()
    outbox = Outbox(SQLite(tmp_path / "producer.db"))
    try:
        yield broker, Relay(outbox, broker)
    finally:
        await broker.stream.delete(js)
        await outbox.close()
        await broker.close()


async def test_kill_9_mid_stream_then_restart_notifies_every_order_once(
    producer: tuple[Broker, Relay], nats_url: str, tmp_path: Path, lines: Lines
) -> None:
    broker, relay = producer
    async with serving("email", await email.build()) as mail, issuing(tmp_path) as issuer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            HOST="127.0.0.1",
            PORT=str(free_port()),
            ADMIN_PORT=str(free_port()),
            EMAIL_SERVICE_ADDR=mail.address,
            USER_SERVICE_ADDR=issuer.address,
            NATS_URL=nats_url,
            EVENTS_STREAM=broker.stream.name,
            NOTIFICATION_DATABASE_URL=f"sqlite:///{tmp_path / 'notification.db'}",
            NOTIFICATION_ACK_WAIT="2",  # an event the killed process held comes back soon
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        service = Notification(env, tmp_path / "notification.log")
        try:
            await service.start()
            order_ids = [f"crash-{i:04d}" for i in range(ORDERS)]
            for order_id in order_ids:
                async with relay.outbox.db.transaction() as tx:
                    await relay.outbox.add(tx, ORDER_PLACED, order_placed(order_id, USER))
            assert await relay.publish_pending() == ORDERS

            def sent() -> Counter[str]:
                return Counter(e["order_id"] for e in lines.entries("order confirmation sent"))

            async def some_sent() -> int:
                return len(sent())

            await eventually(some_sent, lambda n: n >= 20)
            service.kill()
            assert len(sent()) < ORDERS, "every order was handled before the kill"
            await service.start()

            async def recorded() -> list[npb.Notification]:
                """Every notification of the test's user, page after page."""
                found: list[npb.Notification] = []
                token = ""
                async with grpc.aio.insecure_channel(f"127.0.0.1:{env['PORT']}") as channel:
                    history = History(npb_grpc.NotificationServiceStub(channel), issuer.token(USER))
                    while True:
                        page = await history.GetNotificationHistory(
                            npb.GetNotificationHistoryRequest(
                                user_id=USER, page_size=100, page_token=token
                            )
                        )
                        found += page.notifications
                        token = page.next_page_token
                        if not token:
                            return found

            notified = await eventually(recorded, lambda found: len(found) >= ORDERS)

            async def consumer() -> tuple[int, int]:
                js = await broker.jetstream()
                info = await js.consumer_info(broker.stream.name, CONSUMER)
                return info.num_pending, info.num_ack_pending

            # what the killed process held comes back after the ack wait, and is acked
            await eventually(consumer, lambda left: left == (0, 0))
        finally:
            service.stop()
    assert sorted(n.order_id for n in notified) == order_ids  # each recorded once
    emails = sent()
    assert set(emails) == set(order_ids)
    # once each: an e-mail the killed process sent before it could commit that it had is
    # asked for again after the restart, with the same idempotency key (the event id)
    assert set(emails.values()) == {1}
