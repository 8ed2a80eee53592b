"""Authorization of user-scoped RPCs over real gRPC: every refused token by its code and
reason, the caller in the log context, and another service verifying with the keys the
user service publishes (cached, fetched again on an unknown key id, at a bounded rate)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clue.testing import CapturedLogs
from reference_services.common.auth import (
    Authorizer,
    PublishedKeys,
    Refused,
    Rule,
    authorizer_from_env,
    bearer,
    caller,
    public_keys,
)
from reference_services.common.clients import Clients
from reference_services.common.config import ConfigError
from reference_services.common.database import SQLite
from reference_services.common.runtime import GrpcService, Wiring
from reference_services.currency import service as currency
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.user import keys as keyfiles
from reference_services.user.keys import KeyRing
from reference_services.user.service import RULES, Config, Users
from reference_services.user.store import UserStore
from tests.boutique.conftest import Telemetry, rpc_error, serving, stub_for
from tests.conftest import free_port

PASSWORD = "correct horse battery"
CONVERT = "/hipstershop.CurrencyService/Convert"
ADMIN_ONLY = {CONVERT: Rule("orders:read", role="admin")}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Users_:
    """The user service of a test, restartable on its port with the keys of its directory."""

    data: Path
    port: int
    service: GrpcService | None = None

    async def start(self) -> GrpcService:
        store = UserStore(SQLite(self.data / "user.db"))
        await store.migrate()
        keys = KeyRing.load(self.data / "keys")
        config = Config("unused://", self.data / "keys", frozenset({"admin@example.com"}))
        wiring = Wiring(
            servicers=[(upb_grpc.add_UserServiceServicer_to_server, Users(store, keys, config))],
            closers=[store.close],
            authorizer=Authorizer(keys, RULES),
        )
        self.service = GrpcService("user", wiring, host="127.0.0.1", port=self.port, grace=1.0)
        await self.service.start()
        return self.service

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    @property
    def keys(self) -> KeyRing:
        return KeyRing.load(self.data / "keys")

    async def token(self, email: str) -> str:
        """Register ``email`` if needed and log in; the access token."""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = upb_grpc.UserServiceStub(channel)
            try:
                await stub.Register(upb.RegisterRequest(email=email, name="N", password=PASSWORD))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
            reply = await stub.Authenticate(upb.AuthenticateRequest(email=email, password=PASSWORD))
            return reply.token


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[Users_]:
    made = Users_(tmp_path, free_port())
    await made.start()
    yield made
    await made.stop()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "u1",
        "email": "ana@example.com",
        "scope": "orders:read orders:write profile",
        "role": "customer",
        "iss": "boutique-user",
        "aud": "boutique",
        "iat": now,
        "exp": now + 900,
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def forged(kid: str, **changes: Any) -> str:
    """A token signed by a key the user service never had, claiming id ``kid``."""
    key = Ed25519PrivateKey.generate()
    return jwt.encode(claims(**changes), key, algorithm="EdDSA", headers={"kid": kid})


async def get_user(service: GrpcService, metadata: Any = None) -> grpc.aio.AioRpcError:
    async with stub_for(service, upb_grpc.UserServiceStub) as stub:
        return await rpc_error(stub.GetUser(upb.GetUserRequest(), metadata=metadata))


async def test_every_bad_token_is_refused_with_its_code_and_reason(
    users: Users_, otel: Telemetry, clue_logs: CapturedLogs
) -> None:
    ring = users.keys
    kid = ring.signer.kid
    cases = [
        (None, "UNAUTHENTICATED", "authorization metadata is required", "missing_token"),
        ("Basic YWJj", "UNAUTHENTICATED", "authorization must be 'Bearer <token>'", "malformed"),
        ("Bearer", "UNAUTHENTICATED", "authorization must be 'Bearer <token>'", "malformed"),
        ("Bearer not.a.jwt", "UNAUTHENTICATED", "the token is not a JWT", "malformed"),
        (
            "Bearer " + "x" * 5000,
            "UNAUTHENTICATED",
            "the token is longer than 4096 characters",
            "malformed",
        ),
        (
            "Bearer " + ring.sign(claims(exp=int(time.time()) - 60)),
            "UNAUTHENTICATED",
            "the token has expired",
            "expired",
        ),
        (
            "Bearer " + forged(kid),
            "UNAUTHENTICATED",
            "the token's signature is invalid",
            "bad_signature",
        ),
        (
            "Bearer " + ring.sign(claims(aud="another-shop")),
            "UNAUTHENTICATED",
            "the token is not meant for the boutique",
            "wrong_audience",
        ),
        (
            "Bearer " + ring.sign(claims(iss="someone-else")),
            "UNAUTHENTICATED",
            "the token was not issued by the boutique",
            "wrong_issuer",
        ),
        (
            "Bearer " + forged("k-nobody-knows"),
            "UNAUTHENTICATED",
            "the token is signed with an unknown key",
            "unknown_kid",
        ),
        (
            # a shared-secret token naming a real key id: the algorithm is not negotiable
            "Bearer " + jwt.encode(claims(), "a" * 32, algorithm="HS256", headers={"kid": kid}),
            "UNAUTHENTICATED",
            "the token must be EdDSA with a kid",
            "malformed",
        ),
        (
            "Bearer " + ring.sign(claims(scope=None)),
            "UNAUTHENTICATED",
            'the token is invalid: Token is missing the "scope" claim',
            "invalid",
        ),
        (
            "Bearer " + ring.sign(claims(scope="orders:read orders:write")),
            "PERMISSION_DENIED",
            "the token lacks the scope 'profile'",
            "missing_scope",
        ),
    ]
    assert users.service is not None
    for authorization, code, message, _ in cases:
        metadata = None if authorization is None else (("authorization", authorization),)
        error = await get_user(users.service, metadata)
        assert (error.code().name, error.details()) == (code, message)
    reasons: dict[str, int] = {}
    for *_, reason in cases:
        reasons[reason] = reasons.get(reason, 0) + 1
    counted = {p[0]["reason"]: p[1].value for p in otel.points("boutique.auth.failures")}
    assert counted == reasons
    refused = clue_logs.where(msg="call refused")
    assert [e["reason"] for e in refused] == [c[3] for c in cases]
    assert {e["method"] for e in refused} == {"/boutique.v1.UserService/GetUser"}
    written = json.dumps(list(clue_logs), default=str)
    assert all(c[0] is None or c[0].split()[-1] not in written for c in cases[3:])
    # each refused call is a span of the server, with its code
    spans = [s for s in otel.finished() if s.name == "boutique.v1.UserService/GetUser"]
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert len(server) == len(cases)
    assert {(s.attributes or {})["rpc.grpc.status_code"] for s in server} == {7, 16}


async def test_the_callers_user_id_is_in_the_log_context_and_on_the_span_never_the_token(
    users: Users_, otel: Telemetry, clue_logs: CapturedLogs
) -> None:
    token = await users.token("ana@example.com")
    assert users.service is not None
    async with stub_for(users.service, upb_grpc.UserServiceStub) as stub:
        me = await stub.GetUser(upb.GetUserRequest(), metadata=bearer(token))
        await stub.DeleteUser(upb.DeleteUserRequest(), metadata=bearer(token))
    (deleted,) = clue_logs.where(msg="user deleted")
    assert deleted["user_id"] == me.id == deleted["deleted_user_id"]
    assert token not in json.dumps(list(clue_logs), default=str)
    served = [s for s in otel.finished() if s.kind.name == "SERVER"]
    callers = {s.name: (s.attributes or {}).get("app.user.id") for s in served}
    assert callers == {
        "boutique.v1.UserService/Register": me.id,
        "boutique.v1.UserService/Authenticate": me.id,
        "boutique.v1.UserService/GetUser": me.id,
        "boutique.v1.UserService/DeleteUser": me.id,
    }
    for span in served:
        assert token not in json.dumps(dict(span.attributes or {}), default=str)


async def serving_currency(authorizer: Authorizer) -> Any:
    wiring = dataclasses.replace(await currency.build(), authorizer=authorizer)
    return serving("currency", wiring)


def convert_request() -> pb.CurrencyConversionRequest:
    request = pb.CurrencyConversionRequest(to_code="USD")
    getattr(request, "from").CopyFrom(pb.Money(currency_code="EUR", units=10))  # a keyword
    return request


async def convert(service: GrpcService, token: str | None) -> Any:
    async with stub_for(service, pb_grpc.CurrencyServiceStub) as stub:
        metadata = None if token is None else bearer(token)
        return await stub.Convert(convert_request(), metadata=metadata)


async def test_another_service_verifies_with_the_published_keys(users: Users_) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{users.port}")
    keys = PublishedKeys.from_stub(upb_grpc.UserServiceStub(channel))
    try:
        async with await serving_currency(Authorizer(keys, ADMIN_ONLY)) as service:
            admin = await users.token("admin@example.com")
            customer = await users.token("bob@example.com")
            assert (await convert(service, admin)).currency_code == "USD"
            denied = await rpc_error(convert(service, customer))
            assert (denied.code(), denied.details()) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "only the role 'admin' may call this",
            )
            missing = await rpc_error(convert(service, None))
            assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
            # the RPCs without a rule need no token
            async with stub_for(service, pb_grpc.CurrencyServiceStub) as stub:
                supported = await stub.GetSupportedCurrencies(pb.Empty())
                assert "USD" in supported.currency_codes
            assert keys.fetches == 1  # fetched once, then cached
    finally:
        await channel.close()


async def test_a_new_key_is_fetched_when_a_token_names_it(users: Users_) -> None:
    clock = Clock()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{users.port}")
    keys = PublishedKeys.from_stub(upb_grpc.UserServiceStub(channel), clock=clock)
    try:
        async with await serving_currency(Authorizer(keys, ADMIN_ONLY)) as service:
            before = await users.token("admin@example.com")
            await convert(service, before)
            assert keys.fetches == 1
            # rotation: a key added to the directory signs from the next start on
            await users.stop()
            keyfiles.generate(users.data / "keys", "zz-rotated")
            await users.start()
            after = await users.token("admin@example.com")
            assert jwt.get_unverified_header(after)["kid"] == "zz-rotated"
            clock.now += 10
            await convert(service, after)  # unknown kid: fetched again
            await convert(service, before)  # the older key still verifies
            assert keys.fetches == 2
            # forged key ids fetch at most once per interval
            for i in range(20):
                error = await rpc_error(convert(service, forged(f"k{i}", role="admin")))
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert keys.fetches == 2
            clock.now += 5
            await rpc_error(convert(service, forged("k-later", role="admin")))
            assert keys.fetches == 3
            # a cache older than max_age is fetched again on the next call
            clock.now += 300
            await convert(service, after)
            assert keys.fetches == 4
    finally:
        await channel.close()


async def test_without_the_user_service_no_token_can_be_checked(tmp_path: Path) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")
    keys = PublishedKeys.from_stub(upb_grpc.UserServiceStub(channel))
    token = KeyRing.load(tmp_path / "keys").sign(claims(role="admin"))
    try:
        async with await serving_currency(Authorizer(keys, ADMIN_ONLY)) as service:
            error = await rpc_error(convert(service, token))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert (error.details() or "").startswith("signing keys: ")
    finally:
        await channel.close()


async def test_a_rule_naming_no_rpc_stops_the_start(tmp_path: Path) -> None:
    keys = KeyRing.load(tmp_path / "keys")
    rules = {"/hipstershop.CurrencyService/Konvert": Rule("orders:read")}
    wiring = dataclasses.replace(await currency.build(), authorizer=Authorizer(keys, rules))
    service = GrpcService("currency", wiring, host="127.0.0.1")
    with pytest.raises(ValueError, match="authorization rules match no RPC"):
        await service.start()
    await service.stop()


def test_the_caller_is_known_only_inside_a_guarded_rpc() -> None:
    with pytest.raises(RuntimeError, match="only known inside an RPC an Authorizer guards"):
        caller()


async def test_services_find_the_user_service_from_the_environment(
    users: Users_, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = Clients()
    monkeypatch.setenv("USER_SERVICE_ADDR", f"127.0.0.1:{users.port}")
    authorizer = authorizer_from_env(ADMIN_ONLY, clients)
    try:
        wiring = dataclasses.replace(await currency.build(), authorizer=authorizer)
        async with serving("currency", wiring) as service:
            token = await users.token("admin@example.com")
            assert (await convert(service, token)).currency_code == "USD"
        assert [p.name for p in clients.pingers] == ["user"]  # its health depends on it
    finally:
        await clients.close()
    monkeypatch.delenv("USER_SERVICE_ADDR")
    with pytest.raises(ConfigError, match="USER_SERVICE_ADDR is not set"):
        authorizer_from_env(ADMIN_ONLY, Clients())


async def test_a_token_is_verified_once_then_remembered_until_it_expires(tmp_path: Path) -> None:
    ring = KeyRing.load(tmp_path / "keys")
    authorizer = Authorizer(ring, {}, leeway=0)
    expires = int(time.time()) + 2
    token = "Bearer " + ring.sign(claims(exp=expires))
    with mock.patch.object(jwt, "decode", wraps=jwt.decode) as decode:
        for _ in range(3):
            principal = await authorizer.verify(token, Rule("profile"))
            assert principal.user_id == "u1"
        assert decode.call_count == 1  # the signature was checked once
        denied = Rule("orders:read", role="admin")  # the rule is still checked every time
        with pytest.raises(Refused, match="only the role 'admin' may call this"):
            await authorizer.verify(token, denied)
        while time.time() < expires:
            await asyncio.sleep(0.05)
        with pytest.raises(Refused, match="the token has expired"):
            await authorizer.verify(token, Rule("profile"))
        assert decode.call_count == 2


async def test_a_remembered_token_fails_once_its_key_is_gone(tmp_path: Path) -> None:
    keyfiles.generate(tmp_path / "before", "k-old")
    ring = KeyRing.load(tmp_path / "before")
    authorizer = Authorizer(ring, {})
    token = "Bearer " + ring.sign(claims())
    await authorizer.verify(token, Rule("profile"))
    keyfiles.generate(tmp_path / "after", "k-new")
    authorizer.keys = KeyRing.load(tmp_path / "after")  # k-old retired
    with pytest.raises(Refused, match="the token is signed with an unknown key"):
        await authorizer.verify(token, Rule("profile"))
    # a key replaced under the same id: the remembered token is checked again, and fails
    keyfiles.generate(tmp_path / "replaced", "k-old")
    authorizer.keys = KeyRing.load(tmp_path / "replaced")
    with pytest.raises(Refused, match="the token's signature is invalid"):
        await authorizer.verify(token, Rule("profile"))


def test_an_unusable_published_key_is_skipped_and_logged(
    tmp_path: Path, clue_logs: CapturedLogs
) -> None:
    good = KeyRing.load(tmp_path / "keys").jwks().keys[0]
    bad = upb.JWK(kid="k-bad", kty="OKP", crv="Ed25519", x="AAAA", alg="EdDSA", use="sig")
    other = upb.JWK(kid="k-rsa", kty="RSA", alg="RS256", use="sig")
    found = public_keys(upb.JWKS(keys=[bad, good, other]))
    assert list(found) == [good.kid]
    (logged,) = clue_logs.where(msg="a published signing key is unusable")
    assert (logged["level"], logged["kid"]) == ("error", "k-bad")
