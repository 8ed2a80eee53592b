"""Replaying a consumer's dead letters once their cause is fixed.

A dead letter (``boutique.dead.<consumer>``) holds the message a consumer gave
up on, as it came, with its event id in ``event-id`` and the subject it came
on in ``dead-letter-subject``. Replaying one publishes it on that subject
again, under a message id of its own (``<event id>.replay.<sequence of the
dead letter>``: the broker's de-duplication would drop the event id itself, and
a second replay of one dead letter is dropped), in the trace it came with; then
it is deleted from the stream. Every consumer of the subject gets it again:
the one that gave up handles it afresh, with its full retries, and the others
find its event id processed and only acknowledge it. A letter that fails again
is dead-lettered again, under its replay's id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field

from nats.js.errors import NotFoundError

import clue.nats
from clue import messaging
from reference_services.common.events.consumer import (
    DEAD_REASON_HEADER,
    DEAD_SUBJECT_HEADER,
    EVENT_ID_HEADER,
)
from reference_services.common.events.contract import ID_HEADER, TYPE_HEADER
from reference_services.common.events.stream import Stream

DEAD_HEADERS = {DEAD_REASON_HEADER, DEAD_SUBJECT_HEADER, ID_HEADER.lower()}
"""Headers a dead letter has that its replay does not carry."""


@dataclass(frozen=True)
class DeadLetter:
    """One message a consumer gave up on, as kept in the stream."""

    seq: int
    """Its sequence number in the stream."""
    event_id: str
    subject: str
    """The stream subject it came on (where a replay publishes it)."""
    event_type: str
    reason: str
    at: dt.datetime | None
    data: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)

    def unreplayable(self, stream: Stream) -> str:
        """Why this letter cannot be replayed to ``stream``, or "" when it can."""
        if not self.event_id:
            return "it has no event id"
        prefix = stream.prefix + "."
        if not self.subject.startswith(prefix) or self.subject.startswith(prefix + "dead."):
            return f"it came on {self.subject[:80]!r}, not an event subject of the stream"
        return ""


async def dead_letters(
    js: clue.nats.InstrumentedJetStream, stream: Stream, consumer: str, limit: int | None = None
) -> list[DeadLetter]:
    """``consumer``'s dead letters still in ``stream``, oldest first (the first ``limit``)."""
    subject = stream.dead_letters(consumer)
    found: list[DeadLetter] = []
    seq = 1
    while limit is None or len(found) < limit:
        try:
            raw = await js.get_msg(stream.name, seq, subject=subject, next=True)
        except NotFoundError:
            return found
        headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
        found.append(
            DeadLetter(
                seq=raw.seq or seq,
                event_id=messaging.header(headers, EVENT_ID_HEADER) or "",
                subject=messaging.header(headers, DEAD_SUBJECT_HEADER) or "",
                event_type=messaging.header(headers, TYPE_HEADER) or "",
                reason=messaging.header(headers, DEAD_REASON_HEADER) or "",
                at=raw.time,
                data=raw.data or b"",
                headers=headers,
            )
        )
        seq = found[-1].seq + 1
    return found


async def replay(js: clue.nats.InstrumentedJetStream, stream: Stream, letter: DeadLetter) -> bool:
    """Publish ``letter`` on its subject again (in its trace), then delete it from the
    stream; False when the broker had it already (replayed before, its deletion lost).
    ValueError when it cannot be replayed (see `DeadLetter.unreplayable`)."""
    why = letter.unreplayable(stream)
    if why:
        raise ValueError(f"dead letter {letter.seq} cannot be replayed: {why}")
    headers = {k: v for k, v in letter.headers.items() if k.lower() not in DEAD_HEADERS}
    headers[EVENT_ID_HEADER] = letter.event_id
    headers[ID_HEADER] = f"{letter.event_id}.replay.{letter.seq}"
    # its PRODUCER span continues the trace context the headers carry
    ack = await js.publish(letter.subject, letter.data, stream=stream.name, headers=headers)
    await js.delete_msg(stream.name, letter.seq)
    return not ack.duplicate


def chosen(letters: list[DeadLetter], event_ids: Collection[str]) -> list[DeadLetter]:
    """The letters of ``event_ids`` (all of them when empty)."""
    if not event_ids:
        return letters
    return [letter for letter in letters if letter.event_id in event_ids]
