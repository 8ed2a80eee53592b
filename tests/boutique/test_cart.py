"""CartService over gRPC: behaviour, every bad input, store outages, restarts."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from reference_services.cart import service as cart
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import rpc_error, serving, stub_for, unique


def add(user: str, product_id: str, quantity: int) -> pb.AddItemRequest:
    return pb.AddItemRequest(
        user_id=user, item=pb.CartItem(product_id=product_id, quantity=quantity)
    )


def lines(reply: pb.Cart) -> list[tuple[str, int]]:
    return [(i.product_id, i.quantity) for i in reply.items]


async def test_cart_over_grpc_and_a_restart(tmp_path: Path) -> None:
    config = cart.Config(f"sqlite:///{tmp_path / 'cart.db'}")
    async with (
        serving("cart", await cart.build(config)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
    ):
        assert lines(await stub.GetCart(pb.GetCartRequest(user_id="nobody"))) == []
        await stub.AddItem(add("u1", "OLJCESPC7Z", 1))
        await stub.AddItem(add("u1", "OLJCESPC7Z", 1000 - 1))
        await stub.AddItem(add("u1", "6E92ZMYYFZ", 10))
        reply = await stub.GetCart(pb.GetCartRequest(user_id="u1"))
        assert reply.user_id == "u1"
        assert lines(reply) == [("OLJCESPC7Z", 1000), ("6E92ZMYYFZ", 10)]

        bad = {
            "item.quantity 0 is outside 1..1000": add("u1", "OLJCESPC7Z", 0),
            "item.quantity 1001 is outside 1..1000": add("u1", "OLJCESPC7Z", 1001),
            "item.quantity -3 is outside 1..1000": add("u1", "OLJCESPC7Z", -3),
            "item.product_id must not be empty": add("u1", "", 1),
            "user_id must not be empty": add("", "OLJCESPC7Z", 1),
        }
        for message, request in bad.items():
            error = await rpc_error(stub.AddItem(request))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == message
        error = await rpc_error(stub.AddItem(add("u1", "OLJCESPC7Z", 1)))
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        error = await rpc_error(stub.GetCart(pb.GetCartRequest(user_id=" ")))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        error = await rpc_error(stub.EmptyCart(pb.EmptyCartRequest()))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert lines(await stub.GetCart(pb.GetCartRequest(user_id="u1"))) == [
            ("OLJCESPC7Z", 1000),
            ("6E92ZMYYFZ", 10),
        ]

        await stub.AddItem(add("u2", "9SIQT8TOJO", 2))
        await stub.EmptyCart(pb.EmptyCartRequest(user_id="u2"))
        assert lines(await stub.GetCart(pb.GetCartRequest(user_id="u2"))) == []

    # a new service on the same file: nothing lost
    async with (
        serving("cart", await cart.build(config)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
    ):
        reply = await stub.GetCart(pb.GetCartRequest(user_id="u1"))
        assert lines(reply) == [("OLJCESPC7Z", 1000), ("6E92ZMYYFZ", 10)]


async def test_store_outage_and_injected_store_failures(tmp_path: Path) -> None:
    down = cart.Config("postgresql://postgres@127.0.0.1:1/test")
    async with (
        serving("cart", await cart.build(down)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
        httpx.AsyncClient(base_url=service.admin.url) as admin,
    ):
        error = await rpc_error(stub.GetCart(pb.GetCartRequest(user_id="u1")))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "postgresql database postgresql://postgres@127.0.0.1:1/test is unreachable" in (
            error.details()
        )
        health = await admin.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == {"cart-store": "NOT OK"}

    up = cart.Config(f"sqlite:///{tmp_path / 'cart.db'}")
    async with (
        serving("cart", await cart.build(up)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
        httpx.AsyncClient(base_url=service.admin.url) as admin,
    ):
        assert (await admin.get("/healthz")).json()["status"] == {"cart-store": "OK"}
        reply = await admin.post("/faults", params={"store_failure_rate": "1"})
        assert reply.status_code == 200
        error = await rpc_error(stub.AddItem(add("u1", "OLJCESPC7Z", 1)))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert error.details() == "cart store unavailable (injected fault store_failure_rate)"
        reply = await admin.post("/faults", params={"store_failure_rate": "2"})
        assert reply.status_code == 400 and "between 0 and 1" in reply.json()["error"]
        await admin.post("/faults", params={"store_failure_rate": "0"})
        await stub.AddItem(add("u1", "OLJCESPC7Z", 1))
        assert lines(await stub.GetCart(pb.GetCartRequest(user_id="u1"))) == [("OLJCESPC7Z", 1)]


@pytest.mark.parametrize("server", ["postgres_url", "redis_url"])
async def test_cart_service_on_postgresql_and_redis_survives_a_restart(
    server: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(server)
    user = unique("shopper")  # the default table / key prefix is shared: a user of our own
    config = cart.Config(url)
    async with (
        serving("cart", await cart.build(config)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
    ):
        await stub.AddItem(add(user, "1YMWWN1N4O", 1))
        await stub.AddItem(add(user, "1YMWWN1N4O", 2))
        await stub.AddItem(add(user, "0PUK6V6EV0", 4))
    async with (
        serving("cart", await cart.build(config)) as service,
        stub_for(service, pb_grpc.CartServiceStub) as stub,
        httpx.AsyncClient(base_url=service.admin.url) as admin,
    ):
        reply = await stub.GetCart(pb.GetCartRequest(user_id=user))
        assert lines(reply) == [("1YMWWN1N4O", 3), ("0PUK6V6EV0", 4)]
        assert (await admin.get("/healthz")).json()["status"] == {"cart-store": "OK"}
        await stub.EmptyCart(pb.EmptyCartRequest(user_id=user))
        assert lines(await stub.GetCart(pb.GetCartRequest(user_id=user))) == []
