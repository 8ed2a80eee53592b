"""What the shared login lockout and registration limit add to a login, on SQLite.

The user service counts failed logins and registrations in its store (so that every
replica shares them). This measures, on a real SQLite file in a temporary directory
(WAL, full sync on commit, as the service runs it), the store work of each kind of
attempt: a successful login (the lockout check and forgetting the e-mail's failures),
a failed one (the check and counting the failure of the e-mail and the client, one
transaction) and a registration (one bucket upsert). The baseline, measured in the
same run, is the argon2id check every login already pays. Goal: a successful login's
guards cost at most 2 % of its password check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goal import goal, info

from reference_services.common.database import SQLite
from reference_services.user.lockout import Lockout
from reference_services.user.passwords import Passwords
from reference_services.user.ratelimit import RateLimit
from reference_services.user.store import UserStore


async def per_call_us(rounds: int, call: Callable[[int], Awaitable[object]]) -> float:
    """The median over five batches of the mean time of ``call(i)``, in microseconds."""
    batches = []
    for batch in range(5):
        start = time.perf_counter()
        for i in range(rounds):
            await call(batch * rounds + i)
        batches.append((time.perf_counter() - start) / rounds * 1e6)
    return statistics.median(batches)


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = UserStore(SQLite(Path(tmp) / "user.db"))
        await store.migrate()
        lockout = Lockout(store)
        limit = RateLimit(store, 1_000_000)
        passwords = Passwords()
        encoded = await passwords.hash("correct horse battery")

        async def succeed(i: int) -> None:
            await lockout.locked_for(f"email:u{i}", "peer:203.0.113.9")
            await lockout.forget(f"email:u{i}")

        async def fail(i: int) -> None:
            await lockout.locked_for(f"email:u{i}", f"peer:203.0.113.{i % 200}")
            await lockout.fail(f"email:u{i}", f"peer:203.0.113.{i % 200}")

        async def check(_: int) -> None:
            await passwords.check(encoded, "correct horse battery")

        ok_us = await per_call_us(rounds, succeed)
        failed_us = await per_call_us(rounds, fail)
        register_us = await per_call_us(rounds, lambda i: limit.take(f"198.51.100.{i % 200}"))
        argon2_us = await per_call_us(4, check)
        await store.close()
    info(
        "boutique.accounts.guards_us",
        login_ok=ok_us,
        login_failed=failed_us,
        register=register_us,
        argon2id_check=argon2_us,
    )
    goal("boutique.accounts.guards_share", ok_us / argon2_us * 100, "<=", 2, "%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="attempts per batch")
    asyncio.run(main(parser.parse_args().rounds))
