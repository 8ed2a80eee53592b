"""``python -m reference_services.notification replay-dead-letters``: the notification
service's dead letters back to their consumers, once the cause is fixed.

Lists each consumer's dead letters (``boutique.dead.<consumer>``) and replays them,
oldest first (reference_services/common/events/replay.py): each event is handled
afresh by the consumer that gave up on it, and leaves the dead-letter subject. The
service need not be stopped. Reads ``NATS_URL`` and ``EVENTS_STREAM`` as the service
does; exit code 0 when every chosen letter was replayed (or, with ``--dry-run``,
could be), 1 when some could not be, 2 for a bad argument or an unreachable broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

import nats
from nats.js.errors import NotFoundError

import clue
import clue.nats
from reference_services.common.database import redact
from reference_services.common.events import Stream, nats_url
from reference_services.common.events.replay import DeadLetter, chosen, dead_letters, replay
from reference_services.common.rpc import quote
from reference_services.notification.confirmations import CONSUMER
from reference_services.notification.orders import CONSUMER as STATUS
from reference_services.notification.orders import REFUNDS
from reference_services.notification.welcome import CONSUMER as WELCOME

COMMAND = "replay-dead-letters"
CONSUMERS = (CONSUMER, WELCOME, STATUS, REFUNDS)
"""The consumers whose dead letters can be replayed (events of the contract)."""
CONNECT_TIMEOUT = 5


def consumer(value: str) -> str:
    """A ``--consumer`` value: one of `CONSUMERS` (a bad one quoted short)."""
    if value not in CONSUMERS:
        raise argparse.ArgumentTypeError(f"{quote(value)} is none of {', '.join(CONSUMERS)}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line of ``replay-dead-letters``."""
    made = argparse.ArgumentParser(
        prog=f"python -m reference_services.notification {COMMAND}",
        description="Replay the notification service's dead letters to their consumers.",
    )
    made.add_argument(
        "--consumer",
        action="append",
        type=consumer,
        help="whose dead letters (repeatable; default: every consumer of the service)",
    )
    made.add_argument(
        "--event-id",
        action="append",
        default=[],
        metavar="ID",
        help="only the dead letters of this event (repeatable)",
    )
    made.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed, replay nothing"
    )
    return made


def describe(letter: DeadLetter) -> str:
    """One line naming a dead letter: event id, type, when, why."""
    at = letter.at.isoformat(timespec="seconds") if letter.at else "?"
    kind = letter.event_type or "?"
    return f"{letter.event_id or '-'} {kind} dead since {at}: {letter.reason or '?'}"


async def run(
    js: clue.nats.InstrumentedJetStream,
    stream: Stream,
    consumers: Sequence[str],
    event_ids: Sequence[str],
    dry_run: bool,
    out: TextIO,
) -> int:
    """List and replay (unless ``dry_run``) the chosen dead letters; the exit code."""
    replayed = failed = 0
    for consumer in consumers:
        letters = chosen(await dead_letters(js, stream, consumer), event_ids)
        print(f"{consumer}: {len(letters)} dead letter(s)", file=out)
        for letter in letters:
            why = letter.unreplayable(stream)
            if why:
                failed += 1
                print(f"  cannot replay {letter.seq} ({why}): {describe(letter)}", file=out)
            elif dry_run:
                replayed += 1
                print(f"  would replay {describe(letter)}", file=out)
            else:
                fresh = await replay(js, stream, letter)
                replayed += 1
                again = "" if fresh else " (the broker had it already)"
                print(f"  replayed {describe(letter)}{again}", file=out)
    verb = "would replay" if dry_run else "replayed"
    print(f"{verb} {replayed} of {replayed + failed}", file=out)
    return 1 if failed else 0


async def main_async(argv: Sequence[str], out: TextIO) -> int:
    """Parse ``argv`` (after the command), connect, run; the exit code."""
    args = parser().parse_args(list(argv))
    url, stream = nats_url(), Stream.from_env()
    where = ",".join(redact(u) for u in url.split(","))
    try:
        nc = await nats.connect(
            url.split(","), connect_timeout=CONNECT_TIMEOUT, max_reconnect_attempts=1
        )
    except Exception as exc:  # nats-py raises its own errors and OSError
        print(f"{COMMAND}: no NATS answers at {where}: {exc}", file=sys.stderr)
        return 2
    try:
        js = clue.nats.instrument(nc).jetstream()
        try:  # never made here: a wrong EVENTS_STREAM is said, not created empty
            await js.stream_info(stream.name)
        except NotFoundError:
            print(f"{COMMAND}: no stream {stream.name} at {where}", file=sys.stderr)
            return 2
        consumers = args.consumer or list(CONSUMERS)
        return await run(js, stream, consumers, args.event_id, args.dry_run, out)
    finally:
        await nc.close()


def main(argv: Sequence[str]) -> int:
    """``replay-dead-letters [--consumer NAME] [--event-id ID] [--dry-run]``; the exit code.

    Its replays are PRODUCER spans in the traces the events came with, exported
    where the ``OTEL_*`` variables say (as the services' spans)."""
    clue.configure(service_name="notification-replay")
    try:
        return asyncio.run(main_async(argv, sys.stdout))
    except ValueError as exc:  # EVENTS_STREAM or NATS_URL not usable
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return 2
    finally:
        clue.shutdown()
