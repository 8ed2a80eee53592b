"""``python -m reference_services events list-dead-letters|replay-dead-letters``: the
dead letters of every durable consumer of the boutique, listed or sent back to their
consumers once the cause is fixed (reference_services/common/events/commands.py).

Run beside the services (which keep running) with their ``NATS_URL`` and
``EVENTS_STREAM``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

import clue
from reference_services.checkout.shipments import CONSUMERS as SHIPMENTS
from reference_services.common.events.commands import LIST, REPLAY, add_options, async_run
from reference_services.notification.replay import CONSUMERS as NOTIFICATION
from reference_services.productcatalog.cancellations import CONSUMER as CANCELLATIONS

CONSUMERS = (*NOTIFICATION, *SHIPMENTS.values(), CANCELLATIONS)
"""Every durable consumer of the boutique (an EventConsumer of some service)."""
PROG = "python -m reference_services events"
DESCRIPTION = "List or replay the dead letters of the boutique's consumers."


def parser() -> argparse.ArgumentParser:
    """The command line after ``events``."""
    made = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    commands = made.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        LIST: "what waits under boutique.dead.<consumer>: counts, event ids, errors",
        REPLAY: "send the dead letters back to their consumers",
    }
    for command, help in helps.items():
        add_options(commands.add_parser(command, help=help, description=help), command, CONSUMERS)
    return made


async def async_main(argv: Sequence[str], out: TextIO) -> int:
    """Parse ``argv`` (after ``events``), connect, run; the exit code."""
    args = parser().parse_args(list(argv))
    return await async_run(args.command, args, CONSUMERS, out)


def main(argv: Sequence[str]) -> int:
    """``events list-dead-letters|replay-dead-letters [options]``; the exit code.

    A replay's spans are PRODUCER spans in the traces the events came with,
    exported where the ``OTEL_*`` variables say."""
    args = parser().parse_args(list(argv))  # a bad one exits 2 before anything starts
    clue.configure(service_name="events-replay")
    try:
        return asyncio.run(async_run(args.command, args, CONSUMERS, sys.stdout))
    finally:
        clue.shutdown()
