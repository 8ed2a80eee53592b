"""Two replicas of the user service, each its own gRPC server, servicer and connection,
on one real PostgreSQL database: the login lockout and the registration limit are
counted once for both, atomically, and still expire."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from reference_services.common.database import Postgres
from reference_services.common.runtime import Wiring
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.user.keys import KeyRing
from reference_services.user.lockout import Lockout
from reference_services.user.ratelimit import RateLimit
from reference_services.user.service import Config, Users
from reference_services.user.store import UserStore
from tests.boutique.conftest import rpc_error, serving, stub_for, unique
from tests.boutique.test_user import PASSWORD, Clock


@dataclass
class Replicas:
    stubs: list[upb_grpc.UserServiceAsyncStub]
    stores: list[UserStore]
    clock: Clock


@pytest.fixture
async def replicas(postgres_url: str, tmp_path: Path) -> AsyncIterator[Replicas]:
    """Two user services on one database (their own tables), trusting loopback as a proxy
    so that each call names its client; three registrations an hour per client."""
    prefix = unique("r") + "_"
    stores = [UserStore(Postgres(postgres_url), prefix=prefix) for _ in range(2)]
    assert [await store.migrate() for store in stores] == [0, 2]
    clock = Clock()
    keys = KeyRing.load(tmp_path / "keys")
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    config = Config("unused://", tmp_path / "keys", trusted_proxies=proxies)
    async with AsyncExitStack() as stack:
        stubs: list[upb_grpc.UserServiceAsyncStub] = []
        for store in stores:
            users = Users(
                store,
                keys,
                config,
                lockout=Lockout(store, clock=clock),
                registrations=RateLimit(store, 3, clock=clock),
            )
            wiring = Wiring(servicers=[(upb_grpc.add_UserServiceServicer_to_server, users)])
            service = await stack.enter_async_context(serving("user", wiring))
            stubs.append(
                await stack.enter_async_context(stub_for(service, upb_grpc.UserServiceStub))
            )
        yield Replicas(stubs, stores, clock)
    await stores[0].drop()
    for store in stores:
        await store.close()


def client(address: str) -> tuple[tuple[str, str]]:
    return (("x-forwarded-for", address),)


async def register(
    stub: upb_grpc.UserServiceAsyncStub, email: str, address: str = "198.51.100.1"
) -> upb.User:
    request = upb.RegisterRequest(email=email, name="Ana", password=PASSWORD)
    return await stub.Register(request, metadata=client(address))


async def login(
    stub: upb_grpc.UserServiceAsyncStub, email: str, address: str, password: str = PASSWORD
) -> upb.Token:
    request = upb.AuthenticateRequest(email=email, password=password)
    return await stub.Authenticate(request, metadata=client(address))


async def test_failures_on_both_replicas_lock_the_email_out_on_both(replicas: Replicas) -> None:
    a, b = replicas.stubs
    await register(a, "ana@example.com")
    for i in range(5):  # from five addresses: the e-mail's count, not a client's
        failed = await rpc_error(login((a, b)[i % 2], "ana@example.com", f"203.0.113.{i}", "x"))
        assert failed.code() == grpc.StatusCode.UNAUTHENTICATED
    for stub in (a, b):
        locked = await rpc_error(login(stub, "ana@example.com", "192.0.2.1"))
        assert (locked.code(), locked.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many failed logins: try again in 60 s",
        )
    replicas.clock.now += 60
    assert (await login(b, "ana@example.com", "192.0.2.1")).token
    assert (await login(a, "ana@example.com", "192.0.2.1")).token


async def test_failures_on_both_replicas_lock_the_client_out_on_both(replicas: Replicas) -> None:
    a, b = replicas.stubs
    await register(a, "ana@example.com")
    for i in range(5):  # five e-mails from one address
        await rpc_error(login((a, b)[i % 2], f"guess{i}@example.com", "203.0.113.9", "x"))
    for stub in (a, b):
        locked = await rpc_error(login(stub, "ana@example.com", "203.0.113.9"))
        assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await login(b, "ana@example.com", "192.0.2.1")).token  # another client
    replicas.clock.now += 60
    assert (await login(a, "ana@example.com", "203.0.113.9")).token


async def test_concurrent_guesses_on_both_replicas_are_each_counted(replicas: Replicas) -> None:
    """Each replica checks one guess of an e-mail at a time, so at most one guess per other
    replica is checked past the fifth failure; none is lost to a race."""
    a, b = replicas.stubs
    await register(a, "ana@example.com")
    guesses = [
        login((a, b)[i % 2], "ana@example.com", f"203.0.113.{i}", f"guess-{i:04d}")
        for i in range(20)
    ]
    codes = [error.code() for error in await asyncio.gather(*map(rpc_error, guesses))]
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) in (5, 6)
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 20 - codes.count(
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_counting_on_two_connections_at_once_loses_nothing(replicas: Replicas) -> None:
    """Ten failures at once, half on each replica's connection: every fifth locks (the
    fifth and the tenth), as if they came one by one; three takes of six are granted."""
    lockouts = [Lockout(store, clock=replicas.clock) for store in replicas.stores]
    locked = await asyncio.gather(*(lockouts[i % 2].fail("email:x") for i in range(10)))
    assert locked.count(True) == 2
    limits = [RateLimit(store, 3, clock=replicas.clock) for store in replicas.stores]
    waits = await asyncio.gather(*(limits[i % 2].take("203.0.113.9") for i in range(6)))
    assert sorted(waits) == [0, 0, 0, 1200, 1200, 1200]


async def test_registrations_on_both_replicas_share_one_limit(replicas: Replicas) -> None:
    a, b = replicas.stubs
    await register(a, "ana@example.com")
    await register(b, "bea@example.com")
    await register(a, "cid@example.com")
    for stub in (b, a):
        refused = await rpc_error(register(stub, "dan@example.com"))
        assert (refused.code(), refused.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many registrations from this address: try again in 1200 s",
        )
    await register(b, "dan@example.com", "192.0.2.1")  # another client has its own
    replicas.clock.now += 1200  # one back
    await register(b, "eve@example.com")
    assert (await rpc_error(register(a, "fay@example.com"))).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
