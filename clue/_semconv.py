"""The messaging semantic-convention names clue uses, from opentelemetry-semantic-conventions.

Every attribute and metric name of clue.messaging, clue.nats and clue.rabbitmq,
and the collector's reading of messaging spans, comes from here: the one module
that imports the package's ``_incubating`` part, its documented home for
conventions not yet stable. The two that the conventions do not have yet (a delivery
count and a settlement for every system) are made in their style, per system.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_BODY_SIZE,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_PROCESS_DURATION,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

SEND = MessagingOperationTypeValues.SEND.value
PROCESS = MessagingOperationTypeValues.PROCESS.value


def delivery_count(system: str) -> str:
    """The attribute counting deliveries of a message (1 for the first) in ``system``."""
    return f"messaging.{system}.message.delivery_count"


def settlement(system: str) -> str:
    """The attribute naming how a consumer settled a message (``ack``, ``nak``, ...)."""
    return f"messaging.{system}.message.settlement"


__all__ = [
    "ERROR_TYPE",
    "MESSAGING_CONSUMER_GROUP_NAME",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_MESSAGE_BODY_SIZE",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_PROCESS_DURATION",
    "MESSAGING_SYSTEM",
    "PROCESS",
    "SEND",
    "delivery_count",
    "settlement",
]
