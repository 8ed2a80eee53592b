"""Request ids shared by the gRPC interceptors, the ASGI middleware and outgoing calls."""

from __future__ import annotations

import random
import re

HEADER = "x-request-id"
#: A caller's request id is taken on when it is at most 64 characters among letters,
#: digits and ``._:-`` (hex ids, UUIDs, ULIDs); anything else is logged and echoed on
#: every line and response, so it is replaced by a fresh id rather than trusted.
CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# A request id correlates log lines; it is not a secret. The Mersenne Twister
# (reseeded in forked children by the random module) costs a fraction of an
# os.urandom system call on every request.
_bits = random.getrandbits


def new_request_id() -> str:
    """A fresh random request id (16 hex digits)."""
    return _bits(64).to_bytes(8).hex()  # cheaper than a :016x format


def request_id_or_new(caller: str | None) -> str:
    """``caller``'s request id when it is short and plain (`CALLER_ID`), else a fresh one."""
    if caller and CALLER_ID.fullmatch(caller):
        return caller
    return new_request_id()
