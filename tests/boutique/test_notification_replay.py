"""Replaying dead letters on a real NATS JetStream, through the operator's command
(``python -m reference_services.notification replay-dead-letters``: a real process once,
its ``async_main`` in the test's process the other times, as a process starts slowly)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys

import httpx
import pytest

from clue import log
from reference_services.common.events import ORDER_PLACED
from reference_services.common.events.replay import dead_letters
from reference_services.notification import confirmations, replay
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from tests.boutique.conftest import unique
from tests.boutique.test_notification_events import DEADLINE, Rig, emails, eventually, rig
from tests.conftest import Lines

__all__ = ["rig"]  # the fixture, shared with the confirmations' tests
CONSUMER = confirmations.CONSUMER


async def command(nats_url: str, stream: str, *args: str) -> tuple[int, str, str]:
    """Run the command's code against ``stream``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stderr(err):
        env.setenv("NATS_URL", nats_url)
        env.setenv("EVENTS_STREAM", stream)
        try:
            code = await replay.async_main(args, out)
        except SystemExit as exit:  # argparse's, for a bad argument
            code = int(exit.code or 0)
    return code, out.getvalue(), err.getvalue()


async def process(nats_url: str, stream: str, *args: str) -> tuple[int, str, str]:
    """Run the replay command in a process of its own: (exit code, stdout, stderr)."""
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "EVENTS_STREAM": stream,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    argv = [sys.executable, "-m", "reference_services.notification", "replay-dead-letters", *args]
    done = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    return done.returncode, done.stdout, done.stderr


async def failure_rate(rig: Rig, value: str) -> None:
    async with httpx.AsyncClient(base_url=rig.notification.admin.url) as admin:
        assert (await admin.post("/faults", params={"failure_rate": value})).status_code == 200


async def letters(rig: Rig) -> list[str]:
    """The event ids of the confirmations' dead letters in the stream."""
    js = await rig.producer.jetstream()
    found = await dead_letters(js, rig.producer.stream, CONSUMER)
    return [letter.event_id for letter in found]


async def test_a_dead_letter_replayed_after_the_fix_is_sent_once(rig: Rig, lines: Lines) -> None:
    await failure_rate(rig, "1")
    with log.request_scope(request_id="shop-42"):  # as checkout's PlaceOrder writes it
        event_id = await rig.place("o-replay")
    (failed,) = await eventually(rig.notifications, lambda found: len(found) == 1)
    assert failed.status == npb.NOTIFICATION_STATUS_FAILED
    assert await letters(rig) == [event_id]

    # a dry run lists it and leaves it
    code, out, _ = await command(
        rig.producer.url, rig.producer.stream.name, "--consumer", CONSUMER, "--dry-run"
    )
    assert code == 0
    assert f"would replay {event_id} boutique.v1.OrderPlaced dead since" in out
    assert "NotificationFailed: failure_rate fault: confirmation not sent" in out
    assert out.splitlines()[-1] == "would replay 1 of 1"
    assert await letters(rig) == [event_id]
    code, out, _ = await command(
        rig.producer.url, rig.producer.stream.name, "--event-id", "x", "--dry-run"
    )
    assert (code, out.splitlines()[-1]) == (0, "would replay 0 of 0")

    # replayed while the cause is still there: it fails again and is a dead letter again
    code, out, _ = await command(rig.producer.url, rig.producer.stream.name, "--consumer", CONSUMER)
    assert (code, out.splitlines()[-1]) == (0, "replayed 1 of 1")
    await eventually(lambda: letters(rig), lambda found: found == [event_id])
    first_try = [e for e in lines.entries("unhandled exception") if e["message_id"] == event_id]
    again = [e for e in lines.entries("unhandled exception") if e["message_id"] != event_id]
    assert len(first_try) == len(again) == 3  # every delivery of each, in the shop's request
    assert {e["request_id"] for e in first_try + again} == {"shop-42"}

    # the cause fixed, a replay of every consumer's letters sends it, once
    await failure_rate(rig, "0")
    code, out, _ = await process(rig.producer.url, rig.producer.stream.name)
    assert code == 0, out
    assert "notification-welcome: 0 dead letter(s)" in out
    assert out.splitlines()[-1] == "replayed 1 of 1"
    (sent,) = await eventually(
        rig.notifications, lambda found: found[0].status == npb.NOTIFICATION_STATUS_SENT
    )
    assert (sent.id, sent.order_id) == (event_id, "o-replay")
    assert len(emails(lines, "o-replay")) == 1
    assert await letters(rig) == []

    # a message with no event id goes to the dead letters at once, and is never replayed
    js = await rig.producer.jetstream()
    await js.publish(rig.producer.stream.subject(ORDER_PLACED), b"junk")
    await eventually(lambda: letters(rig), lambda found: found == [""])
    code, out, _ = await command(rig.producer.url, rig.producer.stream.name, "--consumer", CONSUMER)
    assert code == 1
    assert "cannot replay" in out and "(it has no event id)" in out
    assert out.splitlines()[-1] == "replayed 0 of 1"
    assert await letters(rig) == [""]


async def test_a_bad_argument_or_stream_is_named_and_changes_nothing(nats_url: str) -> None:
    code, out, err = await command(nats_url, "NOSUCH", "--consumer", "x" * 5000)
    assert (code, out) == (2, "")
    assert f"argument --consumer: {'x' * 32!r}... (5000 characters) is none of" in err
    assert len(err) < 1000
    stream = unique("NOSUCH").upper()
    code, out, err = await command(nats_url, stream, "--dry-run")
    assert (code, out, err.strip()) == (
        2,
        "",
        f"replay-dead-letters: no stream {stream} at {nats_url}",
    )
