"""Messages as observable as requests: trace context in headers, consume and send scopes.

Broker-neutral; ``clue.nats`` and ``clue.rabbitmq`` build on it. See docs/messaging.md.

Examples:
    >>> from clue import messaging
    >>> headers = messaging.inject({"event-type": "OrderPlaced"})   # trace context, request id
    >>> consumer = messaging.Consumer("nats")
    >>> with consumer.scope("orders.placed", headers, message_id="e-1", attempt=1):
    ...     pass                                                    # handle the message here
"""

from clue.messaging._consume import Consumer, ConsumeScope, handler
from clue.messaging._headers import MAX_VALUE, extract, header, inject, request_id
from clue.messaging._produce import Producer, SendScope

# isort: split
# clue's internal API: what clue.nats and clue.rabbitmq use (the rule is in clue/__init__.py).
# Re-exported as "x as x" and left out of __all__: not for programs, may change any time.
from clue.messaging._headers import lowered as lowered
from clue.messaging._headers import text_value as text_value

__all__ = [
    "MAX_VALUE",
    "ConsumeScope",
    "Consumer",
    "Producer",
    "SendScope",
    "extract",
    "handler",
    "header",
    "inject",
    "request_id",
]
