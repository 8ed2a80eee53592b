"""Reading and validating a service's configuration from the environment.

Each helper raises :class:`ConfigError` naming the variable; the service's
entry point turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping


class ConfigError(Exception):
    """A missing or bad environment variable."""


def _raw(name: str, default: str | None, env: Mapping[str, str] | None) -> str:
    value = (os.environ if env is None else env).get(name)
    if value is None or value.strip() == "":
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    return value.strip()


def env_str(name: str, default: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The variable's value, or ``default``; missing without default is an error."""
    return _raw(name, default, env)


def env_int(
    name: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """The variable as an integer within ``[minimum, maximum]``."""
    raw = _raw(name, None if default is None else str(default), env)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum {maximum}")
    return value


def env_float(
    name: str,
    default: float | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """The variable as a finite number within ``[minimum, maximum]`` (e.g. seconds)."""
    raw = _raw(name, None if default is None else str(default), env)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw[:40]!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value:g} is below the minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value:g} is above the maximum {maximum:g}")
    return value


def env_port(name: str, default: int | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """The variable as a TCP port (1..65535)."""
    return env_int(name, default, minimum=1, maximum=65535, env=env)


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def env_host(name: str, default: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The variable as an address to listen on: an IP address or a host name."""
    raw = _raw(name, default, env)
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        if _HOST_NAME.fullmatch(raw):
            return raw
    raise ConfigError(f"{name}={raw[:40]!r} is not an IP address or host name")


def env_addr(name: str, default: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The variable as a ``host:port`` address, validated."""
    raw = _raw(name, default, env)
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a host:port address")
    return raw
