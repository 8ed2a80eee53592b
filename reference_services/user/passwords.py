"""Password hashes: argon2id at the OWASP-recommended cost, off the event loop."""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TIME_COST = 2
MEMORY_KIB = 19 * 1024
PARALLELISM = 1
"""OWASP's Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 at the least."""


class Passwords:
    """Hashes and checks passwords (argon2id), each in a worker thread: one hash takes
    tens of milliseconds of CPU, which must not stall the service's other calls."""

    def __init__(
        self,
        time_cost: int = TIME_COST,
        memory_kib: int = MEMORY_KIB,
        parallelism: int = PARALLELISM,
    ) -> None:
        self.hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        # checked against when the e-mail is unknown, so that answering takes as long
        self._decoy = self.hasher.hash("not the password of any account")

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash of ``password`` (salted, parameters included)."""
        return await asyncio.to_thread(self.hasher.hash, password)

    async def check(self, encoded: str | None, password: str) -> bool:
        """Whether ``password`` matches ``encoded``; None (no such account) takes as long
        as a real check and is False."""
        try:
            matched = await asyncio.to_thread(self.hasher.verify, encoded or self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return matched and encoded is not None

    def outdated(self, encoded: str) -> bool:
        """Whether ``encoded`` was made at another cost than this hasher's (rehash it)."""
        return self.hasher.check_needs_rehash(encoded)
