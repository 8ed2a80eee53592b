"""Messages as observable as requests: trace context in headers, consume and send scopes.

Broker-neutral; ``clue.nats`` and ``clue.rabbitmq`` build on it. See docs/messaging.md.

>>> from clue import messaging
>>> headers = messaging.inject({"event-type": "OrderPlaced"})   # trace context, request id
>>> consumer = messaging.Consumer("nats")
>>> with consumer.scope("orders.placed", headers, message_id="e-1", attempt=1):
...     pass                                                    # handle the message here
"""

from clue.messaging._consume import Consumer, ConsumeScope, handler
from clue.messaging._headers import MAX_VALUE, extract, header, inject, request_id
from clue.messaging._produce import Producer, SendScope

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
