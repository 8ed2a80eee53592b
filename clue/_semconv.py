"""The messaging and RPC message semantic-convention names clue uses, from
opentelemetry-semantic-conventions.

Every attribute and metric name of clue.messaging, clue.nats and clue.rabbitmq,
the collector's reading of messaging spans, and the message events of clue.grpc's
streaming calls come from here: the one module
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
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_MESSAGE_ID,
    RPC_MESSAGE_TYPE,
    RPC_MESSAGE_UNCOMPRESSED_SIZE,
    RpcMessageTypeValues,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_PROCESS_DURATION,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

SEND = MessagingOperationTypeValues.SEND.value
PROCESS = MessagingOperationTypeValues.PROCESS.value
RPC_MESSAGE = "rpc.message"  # the event's name (the conventions' RPC spans page)
SENT = RpcMessageTypeValues.SENT.value
RECEIVED = RpcMessageTypeValues.RECEIVED.value
# the messages of one streaming call, on its span: not in the conventions, made in the
# style of their system-specific attributes
RPC_GRPC_SENT_COUNT = "rpc.grpc.message.sent_count"
RPC_GRPC_RECEIVED_COUNT = "rpc.grpc.message.received_count"


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
    "RECEIVED",
    "RPC_GRPC_RECEIVED_COUNT",
    "RPC_GRPC_SENT_COUNT",
    "RPC_MESSAGE",
    "RPC_MESSAGE_ID",
    "RPC_MESSAGE_TYPE",
    "RPC_MESSAGE_UNCOMPRESSED_SIZE",
    "SEND",
    "SENT",
    "delivery_count",
    "settlement",
]
