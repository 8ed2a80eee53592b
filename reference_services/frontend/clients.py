"""The gRPC stubs the web shop calls, over clue-instrumented channels."""

from __future__ import annotations

from dataclasses import dataclass

import grpc.aio

import clue.grpc
from reference_services.common.auth import Authorizer, PublishedKeys
from reference_services.common.clients import CHANNEL_OPTIONS
from reference_services.protos import hipstershop_pb2_grpc as rpc
from reference_services.protos.boutique.v1 import inventory_pb2_grpc as ipb_grpc
from reference_services.protos.boutique.v1 import notification_pb2_grpc as npb_grpc
from reference_services.protos.boutique.v1 import order_pb2_grpc as opb_grpc
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc

#: Deadline (seconds) of every outgoing call from a page.
CALL_TIMEOUT = 5.0


@dataclass(frozen=True)
class Addresses:
    """host:port of each service the shop calls."""

    productcatalog: str
    currency: str
    cart: str
    recommendation: str
    shipping: str
    checkout: str
    ad: str
    user: str = ""
    """The user service: accounts (empty: the shop has no accounts, tests of shopping)."""
    notification: str = ""
    """The notification service: the account page's history (empty: not shown)."""


class Clients:
    """One channel per downstream address, and a stub per service.

    The order service is served by the checkout process and the inventory by the
    catalog's: their stubs share those channels.
    """

    def __init__(self, addresses: Addresses) -> None:
        self.addresses = addresses
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.catalog = rpc.ProductCatalogServiceStub(self._channel(addresses.productcatalog))
        self.inventory = ipb_grpc.InventoryServiceStub(self._channel(addresses.productcatalog))
        self.currency = rpc.CurrencyServiceStub(self._channel(addresses.currency))
        self.cart = rpc.CartServiceStub(self._channel(addresses.cart))
        self.recommendation = rpc.RecommendationServiceStub(self._channel(addresses.recommendation))
        self.shipping = rpc.ShippingServiceStub(self._channel(addresses.shipping))
        self.checkout = rpc.CheckoutServiceStub(self._channel(addresses.checkout))
        self.orders = opb_grpc.OrderServiceStub(self._channel(addresses.checkout))
        self.ad = rpc.AdServiceStub(self._channel(addresses.ad))
        self.user: upb_grpc.UserServiceAsyncStub | None = None
        self.authorizer: Authorizer | None = None
        if addresses.user:
            self.user = upb_grpc.UserServiceStub(self._channel(addresses.user))
            # no rules: the shop only verifies its visitors' tokens (Authorizer.verify)
            self.authorizer = Authorizer(PublishedKeys.from_stub(self.user), {})
        self.notification: npb_grpc.NotificationServiceAsyncStub | None = None
        if addresses.notification:
            self.notification = npb_grpc.NotificationServiceStub(
                self._channel(addresses.notification)
            )

    def _channel(self, target: str) -> grpc.aio.Channel:
        if target not in self._channels:
            self._channels[target] = clue.grpc.async_insecure_channel(
                target, options=CHANNEL_OPTIONS
            )
        return self._channels[target]

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close(None)
