"""Health checks: pingers, a concurrent Checker, HTTP endpoints and a gRPC servicer.

``Checker`` and ``pinger`` need nothing beyond clue itself; ``HTTPPinger``
needs the ``httpx`` extra, ``routes``/``app`` the ``asgi`` extra, and ``GRPCPinger``,
``HealthServicer`` and ``AsyncHealthServicer`` the ``grpc`` extra (imported on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clue.health.checker import NOT_OK, OK, Checker, Report
from clue.health.pinger import (
    AsyncFunctionPinger,
    FunctionPinger,
    Pinger,
    PingError,
    pinger,
)

if TYPE_CHECKING:
    from clue.health.grpc_pinger import GRPCPinger
    from clue.health.handler import app, routes
    from clue.health.http_pinger import HTTPPinger
    from clue.health.servicer import AsyncHealthServicer, HealthServicer

_LAZY = {
    "HTTPPinger": "clue.health.http_pinger",
    "GRPCPinger": "clue.health.grpc_pinger",
    "AsyncHealthServicer": "clue.health.servicer",
    "HealthServicer": "clue.health.servicer",
    "routes": "clue.health.handler",
    "app": "clue.health.handler",
}

__all__ = [
    "NOT_OK",
    "OK",
    "AsyncFunctionPinger",
    "AsyncHealthServicer",
    "Checker",
    "FunctionPinger",
    "GRPCPinger",
    "HTTPPinger",
    "HealthServicer",
    "PingError",
    "Pinger",
    "Report",
    "app",
    "pinger",
    "routes",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clue.health' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
