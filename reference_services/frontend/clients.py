"""The gRPC stubs the web shop calls, over clue-instrumented channels."""

from __future__ import annotations

from dataclasses import dataclass

import grpc.aio

import clue.grpc
from reference_services.common.clients import CHANNEL_OPTIONS
from reference_services.protos import hipstershop_pb2_grpc as rpc

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


class Clients:
    """One channel and stub per downstream service."""

    def __init__(self, addresses: Addresses) -> None:
        self.addresses = addresses
        self._channels: list[grpc.aio.Channel] = []
        self.catalog = rpc.ProductCatalogServiceStub(self._channel(addresses.productcatalog))
        self.currency = rpc.CurrencyServiceStub(self._channel(addresses.currency))
        self.cart = rpc.CartServiceStub(self._channel(addresses.cart))
        self.recommendation = rpc.RecommendationServiceStub(self._channel(addresses.recommendation))
        self.shipping = rpc.ShippingServiceStub(self._channel(addresses.shipping))
        self.checkout = rpc.CheckoutServiceStub(self._channel(addresses.checkout))
        self.ad = rpc.AdServiceStub(self._channel(addresses.ad))

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = clue.grpc.async_insecure_channel(target, options=CHANNEL_OPTIONS)
        self._channels.append(channel)
        return channel

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            await channel.close(None)
