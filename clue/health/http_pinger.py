"""HTTPPinger: a dependency is healthy when ``GET <base>/livez`` answers 2xx."""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit

import httpx
from opentelemetry import propagate

from clue.health._loopbound import LoopBound
from clue.health.pinger import PingError


class HTTPPinger:
    """Ping an HTTP service: ``GET <base_url><path>``, healthy on 2xx only.

    Redirects are not followed (a 3xx is unhealthy) and proxy environment
    variables are ignored: a health ping goes straight to the dependency. The
    request carries the trace context (``traceparent``) of the check.
    ``timeout`` (seconds) overrides the checker's timeout for this pinger.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        path: str = "/livez",
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not name:
            raise ValueError("a pinger needs a non-empty name")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"pinger {name!r}: base_url must be an http(s) URL, got {base_url!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"pinger {name!r}: timeout must be > 0, got {timeout}")
        self._name = name
        self.url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self.timeout = timeout
        self._clients = LoopBound(
            lambda: httpx.AsyncClient(
                headers=headers,
                verify=_tls_context(),
                timeout=timeout if timeout is not None else 5.0,
                follow_redirects=False,
                trust_env=False,
            )
        )

    @property
    def name(self) -> str:
        """The dependency's name."""
        return self._name

    async def ping(self) -> None:
        """GET the URL, with the current trace context; raise `PingError` unless the answer
        is 2xx."""
        headers: dict[str, str] = {}
        propagate.inject(headers)  # the check's span: the dependency's span is its child
        response = await self._clients.get().get(self.url, headers=headers)
        if not 200 <= response.status_code < 300:
            raise PingError(f"GET {self.url} answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        """Close the connection pool of the running loop."""
        client = self._clients.pop()
        if client is not None:
            await client.aclose()

    def __repr__(self) -> str:
        return f"HTTPPinger({self._name!r}, {self.url!r})"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every pinger: loading CA certificates is slow."""
    return httpx.create_ssl_context()
