"""What a forked child renews of clue's telemetry (pre-fork servers, ``os.fork``).

A fork copies the calling thread only: a lock another thread held at that
moment stays held in the child, with nobody left to release it, and an
exporter's connection would be shared with the parent. The SDK renews its own
part (batch processor threads and queues, the metric reader's thread, provider
locks, ``service.instance.id``); clue's objects renew theirs the same way, by a
hook the child runs while they live.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def in_child(method: Callable[[], object]) -> None:
    """Call the bound ``method`` in every forked child, as long as its object lives."""
    weak = weakref.WeakMethod(method)

    def call() -> None:
        bound = weak()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=call)
