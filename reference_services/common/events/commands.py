"""The operator's dead-letter commands, ``list-dead-letters`` and ``replay-dead-letters``,
over a given set of consumers (every consumer of the boutique:
reference_services/dead_letters.py; one service's: notification/replay.py).

``list-dead-letters`` says how many letters wait under ``boutique.dead.<consumer>``
and shows the first of each consumer (event id, type, when, why). ``replay-dead-letters``
sends them back to their consumers, oldest first (see replay.py). Both read
``NATS_URL`` and ``EVENTS_STREAM`` as the services do and never create the stream.
Exit code 0 when done (for a replay: every chosen letter replayed or, with
``--dry-run``, replayable), 1 when some letter could not be replayed, 2 for a bad
argument, an unreachable broker or a stream that does not exist.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

import nats
from nats.js.errors import NotFoundError

import clue.nats
from reference_services.common.database import redact
from reference_services.common.events.replay import DeadLetter, chosen, dead_letters, replay
from reference_services.common.events.stream import Stream, nats_url
from reference_services.common.rpc import quote

LIST, REPLAY = "list-dead-letters", "replay-dead-letters"
CONNECT_TIMEOUT = 5
SHOWN = 20
"""Dead letters ``list-dead-letters`` shows per consumer unless ``--limit`` says."""
MAX_SHOWN = 1000
MAX_EVENT_ID = 128
"""The longest ``--event-id`` taken (the services' ids are 36-character UUIDs)."""
_VISIBLE = re.compile(r"[!-~]+")
REASON_CHARS = 200
"""A dead letter's reason is shown cut to this many characters (one line each)."""


def consumer_type(known: Sequence[str]) -> Callable[[str], str]:
    """The ``--consumer`` argument type: one of ``known`` (a bad one quoted short)."""

    def consumer(value: str) -> str:
        if value not in known:
            raise argparse.ArgumentTypeError(f"{quote(value)} is none of {', '.join(known)}")
        return value

    return consumer


def limit(value: str) -> int:
    """A ``--limit``: 1 to `MAX_SHOWN`."""
    # the length first: int() of thousands of digits raises, and argparse quotes it whole
    digits = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_SHOWN))
    if not digits or not 1 <= int(value) <= MAX_SHOWN:
        raise argparse.ArgumentTypeError(f"{quote(value)} is not a number from 1 to {MAX_SHOWN}")
    return int(value)


def event_id(value: str) -> str:
    """An ``--event-id``: 1 to `MAX_EVENT_ID` visible ASCII characters (a bad one quoted short)."""
    if not 1 <= len(value) <= MAX_EVENT_ID or not _VISIBLE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{quote(value)} is not an event id (1 to {MAX_EVENT_ID} visible ASCII characters)"
        )
    return value


def add_options(made: argparse.ArgumentParser, command: str, known: Sequence[str]) -> None:
    """The options of ``command`` (`LIST` or `REPLAY`) on ``made``."""
    made.add_argument(
        "--consumer",
        action="append",
        type=consumer_type(known),
        metavar="NAME",
        help=f"only this consumer's (repeatable; default: all of {', '.join(known)})",
    )
    if command == LIST:
        made.add_argument(
            "--limit",
            type=limit,
            default=SHOWN,
            help=f"dead letters shown per consumer (default {SHOWN}; all are counted)",
        )
        return
    made.add_argument(
        "--event-id",
        action="append",
        default=[],
        type=event_id,
        metavar="ID",
        help="only the dead letters of this event (repeatable)",
    )
    made.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed, replay nothing"
    )


def describe(letter: DeadLetter) -> str:
    """One line naming a dead letter: event id, type, when, why (each cut short)."""
    at = letter.at.isoformat(timespec="seconds") if letter.at else "?"
    kind = letter.event_type[:80] or "?"
    reason = " ".join(letter.reason.split())
    if len(reason) > REASON_CHARS:
        reason = reason[:REASON_CHARS] + "..."
    return f"{letter.event_id[:80] or '-'} {kind} dead since {at}: {reason or '?'}"


async def waiting(js: clue.nats.InstrumentedJetStream, stream: Stream) -> dict[str, int]:
    """How many dead letters each consumer has in ``stream`` (those with some), counted
    by the broker without reading them."""
    dead = stream.dead_letters("")
    info = await js.stream_info(stream.name, subjects_filter=dead + ">")
    subjects: dict[str, int] = info.state.subjects or {}
    return {subject.removeprefix(dead): count for subject, count in subjects.items()}


async def list_letters(
    js: clue.nats.InstrumentedJetStream,
    stream: Stream,
    consumers: Sequence[str],
    shown: int,
    out: TextIO,
    others: bool,
) -> int:
    """Print each of ``consumers``' count and first ``shown`` letters (and, when
    ``others``, the counts of consumers not among them); the exit code."""
    counts = await waiting(js, stream)
    for consumer in consumers:
        count = counts.get(consumer, 0)
        print(f"{consumer}: {count} dead letter(s)", file=out)
        letters = await dead_letters(js, stream, consumer, limit=shown) if count else []
        for letter in letters:
            print(f"  {describe(letter)}", file=out)
        if count > len(letters):
            print(f"  ... and {count - len(letters)} more (--limit)", file=out)
    unknown = sorted(set(counts) - set(consumers)) if others else []
    for consumer in unknown:
        name = quote(consumer)
        print(f"{name}: {counts[consumer]} dead letter(s) of a consumer not known here", file=out)
    total = sum(counts[c] for c in [*consumers, *unknown] if c in counts)
    print(f"{total} dead letter(s)", file=out)
    return 0


async def replay_letters(
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


async def on_stream(
    command: str,
    work: Callable[[clue.nats.InstrumentedJetStream, Stream], Awaitable[int]],
) -> int:
    """Connect to ``NATS_URL``, check ``EVENTS_STREAM`` exists (never made here: a wrong
    name is said, not created empty), run ``work``; its exit code, 2 when it cannot."""
    try:
        url, stream = nats_url(), Stream.from_env()
    except ValueError as exc:  # EVENTS_STREAM or NATS_URL not usable
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    where = ",".join(redact(u) for u in url.split(","))
    try:
        nc = await nats.connect(
            url.split(","), connect_timeout=CONNECT_TIMEOUT, max_reconnect_attempts=1
        )
    except Exception as exc:  # nats-py raises its own errors and OSError
        print(f"{command}: no NATS answers at {where}: {exc}", file=sys.stderr)
        return 2
    try:
        js = clue.nats.instrument(nc).jetstream()
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            print(f"{command}: no stream {stream.name} at {where}", file=sys.stderr)
            return 2
        return await work(js, stream)
    finally:
        await nc.close()


async def async_run(
    command: str, args: argparse.Namespace, known: Sequence[str], out: TextIO
) -> int:
    """Run ``command`` (`LIST` or `REPLAY`) with its parsed ``args`` over the ``known``
    consumers; the exit code."""
    consumers = args.consumer or list(known)
    if command == LIST:
        return await on_stream(
            command,
            lambda js, stream: list_letters(
                js, stream, consumers, args.limit, out, others=not args.consumer
            ),
        )
    return await on_stream(
        command,
        lambda js, stream: replay_letters(js, stream, consumers, args.event_id, args.dry_run, out),
    )
