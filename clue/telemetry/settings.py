"""Telemetry settings read from the standard OpenTelemetry environment variables.

Every reader validates its value and raises ``ValueError`` naming the variable,
so a bad setting stops start-up with one clear message.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)

SIGNALS = ("traces", "metrics", "logs")
EXPORTER_NAMES = {
    "traces": ("otlp", "console", "none"),
    "metrics": ("otlp", "console", "prometheus", "none"),
    "logs": ("otlp", "console", "none"),
}
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "grpc"


def disabled() -> bool:
    """``OTEL_SDK_DISABLED`` as a boolean (true/false, case-insensitive; unset is false)."""
    raw = os.environ.get("OTEL_SDK_DISABLED", "")
    value = raw.strip().lower()
    if value in ("", "false"):
        return False
    if value == "true":
        return True
    raise ValueError(f"OTEL_SDK_DISABLED={raw!r} is not a boolean: use true or false")


def _names(raw: str, signal: str, source: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    allowed = EXPORTER_NAMES[signal]
    for name in names:
        if name not in allowed:
            raise ValueError(
                f"{source}={raw!r}: {name!r} is not a {signal} exporter; "
                f"use one of {', '.join(allowed)}"
            )
    if "none" in names and len(names) > 1:
        raise ValueError(f"{source}={raw!r}: 'none' cannot be combined with other exporters")
    return tuple(n for n in names if n != "none")


def exporter_names(signal: str, exporter: str | None) -> tuple[str, ...]:
    """The exporters for ``signal``: the ``exporter`` argument, else ``OTEL_<SIGNAL>_EXPORTER``,
    else ``otlp`` when an OTLP endpoint is set, else none (an empty tuple)."""
    if exporter is not None:
        if not isinstance(exporter, str):
            raise ValueError(f"exporter must be a string such as 'otlp', got {exporter!r}")
        return _names(exporter, signal, "exporter")
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = os.environ.get(variable)
    if raw is not None and raw.strip():
        return _names(raw, signal, variable)
    endpoint_set = any(
        os.environ.get(v, "").strip()
        for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )
    return ("otlp",) if endpoint_set else ()


@dataclass(frozen=True)
class OTLPTarget:
    """Where and how one signal is sent over OTLP; ``endpoint`` None means the default."""

    protocol: str
    endpoint: str | None
    insecure: bool | None


def _protocol(signal: str) -> str:
    for variable in (
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        raw = os.environ.get(variable, "")
        if raw.strip():
            protocol = raw.strip().lower()
            if protocol not in PROTOCOLS:
                raise ValueError(
                    f"{variable}={raw!r} is not a supported OTLP protocol: "
                    f"use one of {', '.join(PROTOCOLS)}"
                )
            return protocol
    return DEFAULT_PROTOCOL


def _checked_url(variable: str, raw: str, protocol: str) -> tuple[str, bool | None]:
    url = raw.strip()
    bare = protocol == "grpc" and "://" not in url  # host:port is accepted for gRPC
    try:
        parts = urlsplit("//" + url if bare else url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"{variable}={raw!r} is not a valid URL: {exc}") from None
    if (not bare and parts.scheme not in ("http", "https")) or not parts.hostname:
        raise ValueError(
            f"{variable}={raw!r} is not a valid endpoint: use http://host:port or https://host:port"
        )
    return url, (None if bare else parts.scheme == "http")


def otlp_target(signal: str) -> OTLPTarget:
    """The protocol and endpoint for ``signal`` from ``OTEL_EXPORTER_OTLP_*`` variables.

    A per-signal endpoint is used as is; the generic one gets ``/v1/<signal>``
    appended for HTTP, as the specification says.
    """
    protocol = _protocol(signal)
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    raw = os.environ.get(specific, "")
    if raw.strip():
        endpoint, insecure = _checked_url(specific, raw, protocol)
        return OTLPTarget(protocol, endpoint, insecure)
    raw = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if raw.strip():
        endpoint, insecure = _checked_url("OTEL_EXPORTER_OTLP_ENDPOINT", raw, protocol)
        if protocol == "http/protobuf":
            endpoint = f"{endpoint.rstrip('/')}/v1/{signal}"
        return OTLPTarget(protocol, endpoint, insecure)
    return OTLPTarget(protocol, None, None)


def positive(name: str, value: float) -> float:
    """``value`` as a float when it is a positive number, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def seconds(name: str, value: float | None, variable: str, default: float) -> float:
    """``value`` if given, else ``variable`` (milliseconds) if set, else ``default``."""
    if value is not None:
        return positive(name, value)
    raw = os.environ.get(variable, "")
    if not raw.strip():
        return default
    try:
        millis = float(raw)
    except ValueError:
        millis = math.nan
    if not 0 < millis < math.inf:
        raise ValueError(f"{variable}={raw!r} must be a positive number of milliseconds")
    return millis / 1000


def resource(service_name: str | None, service_version: str | None) -> Resource:
    """The resource: defaults, then the arguments, then the environment
    (``OTEL_RESOURCE_ATTRIBUTES``, then ``OTEL_SERVICE_NAME``), later ones winning."""
    raw = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    for item in raw.split(","):
        key, sep, _ = item.partition("=")
        if item.strip() and (not sep or not key.strip()):
            raise ValueError(f"OTEL_RESOURCE_ATTRIBUTES={raw!r}: {item.strip()!r} is not key=value")
    attributes: dict[str, str] = {}
    for name, value in (("service_name", service_name), ("service_version", service_version)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if service_name:
        attributes[SERVICE_NAME] = service_name
    if service_version:
        attributes[SERVICE_VERSION] = service_version
    return Resource.create(attributes).merge(OTELResourceDetector().detect())


DEFAULT_SHUTDOWN_TIMEOUT = 2.0


def shutdown_timeout(value: float | None) -> float:
    """The bound of one whole shutdown in seconds: ``value`` if given, else
    ``CLUE_SHUTDOWN_TIMEOUT`` (seconds) if set, else 2."""
    if value is not None:
        return positive("shutdown_timeout", value)
    raw = os.environ.get("CLUE_SHUTDOWN_TIMEOUT", "")
    if not raw.strip():
        return DEFAULT_SHUTDOWN_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ValueError(f"CLUE_SHUTDOWN_TIMEOUT={raw!r} must be a positive number of seconds")
    return seconds
