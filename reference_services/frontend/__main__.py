"""Run the web shop: ``python -m reference_services.frontend``.

Environment: ``PORT`` (HTTP, default 8080), ``HOST`` (the address to listen
on, default 127.0.0.1; the deploy files set 0.0.0.0),
``ADMIN_PORT`` (admin routes on 127.0.0.1, default 8081), and the
``*_SERVICE_ADDR`` of every service the shop calls (``USER_SERVICE_ADDR``
too: accounts); ``NOTIFICATION_SERVICE_ADDR`` is optional (without it the
account page shows no notification history); ``VIEWER_URL`` is optional too
(the trace viewer, ``http://host:port``: each step of an order's timeline
links to its trace there). A missing or bad variable stops the start with
one line naming it (exit code 2).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from urllib.parse import urlsplit

import uvicorn

import clue
from clue import health, log
from clue.admin import AdminServer
from reference_services.common.config import (
    ConfigError,
    env_addr,
    env_host,
    env_port,
    env_str,
)
from reference_services.common.runtime import LOOPBACK, SERVICE_LOG_WRITE_DELAY, VERSION
from reference_services.frontend.app import create_app
from reference_services.frontend.clients import Addresses, Clients

SERVICE = "frontend"
ADDRESS_VARIABLES = {
    "productcatalog": "PRODUCT_CATALOG_SERVICE_ADDR",
    "currency": "CURRENCY_SERVICE_ADDR",
    "cart": "CART_SERVICE_ADDR",
    "recommendation": "RECOMMENDATION_SERVICE_ADDR",
    "shipping": "SHIPPING_SERVICE_ADDR",
    "checkout": "CHECKOUT_SERVICE_ADDR",
    "ad": "AD_SERVICE_ADDR",
    "user": "USER_SERVICE_ADDR",
}


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    admin_port: int
    addresses: Addresses
    viewer_url: str = ""


def load_config(env: Mapping[str, str]) -> Config:
    """The shop's configuration, validated (:class:`ConfigError` names the variable)."""
    addresses = {name: env_addr(var, env=env) for name, var in ADDRESS_VARIABLES.items()}
    if env.get("NOTIFICATION_SERVICE_ADDR"):  # optional: the account page's history
        addresses["notification"] = env_addr("NOTIFICATION_SERVICE_ADDR", env=env)
    return Config(
        host=env_host("HOST", LOOPBACK, env=env),
        port=env_port("PORT", 8080, env=env),
        admin_port=env_port("ADMIN_PORT", 8081, env=env),
        addresses=Addresses(**addresses),
        viewer_url=viewer_url(env),
    )


def viewer_url(env: Mapping[str, str]) -> str:
    """``VIEWER_URL``, an http(s) URL without query or fragment; empty when unset."""
    raw = env_str("VIEWER_URL", "", env=env)
    if not raw:
        return ""
    if not _is_http_url(raw):
        raise ConfigError(f"VIEWER_URL={raw[:40]!r} is not an http(s) URL like http://host:port")
    return raw.rstrip("/")


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )


def stop_on_signals(server: uvicorn.Server) -> None:
    """SIGTERM and SIGINT stop ``server`` gracefully.

    uvicorn catches the signal while it serves and raises it again once it has
    stopped; with the default handler that kills the process (exit -15) before
    telemetry is flushed. This handler, restored by uvicorn before it re-raises,
    turns the second delivery into a no-op, so ``main`` returns and exits 0.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


async def serve(config: Config) -> None:
    """Serve the shop and its admin port until SIGTERM or SIGINT."""
    clients = Clients(config.addresses)
    checker = health.Checker(
        *(health.GRPCPinger(name, getattr(config.addresses, name)) for name in ADDRESS_VARIABLES)
    )
    admin = AdminServer(checker=checker, version=VERSION, port=config.admin_port)
    app = create_app(clients, config.viewer_url)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
    )
    stop_on_signals(server)
    await admin.astart()
    try:
        await server.serve()
    finally:
        await admin.astop()
        await clients.close()
    log.print(f"{SERVICE} stopped")


def main() -> int:
    """Entry point: 2 on bad configuration, 0 after a clean stop."""
    try:
        config = load_config(os.environ)
    except ConfigError as error:
        print(f"{SERVICE}: {error}", file=sys.stderr)
        return 2
    log.configure(write_delay=SERVICE_LOG_WRITE_DELAY)
    clue.configure(SERVICE, VERSION, prometheus=True)
    try:
        asyncio.run(serve(config))
    finally:
        clue.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
