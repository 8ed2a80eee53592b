"""Request ids shared by the gRPC interceptors, the ASGI middleware and outgoing calls."""

from __future__ import annotations

import random

HEADER = "x-request-id"

# A request id correlates log lines; it is not a secret. The Mersenne Twister
# (reseeded in forked children by the random module) costs a fraction of an
# os.urandom system call on every request.
_bits = random.getrandbits


def new_request_id() -> str:
    """A fresh random request id (16 hex digits)."""
    return _bits(64).to_bytes(8).hex()  # a third of a :016x format's cost
