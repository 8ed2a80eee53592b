"""``python -m reference_services.notification replay-dead-letters``: the notification
service's dead letters back to their consumers, once the cause is fixed.

An alias of ``python -m reference_services events replay-dead-letters`` limited to
the notification service's consumers (reference_services/common/events/commands.py:
options, output and exit codes). The service need not be stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

import clue
from reference_services.common.events.commands import REPLAY, add_options, async_run
from reference_services.notification.confirmations import CONSUMER
from reference_services.notification.orders import CONSUMER as STATUS
from reference_services.notification.orders import REFUNDS
from reference_services.notification.welcome import CONSUMER as WELCOME

COMMAND = REPLAY
CONSUMERS = (CONSUMER, WELCOME, STATUS, REFUNDS)
"""The consumers whose dead letters can be replayed (events of the contract)."""


def parser() -> argparse.ArgumentParser:
    """The command line of ``replay-dead-letters``."""
    made = argparse.ArgumentParser(
        prog=f"python -m reference_services.notification {COMMAND}",
        description="Replay the notification service's dead letters to their consumers.",
    )
    add_options(made, COMMAND, CONSUMERS)
    return made


async def async_main(argv: Sequence[str], out: TextIO) -> int:
    """Parse ``argv`` (after the command), connect, run; the exit code."""
    return await async_run(COMMAND, parser().parse_args(list(argv)), CONSUMERS, out)


def main(argv: Sequence[str]) -> int:
    """``replay-dead-letters [--consumer NAME] [--event-id ID] [--dry-run]``; the exit code.

    Its replays are PRODUCER spans in the traces the events came with, exported
    where the ``OTEL_*`` variables say (as the services' spans)."""
    args = parser().parse_args(list(argv))  # a bad one exits 2 before anything starts
    clue.configure(service_name="notification-replay")
    try:
        return asyncio.run(async_run(COMMAND, args, CONSUMERS, sys.stdout))
    finally:
        clue.shutdown()
