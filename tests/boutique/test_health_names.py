"""grpc.health.v1 of each boutique service answers for "" and its services' full names."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import notification_pb2 as npb
from reference_services.protos.boutique.v1 import user_pb2 as upb
from tests.boutique.conftest import Boutique

Status = health_pb2.HealthCheckResponse
SERVICE_NAMES = {
    "productcatalog": "ProductCatalogService",
    "currency": "CurrencyService",
    "cart": "CartService",
    "shipping": "ShippingService",
    "payment": "PaymentService",
    "email": "EmailService",
    "ad": "AdService",
    "recommendation": "RecommendationService",
    "checkout": "CheckoutService",
}
FULL_NAMES = {
    name: pb.DESCRIPTOR.services_by_name[short].full_name for name, short in SERVICE_NAMES.items()
} | {
    "notification": npb.DESCRIPTOR.services_by_name["NotificationService"].full_name,
    "user": upb.DESCRIPTOR.services_by_name["UserService"].full_name,
}


async def check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(reply.status)


async def test_each_service_answers_for_its_full_name_and_no_other(boutique: Boutique) -> None:
    assert set(FULL_NAMES) == set(boutique.services)
    for name, service in boutique.services.items():
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert await check(stub, "") == Status.SERVING, name
            assert await check(stub, FULL_NAMES[name]) == Status.SERVING, name
            others = [full for other, full in FULL_NAMES.items() if other != name]
            for unknown in [*others, "hipstershop.NoSuchService", "CartService"]:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await check(stub, unknown)
                assert caught.value.code() is grpc.StatusCode.NOT_FOUND, (name, unknown)
                assert caught.value.details() == f"unknown service {unknown!r}"
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="hipstershop.NoSuch"))
            assert (await watch.read()).status == Status.SERVICE_UNKNOWN
            watch.cancel()


async def test_full_name_turns_not_serving_when_the_service_stops(boutique: Boutique) -> None:
    cart = boutique["cart"]
    async with grpc.aio.insecure_channel(cart.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=FULL_NAMES["cart"]))
        assert (await watch.read()).status == Status.SERVING
        assert cart.health is not None
        cart.health.enter_graceful_shutdown()
        assert (await watch.read()).status == Status.NOT_SERVING
        assert await check(stub, FULL_NAMES["cart"]) == Status.NOT_SERVING
        watch.cancel()
