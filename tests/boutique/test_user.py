"""The user service over real gRPC, on SQLite and the real PostgreSQL: accounts,
argon2id hashes, tokens and their published keys, lockout and the audit of failed
logins; and the service as a real process."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import api

from clue import log
from clue.testing import CapturedLogs
from reference_services.common.auth import Authorizer, bearer, public_keys
from reference_services.common.config import ConfigError
from reference_services.common.database import Postgres, SQLite
from reference_services.common.events import Broker, Stream
from reference_services.common.migrations import apply_migrations
from reference_services.common.runtime import GrpcService, Wiring
from reference_services.protos.boutique.v1 import events_pb2 as ev
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.user import keys as keyfiles
from reference_services.user.keys import KeyFileError, KeyRing
from reference_services.user.lockout import Lockout
from reference_services.user.ratelimit import RateLimit
from reference_services.user.service import ENTRY, RULES, Config, Users, build, masked
from reference_services.user.store import MIGRATIONS, SCHEMA_VERSION, User, UserStore
from tests.boutique.conftest import Telemetry, rpc_error, serving, stub_for, unique
from tests.boutique.test_runtime import service_env, start, stop, wait_ready
from tests.conftest import free_port

PASSWORD = "correct horse battery"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    """A migrated store on a real database, dropped afterwards."""
    if request.param == "sqlite":
        made = UserStore(SQLite(tmp_path / "user.db"))
    else:
        made = UserStore(
            Postgres(request.getfixturevalue("postgres_url")), prefix=unique("u") + "_"
        )
    assert await made.migrate() == 0
    yield made
    await made.drop()
    await made.close()


@dataclass
class Running:
    service: GrpcService
    stub: upb_grpc.UserServiceAsyncStub
    users: Users
    clock: Clock


@pytest.fixture
async def running(store: UserStore, tmp_path: Path) -> AsyncIterator[Running]:
    """The user service on ``store`` with keys in a temp directory, a clock for its lockout,
    and ``admin@example.com`` as an admin."""
    clock = Clock()
    keys = KeyRing.load(tmp_path / "keys")
    config = Config("unused://", tmp_path / "keys", frozenset({"admin@example.com"}))
    users = Users(store, keys, config, lockout=Lockout(store, clock=clock))
    wiring = Wiring(
        servicers=[(upb_grpc.add_UserServiceServicer_to_server, users)],
        pingers=[store],
        authorizer=Authorizer(keys, RULES),
    )
    async with (
        serving("user", wiring) as service,
        stub_for(service, upb_grpc.UserServiceStub) as stub,
    ):
        yield Running(service, stub, users, clock)


async def register(stub: upb_grpc.UserServiceAsyncStub, email: str, name: str = "Ana") -> upb.User:
    return await stub.Register(upb.RegisterRequest(email=email, name=name, password=PASSWORD))


async def login(
    stub: upb_grpc.UserServiceAsyncStub, email: str, password: str = PASSWORD
) -> upb.Token:
    return await stub.Authenticate(upb.AuthenticateRequest(email=email, password=password))


def published(jwks: upb.JWKS) -> dict[str, Ed25519PublicKey]:
    return public_keys(jwks)


async def test_the_schema_is_versioned_and_migrated_once(store: UserStore) -> None:
    assert await store.migrate() == SCHEMA_VERSION
    assert await store.db.execute(f"SELECT version FROM {store.schema_table}") == [
        (SCHEMA_VERSION,)
    ]
    await store.db.execute(f"UPDATE {store.schema_table} SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this service's"):
        await store.migrate()


async def test_register_then_log_in_for_a_token_the_published_keys_verify(running: Running) -> None:
    user = await register(running.stub, "ana@example.com", "Ana Lima")
    assert (user.email, user.name, user.role) == ("ana@example.com", "Ana Lima", "customer")
    assert len(user.id) == 32 and user.created_at.endswith("Z")
    token = await login(running.stub, "ana@example.com")
    assert (token.token_type, token.expires_in) == ("Bearer", 900)
    header = jwt.get_unverified_header(token.token)
    keys = published(await running.stub.GetSigningKeys(upb.GetSigningKeysRequest()))
    assert header["alg"] == "EdDSA" and header["kid"] in keys
    claims = jwt.decode(
        token.token,
        keys[header["kid"]],
        algorithms=["EdDSA"],
        audience="boutique",
        issuer="boutique-user",
    )
    assert set(claims) == {"sub", "email", "scope", "role", "iss", "aud", "iat", "exp"}
    assert claims["sub"] == user.id
    assert claims["email"] == "ana@example.com"
    assert claims["scope"] == "orders:read orders:write profile"
    assert claims["role"] == "customer"
    assert claims["exp"] - claims["iat"] == 900
    # the caller's own account, through its token
    got = await running.stub.GetUser(upb.GetUserRequest(), metadata=bearer(token.token))
    assert got == user


async def test_the_password_is_kept_as_argon2id_at_the_owasp_cost(running: Running) -> None:
    user = await register(running.stub, "ana@example.com")
    found = await running.users.store.credentials("ana@example.com")
    assert found is not None
    stored_user, encoded = found
    assert stored_user.id == user.id
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in encoded
    assert "password" not in str(await running.users.store.get(user.id))


async def test_an_outdated_hash_is_replaced_at_the_next_login(running: Running) -> None:
    user = await register(running.stub, "ana@example.com")
    weak = running.users.passwords.hasher
    cheaper = type(weak)(time_cost=1, memory_cost=8192, parallelism=1)
    await running.users.store.set_password_hash(user.id, cheaper.hash(PASSWORD))
    await login(running.stub, "ana@example.com")
    found = await running.users.store.credentials("ana@example.com")
    assert found is not None and found[1].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_emails_are_normalised_and_unique(running: Running) -> None:
    user = await register(running.stub, "  Ana.Lima@Example.COM ")
    assert user.email == "Ana.Lima@example.com"  # the domain lower-cased, the local part kept
    error = await rpc_error(register(running.stub, "ana.lima@EXAMPLE.com"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "email 'ana.lima@example.com' is already registered"
    token = await login(running.stub, "ANA.LIMA@example.com")  # any case logs in
    assert jwt.decode(token.token, options={"verify_signature": False})["sub"] == user.id


@pytest.mark.parametrize(
    ("email", "name", "password", "message"),
    [
        ("ana", "Ana", PASSWORD, "email 'ana' is not an email address"),
        ("a@b.c" + "x" * 300, "Ana", PASSWORD, "email is 305 characters long, more than 254"),
        ("", "Ana", PASSWORD, "email must not be empty"),
        ("ana@example.com", "", PASSWORD, "name must not be empty"),
        ("ana@example.com", "N" * 129, PASSWORD, "name is 129 characters long, more than 128"),
        (
            "ana@example.com",
            "A\x00na",
            PASSWORD,
            "name holds a control character (U+0000) at position 1",
        ),
        ("ana@example.com", "Ana", "short77", "password is shorter than 8 characters"),
        ("ana@example.com", "Ana", "p" * 129, "password is longer than 128 characters"),
    ],
)
async def test_bad_registrations_are_invalid_and_store_nothing(
    running: Running, email: str, name: str, password: str, message: str
) -> None:
    request = upb.RegisterRequest(email=email, name=name, password=password)
    error = await rpc_error(running.stub.Register(request))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert password not in (error.details() or "")
    rows = await running.users.store.db.execute(f"SELECT count(*) FROM {running.users.store.table}")
    assert rows == [(0,)]


async def test_get_update_and_delete_act_on_the_tokens_own_account(running: Running) -> None:
    ana = await register(running.stub, "ana@example.com", "Ana")
    bob = await register(running.stub, "bob@example.com", "Bob")
    as_ana = bearer((await login(running.stub, "ana@example.com")).token)
    renamed = await running.stub.UpdateUser(
        upb.UpdateUserRequest(name=" Ana Lima "), metadata=as_ana
    )
    assert renamed.name == "Ana Lima"
    assert (
        await running.stub.GetUser(upb.GetUserRequest(user_id=ana.id), metadata=as_ana)
    ) == renamed
    # another's account is NOT_FOUND, as an unknown one: whether it exists is not told
    for call in (
        running.stub.GetUser(upb.GetUserRequest(user_id=bob.id), metadata=as_ana),
        running.stub.UpdateUser(upb.UpdateUserRequest(user_id=bob.id, name="X"), metadata=as_ana),
        running.stub.DeleteUser(upb.DeleteUserRequest(user_id=bob.id), metadata=as_ana),
    ):
        error = await rpc_error(call)
        assert (error.code(), error.details()) == (
            grpc.StatusCode.NOT_FOUND,
            f"no user with id {bob.id!r}",
        )
    bad = await rpc_error(running.stub.UpdateUser(upb.UpdateUserRequest(name=""), metadata=as_ana))
    assert (bad.code(), bad.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "name must not be empty",
    )
    assert (await running.stub.GetUser(upb.GetUserRequest(), metadata=as_ana)).name == "Ana Lima"
    await running.stub.DeleteUser(upb.DeleteUserRequest(), metadata=as_ana)
    gone = await rpc_error(running.stub.GetUser(upb.GetUserRequest(), metadata=as_ana))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert (
        await running.stub.GetUser(
            upb.GetUserRequest(user_id=bob.id),
            metadata=bearer((await login(running.stub, "bob@example.com")).token),
        )
    ).name == "Bob"


async def test_an_admin_reaches_every_account(running: Running) -> None:
    admin = await register(running.stub, "Admin@Example.com", "Root")
    assert admin.role == "admin"
    bob = await register(running.stub, "bob@example.com", "Bob")
    as_admin = bearer((await login(running.stub, "admin@example.com")).token)
    assert (
        await running.stub.GetUser(upb.GetUserRequest(user_id=bob.id), metadata=as_admin)
    ) == bob
    await running.stub.DeleteUser(upb.DeleteUserRequest(user_id=bob.id), metadata=as_admin)
    error = await rpc_error(
        running.stub.GetUser(upb.GetUserRequest(user_id=bob.id), metadata=as_admin)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_wrong_credentials_are_one_answer(running: Running) -> None:
    await register(running.stub, "ana@example.com")
    wrong = await rpc_error(login(running.stub, "ana@example.com", "not the password"))
    unknown = await rpc_error(login(running.stub, "nobody@example.com"))
    for error in (wrong, unknown):
        assert (error.code(), error.details()) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "wrong e-mail or password",
        )
    long = await rpc_error(login(running.stub, "ana@example.com", "p" * 129))
    assert (long.code(), long.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "password is longer than 128 characters",
    )


async def test_five_failures_for_one_email_lock_it_out_for_a_minute(running: Running) -> None:
    await register(running.stub, "ana@example.com")
    for _ in range(5):
        error = await rpc_error(login(running.stub, "ana@example.com", "guess-guess"))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # locked: even the right password is refused, and the password is not even checked
    locked = await rpc_error(login(running.stub, "Ana@example.com"))
    assert (locked.code(), locked.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many failed logins: try again in 60 s",
    )
    running.clock.now += 59.5
    assert (await rpc_error(login(running.stub, "ana@example.com"))).details() == (
        "too many failed logins: try again in 1 s"
    )
    running.clock.now += 0.5
    assert (await login(running.stub, "ana@example.com")).token


async def test_five_failures_from_one_peer_lock_it_out(running: Running) -> None:
    await register(running.stub, "ana@example.com")
    for i in range(5):  # five different e-mails from the same address
        await rpc_error(login(running.stub, f"guess{i}@example.com"))
    locked = await rpc_error(login(running.stub, "ana@example.com"))
    assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    running.clock.now += 60
    assert (await login(running.stub, "ana@example.com")).token


async def test_failures_a_minute_apart_do_not_add_up(running: Running) -> None:
    await register(running.stub, "ana@example.com")
    for _ in range(4):
        await rpc_error(login(running.stub, "ana@example.com", "guess-guess"))
    running.clock.now += 60
    for _ in range(4):
        await rpc_error(login(running.stub, "ana@example.com", "guess-guess"))
    assert (await login(running.stub, "ana@example.com")).token


async def test_lockout_rows_are_swept_once_they_mean_nothing(store: UserStore) -> None:
    clock = Clock()
    lockout = Lockout(store, limit=2, clock=clock)
    assert not await lockout.fail("a", "b")
    assert await lockout.fail("a")
    assert await lockout.locked_for("a", "b") == 60
    clock.now += 60  # a's lockout and b's failure are over: the next count sweeps them
    assert not await lockout.fail("c")
    assert await lockout.locked_for("a") == 0
    assert await store.db.execute(f"SELECT key FROM {store.guards}") == [("c",)]


async def test_a_version_1_store_migrates_with_its_accounts(tmp_path: Path) -> None:
    store = UserStore(SQLite(tmp_path / "user.db"))
    tables = {"t": store.table}
    await apply_migrations(store.db, store.schema_table, {1: MIGRATIONS[1]}, tables, "user")
    await store.create(User("u1", "ana@example.com", "Ana", "customer", 1), "ana@example.com", "h")
    assert await store.migrate() == 1
    assert await store.credentials("ana@example.com") is not None
    assert await RateLimit(store, 1).take("203.0.113.9") == 0
    await store.close()


async def test_a_trusted_proxy_names_the_client(store: UserStore, tmp_path: Path) -> None:
    import ipaddress

    keys = KeyRing.load(tmp_path / "keys")
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    config = Config("unused://", tmp_path / "keys", trusted_proxies=proxies)
    users = Users(store, keys, config, lockout=Lockout(store, clock=Clock()))
    wiring = Wiring(servicers=[(upb_grpc.add_UserServiceServicer_to_server, users)])
    async with (
        serving("user", wiring) as service,
        stub_for(service, upb_grpc.UserServiceStub) as stub,
    ):
        await register(stub, "ana@example.com")
        for i in range(5):
            call = stub.Authenticate(
                upb.AuthenticateRequest(email=f"guess{i}@example.com", password="guess-guess"),
                metadata=(("x-forwarded-for", "203.0.113.9"),),
            )
            await rpc_error(call)
        # another client behind the same proxy still logs in; the one that failed does not
        assert (await login(stub, "ana@example.com")).token
        locked = await rpc_error(
            stub.Authenticate(
                upb.AuthenticateRequest(email="ana@example.com", password=PASSWORD),
                metadata=(("x-forwarded-for", "198.51.100.1, 203.0.113.9"),),
            )
        )
        assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_failed_logins_are_logged_masked_and_counted_never_the_password(
    running: Running, otel: Telemetry, clue_logs: CapturedLogs
) -> None:
    log.set_debug(True)  # the request payloads are logged too: the password must be masked there
    try:
        await register(running.stub, "ana.lima@example.com")
        secret = "my-secret-guess-42"
        await rpc_error(login(running.stub, "nobody@example.com", secret))
        for _ in range(4):  # the fifth failure from this peer: it is locked out
            await rpc_error(login(running.stub, "ana.lima@example.com", secret))
        await rpc_error(login(running.stub, "ana.lima@example.com", secret))
        locked = await rpc_error(login(running.stub, "ana.lima@example.com"))
        assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        running.clock.now += 60
        token = (await login(running.stub, "ana.lima@example.com")).token
    finally:
        log.set_debug(False)
    failures = clue_logs.where(msg="login failed")
    assert [(e["level"], e["reason"], e["email"]) for e in failures] == [
        ("warn", "unknown_email", "n***@example.com"),
        *[("warn", "wrong_password", "a***@example.com")] * 4,
        *[("warn", "locked_out", "a***@example.com")] * 2,
    ]
    assert {e["client"] for e in failures} == {"127.0.0.1"}
    # the payloads were logged, their password and token masked
    payloads = [json.loads(e["payload"]) for e in clue_logs.where(msg="request payload")]
    logins = [p for p in payloads if "password" in p and "name" not in p]
    assert len(logins) == 8
    assert {p["password"] for p in logins} == {"[REDACTED]"}
    replies = [json.loads(e["payload"]) for e in clue_logs.where(msg="response payload")]
    assert [r["token"] for r in replies if "token_type" in r] == ["[REDACTED]"]
    written = json.dumps(list(clue_logs), default=str)
    assert secret not in written and PASSWORD not in written and token not in written
    assert "ana.lima@example.com" not in json.dumps(failures)
    counted = {p[0]["reason"]: p[1].value for p in otel.points("boutique.auth.failures")}
    assert counted == {"wrong_password": 4, "unknown_email": 1, "locked_out": 2}


def test_emails_are_masked_for_logs() -> None:
    assert masked("ana.lima@example.com") == "a***@example.com"
    assert masked("not an address") == "***"
    assert masked("@example.com") == "***"


def test_the_first_start_writes_a_key_only_its_owner_reads(tmp_path: Path) -> None:
    ring = KeyRing.load(tmp_path / "keys")
    files = list((tmp_path / "keys").iterdir())
    assert [f.stem for f in files] == [ring.signer.kid]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    again = KeyRing.load(tmp_path / "keys")  # the next start reads the same key
    assert [k.kid for k in again.keys] == [ring.signer.kid]
    assert again.jwks() == ring.jwks()


def test_a_key_added_later_signs_and_every_key_is_published(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    keyfiles.generate(directory, "k2026-01")
    old = KeyRing.load(directory)
    old_token = old.sign({"sub": "u1"})
    keyfiles.generate(directory, "k2026-02")
    ring = KeyRing.load(directory)
    assert ring.signer.kid == "k2026-02"
    assert [k.kid for k in ring.jwks().keys] == ["k2026-01", "k2026-02"]
    assert jwt.get_unverified_header(ring.sign({"sub": "u1"}))["kid"] == "k2026-02"
    keys = public_keys(ring.jwks())
    assert jwt.decode(old_token, keys["k2026-01"], algorithms=["EdDSA"])["sub"] == "u1"
    jwk = ring.jwks().keys[0]
    assert (jwk.kty, jwk.crv, jwk.alg, jwk.use) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert len(base64.urlsafe_b64decode(jwk.x + "=")) == 32


def test_unusable_key_files_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "bad name.pem").write_text("x")
    with pytest.raises(KeyFileError, match="a key file's name must be"):
        KeyRing.load(tmp_path)
    (tmp_path / "bad name.pem").unlink()
    (tmp_path / "k1.pem").write_text("not a key")
    with pytest.raises(KeyFileError, match=r"k1\.pem: not a readable private key"):
        KeyRing.load(tmp_path)


def test_a_key_directory_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "mount").write_text("")  # a file where a directory should be: even root fails
    with pytest.raises(KeyFileError) as caught:
        KeyRing.load(tmp_path / "mount" / "keys")
    assert str(caught.value) == (
        f"{tmp_path}/mount/keys holds no signing key (*.pem) and none can be written there:"
        " Not a directory"
    )


def test_the_configuration_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USER_ADMIN_EMAILS", " Root@Example.com , ops@example.org")
    monkeypatch.setenv("USER_TRUSTED_PROXIES", "10.0.0.0/8,::1")
    monkeypatch.delenv("USER_DATABASE_URL", raising=False)
    monkeypatch.delenv("USER_SIGNING_KEYS_DIR", raising=False)
    config = Config.from_env()
    assert config.database_url == f"sqlite:///{tmp_path / 'user.db'}"
    assert config.keys_dir == tmp_path / "user-keys"
    assert config.admins == {"root@example.com", "ops@example.org"}
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("USER_ADMIN_EMAILS", "root")
    with pytest.raises(ConfigError, match="USER_ADMIN_EMAILS: 'root' is not an e-mail"):
        Config.from_env()
    monkeypatch.setenv("USER_ADMIN_EMAILS", "")
    monkeypatch.setenv("USER_TRUSTED_PROXIES", "proxy.local")
    with pytest.raises(ConfigError, match=r"PROXIES: 'proxy\.local' is not an address"):
        Config.from_env()


async def test_the_user_process_serves_and_never_writes_a_password(
    tmp_path: Path, nats_url: str
) -> None:
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    env = service_env(PORT=str(port), ADMIN_PORT=str(admin_port), DATA_DIR=str(tmp_path))
    stream = Stream(unique("P").upper())
    env.update(NATS_URL=nats_url, EVENTS_STREAM=stream.name)
    env["CLUE_DEBUG"] = "1"  # request payloads in the log too
    proc = start("user", env)
    try:
        await wait_ready(proc, admin)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="boutique.v1.UserService")
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            stub = upb_grpc.UserServiceStub(channel)
            await register(stub, "ana@example.com")
            await rpc_error(login(stub, "ana@example.com", "wrong-guess-7"))
            token = await login(stub, "ana@example.com")
            assert (
                await stub.GetUser(upb.GetUserRequest(), metadata=bearer(token.token))
            ).name == "Ana"
        async with httpx.AsyncClient() as client:
            healthz = await client.get(f"{admin}/healthz")
            assert healthz.json()["status"] == {"user-store": "OK", "nats": "OK"}
    finally:
        code, output = stop(proc)
        broker = Broker(nats_url, stream)
        await stream.delete(await broker.jetstream())
        await broker.close()
    assert code == 0, output
    assert "login failed" in output
    for secret in (PASSWORD, "wrong-guess-7", token.token):
        assert secret not in output
    key_files = list((tmp_path / "user-keys").glob("*.pem"))
    assert len(key_files) == 1 and stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert (tmp_path / "user.db").exists()


async def stream_messages(broker: Broker) -> list[nats.aio.msg.Msg]:
    """Every message in the broker's stream so far."""
    js = await broker.jetstream()
    if (await js.stream_info(broker.stream.name)).state.messages == 0:
        return []
    sub = await js.js.pull_subscribe(
        f"{broker.stream.prefix}.>",
        stream=broker.stream.name,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE),
    )
    messages: list[nats.aio.msg.Msg] = []
    try:
        while True:
            messages += await sub.fetch(100, timeout=0.5)
    except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when none came
        pass
    await sub.unsubscribe()
    return messages


async def test_a_registration_is_published_as_an_event_written_with_the_account(
    tmp_path: Path, nats_url: str
) -> None:
    stream = Stream(unique("U").upper())
    config = Config(
        f"sqlite:///{tmp_path / 'user.db'}",
        tmp_path / "keys",
        nats_url=nats_url,
        stream=stream.name,
    )
    broker = Broker(nats_url, stream)
    try:
        async with (
            serving("user", await build(config)) as service,
            stub_for(service, upb_grpc.UserServiceStub) as stub,
        ):
            user = await register(stub, "Ana@Example.com", "Ana Lima")
            await rpc_error(register(stub, "ana@example.com"))  # taken: no account, no event

            deadline = time.monotonic() + 20
            while not (messages := await stream_messages(broker)):
                assert time.monotonic() < deadline, "the UserRegistered event was not published"
                await asyncio.sleep(0.05)
            (message,) = messages
            assert message.subject == f"{stream.prefix}.user.registered"
            event = ev.UserRegistered.FromString(message.data)
            assert (event.user_id, event.email, event.name) == (user.id, user.email, "Ana Lima")
            assert (message.headers or {})["event-type"] == "boutique.v1.UserRegistered"
            async with httpx.AsyncClient() as client:
                healthz = (await client.get(f"{service.admin.url}/healthz")).json()
            assert healthz["status"] == {"user-store": "OK", "nats": "OK"}
    finally:
        await stream.delete(await broker.jetstream())
        await broker.close()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "USER_DATABASE_URL",
            "mysql://db/users",
            "USER_DATABASE_URL must be a URL starting with one of: "
            "sqlite:///..., postgresql://..., postgres://...",
        ),
        ("USER_ADMIN_EMAILS", "root", "USER_ADMIN_EMAILS: 'root' is not an e-mail"),
        (
            "USER_REGISTRATIONS_PER_HOUR",
            "-1",
            "USER_REGISTRATIONS_PER_HOUR=-1 is below the minimum 0",
        ),
        (
            "USER_REGISTRATIONS_PER_HOUR",
            "many",
            "USER_REGISTRATIONS_PER_HOUR='many' is not an integer",
        ),
    ],
)
def test_the_user_main_refuses_bad_configuration(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("ADMIN_PORT", "2")
    monkeypatch.setenv(variable, value)
    assert ENTRY.run() == 2
    assert capsys.readouterr().err == f"user: configuration error: {message}\n"


async def test_an_unreachable_store_is_unavailable_and_named(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/users"
    keys = KeyRing.load(tmp_path / "keys")
    store = UserStore(Postgres(url, connect_timeout=1))
    users = Users(store, keys, Config(url, tmp_path / "keys"))
    wiring = Wiring(
        servicers=[(upb_grpc.add_UserServiceServicer_to_server, users)],
        pingers=[store],
        authorizer=Authorizer(keys, RULES),
    )
    now = int(time.time())
    claims = {"sub": "u1", "scope": "profile", "role": "customer", "iss": "boutique-user"}
    token = bearer(keys.sign({**claims, "aud": "boutique", "iat": now, "exp": now + 60}))
    async with (
        serving("user", wiring) as service,
        stub_for(service, upb_grpc.UserServiceStub) as stub,
    ):
        for call in (
            register(stub, "ana@example.com"),
            login(stub, "ana@example.com"),
            stub.GetUser(upb.GetUserRequest(), metadata=token),
        ):
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert (error.details() or "").startswith(
                "user store: postgresql database postgresql://postgres@127.0.0.1:"
            )
        async with httpx.AsyncClient() as client:
            healthz = await client.get(f"{service.admin.url}/healthz")
        assert healthz.status_code == 503
        assert healthz.json()["status"] == {"user-store": "NOT OK"}
    with pytest.raises(OSError, match=r"^user store: postgresql database .* is unreachable"):
        await build(Config(url, tmp_path / "keys"))


async def test_huge_values_are_refused_by_size_quoting_a_short_prefix(running: Running) -> None:
    huge = "x" * (3 << 20)
    cases = [
        (
            running.stub.Register(upb.RegisterRequest(email=huge, name="A", password=PASSWORD)),
            "email is 3145728 characters long, more than 254",
        ),
        (
            running.stub.Authenticate(upb.AuthenticateRequest(email="a@b.co", password=huge)),
            "password is longer than 128 characters",
        ),
    ]
    await register(running.stub, "ana@example.com")
    token = bearer((await login(running.stub, "ana@example.com")).token)
    cases.append(
        (
            running.stub.GetUser(upb.GetUserRequest(user_id=huge), metadata=token),
            "user_id is 3145728 characters long, more than 128",
        )
    )
    for call, message in cases:
        error = await rpc_error(call)
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


async def test_concurrent_guesses_cannot_outrun_the_lockout(running: Running) -> None:
    await register(running.stub, "ana@example.com")
    guesses = [login(running.stub, "ana@example.com", f"guess-{i:04d}") for i in range(20)]
    codes = [error.code() for error in await asyncio.gather(*map(rpc_error, guesses))]
    # one attempt at a time for an e-mail: five are checked, the rest find it locked
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 5
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 15


async def test_registrations_are_limited_per_address(store: UserStore, tmp_path: Path) -> None:
    """Three an hour here (twenty by default): every attempt takes one, a refused one too;
    the address that used them up waits, nothing of its refused registration is stored,
    and another visitor behind the same trusted proxy still registers."""
    import ipaddress

    clock = Clock()
    keys = KeyRing.load(tmp_path / "keys")
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    config = Config("unused://", tmp_path / "keys", trusted_proxies=proxies)
    users = Users(store, keys, config, registrations=RateLimit(store, 3, clock=clock))
    wiring = Wiring(servicers=[(upb_grpc.add_UserServiceServicer_to_server, users)])
    crowd = (("x-forwarded-for", "203.0.113.9"),)

    def sign_up(email: str, metadata: tuple[tuple[str, str], ...] = crowd) -> Any:
        request = upb.RegisterRequest(email=email, name="Ana", password=PASSWORD)
        return stub.Register(request, metadata=metadata)

    async with (
        serving("user", wiring) as service,
        stub_for(service, upb_grpc.UserServiceStub) as stub,
    ):
        await sign_up("ana@example.com")
        taken = await rpc_error(sign_up("ana@example.com"))
        assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
        bad = await rpc_error(sign_up("not-an-address"))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        refused = await rpc_error(sign_up("bea@example.com"))
        assert (refused.code(), refused.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many registrations from this address: try again in 1200 s",
        )
        assert await store.credentials("bea@example.com") is None
        # another address, and the proxy's own calls, have their own budgets
        await sign_up("bea@example.com", (("x-forwarded-for", "198.51.100.7"),))
        await register(stub, "cid@example.com")
        # one registration back every 1200 s
        clock.now += 1199
        assert (await rpc_error(sign_up("dan@example.com"))).code() == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        clock.now += 2
        await sign_up("dan@example.com")
        assert (await rpc_error(sign_up("eve@example.com"))).details() == (
            "too many registrations from this address: try again in 1199 s"
        )


async def test_a_rate_limit_refills_to_its_burst_and_sweeps_full_buckets(store: UserStore) -> None:
    clock = Clock()
    limit = RateLimit(store, 2, period=60, clock=clock)
    assert [await limit.take("a") for _ in range(3)] == [0, 0, 30]
    assert await limit.take("b") == 0
    clock.now += 3600  # a long quiet time refills the buckets only to their burst
    assert [await limit.take("a") for _ in range(3)] == [0, 0, 30]
    assert await store.db.execute(f"SELECT key FROM {store.buckets}") == [("a",)]  # b: full
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimit(store, 0)


def test_the_registration_limit_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("USER_REGISTRATIONS_PER_HOUR", raising=False)
    assert Config.from_env().registrations_per_hour == 20
    keys = KeyRing.load(tmp_path / "keys")
    store = UserStore(SQLite(tmp_path / "user.db"))
    limited = Users(store, keys, Config.from_env())
    assert limited.registrations is not None and limited.registrations.burst == 20
    monkeypatch.setenv("USER_REGISTRATIONS_PER_HOUR", "0")
    assert Users(store, keys, Config.from_env()).registrations is None
