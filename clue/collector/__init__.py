"""A local OTLP collector and trace viewer for development.

``clue-collector`` (or ``python -m clue.collector``) receives traces, metrics
and logs over OTLP/gRPC and OTLP/HTTP, keeps a bounded amount of them in
SQLite and shows them in a browser. In production, point exporters at a real
OpenTelemetry Collector instead.
"""

from clue.collector.config import Config
from clue.collector.server import Collector

__all__ = ["Collector", "Config"]
