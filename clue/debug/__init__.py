"""Runtime debugging: toggle debug logs (``/debug``) and mount profiling (``/debug/pprof``).

`enable`, `disable` and `status` need nothing beyond clue; `routes` and
`Guard` need the ``asgi`` extra (imported on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clue.debug.toggle import MAX_TTL, DebugStatus, disable, enable, parse_ttl, status

if TYPE_CHECKING:
    from clue.debug.endpoints import routes
    from clue.debug.guard import TOKEN_ENV, Guard

    # isort: split
    # clue's internal API (the rule is in clue/__init__.py): for clue.admin, not programs.
    from clue.debug.endpoints import unguarded_routes as unguarded_routes

_LAZY = {
    "routes": "clue.debug.endpoints",
    "Guard": "clue.debug.guard",
    "TOKEN_ENV": "clue.debug.guard",
    "unguarded_routes": "clue.debug.endpoints",
}

__all__ = [
    "MAX_TTL",
    "TOKEN_ENV",
    "DebugStatus",
    "Guard",
    "disable",
    "enable",
    "parse_ttl",
    "routes",
    "status",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clue.debug' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
