"""The checkout saga's durable state, in the order database beside the orders.

One row per order says which kind of saga runs on it (placing or cancelling
it), the step it is about to take, whether it is going forward, compensating
or done, why it compensates, which checkout process owns it, and the trace
context it runs in. Each write is one transaction with the status move, the
history entry and the outbox event the step causes, and it is committed
before the step's call is made: a process killed at any moment leaves a row
saying what to do next. A checkout process records a heartbeat while it runs;
`SagaLog.orphans` are the unfinished sagas whose owner stopped beating (or
this process's own that no task runs any more), which recovery takes over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from reference_services.checkout.orders import OrderStore
from reference_services.common.database import Transaction

PLACE = "place"
CANCEL = "cancel"
FORWARD = "forward"
COMPENSATING = "compensating"
DONE = "done"


@dataclass(frozen=True)
class SagaState:
    """One saga as its log holds it."""

    order_id: str
    kind: str
    """`PLACE` or `CANCEL`."""
    step: str
    """The step it is about to take (the steps before it are done)."""
    state: str
    """`FORWARD`, `COMPENSATING` or `DONE`."""
    reason: str
    """Why it compensates or cancels (empty while all goes well)."""
    owner: str
    carrier: dict[str, str]
    """The W3C trace context of the saga (its steps are spans of that trace)."""
    updated_ns: int


_COLUMNS = "order_id, kind, step, state, reason, owner, carrier_json, updated_ns"


class SagaLog:
    """The saga rows of ``store``'s database, written on behalf of process ``owner``."""

    def __init__(self, store: OrderStore, owner: str) -> None:
        self.store = store
        self.owner = owner
        self.table = store.saga_table
        self.beats = store.beat_table

    async def write(
        self,
        tx: Transaction,
        order_id: str,
        *,
        kind: str,
        step: str,
        state: str = FORWARD,
        reason: str = "",
        carrier: Mapping[str, str] | None = None,
    ) -> None:
        """Insert or replace the saga of ``order_id`` in ``tx``, owned by this process
        (the carrier is kept when none is given)."""
        now = time.time_ns()
        if carrier is None:
            await tx.execute(
                f"UPDATE {self.table} SET kind = %s, step = %s, state = %s, reason = %s,"
                " owner = %s, updated_ns = %s WHERE order_id = %s",
                (kind, step, state, reason, self.owner, now, order_id),
            )
            return
        await tx.execute(
            f"INSERT INTO {self.table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (order_id) DO UPDATE SET kind = excluded.kind, step = excluded.step,"
            " state = excluded.state, reason = excluded.reason, owner = excluded.owner,"
            " carrier_json = excluded.carrier_json, updated_ns = excluded.updated_ns",
            (order_id, kind, step, state, reason, self.owner, json.dumps(dict(carrier)), now),
        )

    async def get(self, order_id: str) -> SagaState | None:
        """The saga of an order, None if it never had one."""
        rows = await self.store.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE order_id = %s", (order_id,)
        )
        return _state(rows[0]) if rows else None

    async def beat(self) -> None:
        """Record that this process is alive."""
        await self.store.db.execute(
            f"INSERT INTO {self.beats} (owner, beat_ns) VALUES (%s, %s)"
            " ON CONFLICT (owner) DO UPDATE SET beat_ns = excluded.beat_ns",
            (self.owner, time.time_ns()),
        )

    async def forget_beat(self) -> None:
        """Record that this process stopped (at a graceful stop: its sagas are orphans now)."""
        await self.store.db.execute(f"DELETE FROM {self.beats} WHERE owner = %s", (self.owner,))

    async def orphans(self, settled_for: float, lease: float) -> list[SagaState]:
        """Unfinished sagas untouched for ``settled_for`` seconds whose owner is this
        process or has not beaten for ``lease`` seconds, oldest first."""
        now = time.time_ns()
        rows = await self.store.db.execute(
            f"SELECT {', '.join('s.' + c for c in _COLUMNS.split(', '))} FROM {self.table} s"
            f" WHERE s.state <> %s AND s.updated_ns < %s AND (s.owner = %s OR NOT EXISTS"
            f" (SELECT 1 FROM {self.beats} b WHERE b.owner = s.owner AND b.beat_ns >= %s))"
            " ORDER BY s.updated_ns",
            (DONE, now - int(settled_for * 1e9), self.owner, now - int(lease * 1e9)),
        )
        return [_state(r) for r in rows]

    async def unfinished(self) -> list[SagaState]:
        """Every saga not done, oldest first."""
        rows = await self.store.db.execute(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE state <> %s ORDER BY updated_ns", (DONE,)
        )
        return [_state(r) for r in rows]

    async def claim(self, saga: SagaState) -> bool:
        """Take an orphan over for this process; False if another process took it first."""
        async with self.store.db.transaction() as tx:
            taken = await tx.execute(
                f"UPDATE {self.table} SET owner = %s, updated_ns = %s"
                " WHERE order_id = %s AND owner = %s AND updated_ns = %s RETURNING order_id",
                (self.owner, time.time_ns(), saga.order_id, saga.owner, saga.updated_ns),
            )
        return bool(taken)


def _state(row: tuple[object, ...]) -> SagaState:
    carrier = json.loads(str(row[6]))
    return SagaState(
        order_id=str(row[0]),
        kind=str(row[1]),
        step=str(row[2]),
        state=str(row[3]),
        reason=str(row[4]),
        owner=str(row[5]),
        carrier={str(k): str(v) for k, v in carrier.items()},
        updated_ns=int(str(row[7])),
    )
