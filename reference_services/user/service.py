"""UserService over gRPC: accounts, logins (with lockout and audit), tokens and their keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import math
import time
import unicodedata
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import trace

from clue import log
from reference_services.common import fields
from reference_services.common.auth import (
    ADMIN,
    AUDIENCE,
    AUTH_FAILURES,
    CUSTOMER,
    ISSUER,
    SCOPES,
    Authorizer,
    Rule,
    caller,
    methods,
)
from reference_services.common.config import ConfigError, env_int, env_str
from reference_services.common.database import StoreUnavailable, open_database
from reference_services.common.events import Broker, Outbox, Relay, Stream, nats_url
from reference_services.common.rpc import (
    RpcFailure,
    invalid_argument,
    not_found,
    quote,
    rpc,
    unavailable,
)
from reference_services.common.runtime import Entry, Wiring
from reference_services.common.settings import data_dir, store_url
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc
from reference_services.user.keys import KeyRing
from reference_services.user.lockout import Lockout
from reference_services.user.passwords import Passwords
from reference_services.user.ratelimit import RateLimit
from reference_services.user.store import EmailTaken, User, UserStore

SERVICE = "boutique.v1.UserService"
RULES = methods(SERVICE, ("GetUser", "UpdateUser", "DeleteUser"), Rule("profile"))
"""The RPCs that act on an account take its token; Register, Authenticate and
GetSigningKeys are open."""
TOKEN_SECONDS = 15 * 60
MIN_PASSWORD = 8
MAX_PASSWORD = 128
MAX_NAME = 128
REGISTRATIONS_PER_HOUR = 20
"""Registrations one address may make in an hour (all at once, or spread out)."""
FORWARDED = "x-forwarded-for"


def email_address(value: str, field: str = "email") -> tuple[str, str]:
    """``value`` as stored, and its key: surrounding spaces dropped, the domain
    lower-cased (the local part is the owner's: kept as typed, mail goes there);
    the key, the whole address lower-cased, makes it unique and finds it at login."""
    fields.text(value, field, fields.MAX_EMAIL)
    address = fields.email(unicodedata.normalize("NFC", value.strip()), field)
    local, _, domain = address.rpartition("@")
    address = f"{local}@{domain.lower()}"
    return address, address.lower()


def masked(email: str) -> str:
    """An e-mail address fit for a log: its first character and its domain."""
    local, at, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}" if at and local else "***"


def password(value: str, field: str = "password", minimum: int = MIN_PASSWORD) -> str:
    """``value`` if ``minimum``..`MAX_PASSWORD` characters (never quoted back)."""
    if len(value) > MAX_PASSWORD:
        raise invalid_argument(f"{field} is longer than {MAX_PASSWORD} characters")
    if len(value) < minimum:
        raise invalid_argument(f"{field} is shorter than {minimum} characters")
    return value


def rfc3339(seconds: float) -> str:
    """A Unix time in RFC 3339, UTC, to the millisecond."""
    at = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_proto(user: User) -> upb.User:
    return upb.User(
        id=user.id, email=user.email, name=user.name, created_at=user.created_at, role=user.role
    )


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(context: Any, trusted: tuple[IPNetwork, ...]) -> str:
    """The address a login comes from: the gRPC peer's, or, when the peer is a trusted
    proxy (the web shop), the last address it put in ``x-forwarded-for``."""
    peer = str(context.peer() or "")
    kind, _, rest = peer.partition(":")
    host = rest.rpartition(":")[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if not any(ip in net for net in trusted):
        return str(ip)
    for name, value in context.invocation_metadata() or ():
        if name == FORWARDED and isinstance(value, str):
            try:
                return str(ipaddress.ip_address(value.rsplit(",", 1)[-1].strip()))
            except ValueError:
                break
    return str(ip)


@dataclass(frozen=True)
class Config:
    """Where accounts and keys are kept, who is an admin, which peers may forward."""

    database_url: str
    keys_dir: Path
    admins: frozenset[str] = frozenset()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    nats_url: str | None = None
    """The event broker; None publishes no events (tests of the accounts alone)."""
    stream: str = "BOUTIQUE"
    registrations_per_hour: int = REGISTRATIONS_PER_HOUR
    """Per client address; 0 lifts the limit."""

    @classmethod
    def from_env(cls) -> Config:
        """``USER_DATABASE_URL`` (default ``$DATA_DIR/user.db``, or postgresql://...);
        ``USER_SIGNING_KEYS_DIR`` (default ``$DATA_DIR/user-keys``); ``USER_ADMIN_EMAILS``
        (comma-separated: accounts registered with them get the role ``admin``);
        ``USER_TRUSTED_PROXIES`` (comma-separated addresses or networks whose
        ``x-forwarded-for`` names the client a login or registration comes from);
        ``USER_REGISTRATIONS_PER_HOUR`` (per client address, default 20, 0 for no
        limit); ``NATS_URL`` and ``EVENTS_STREAM``, where UserRegistered goes."""
        keys_dir = Path(env_str("USER_SIGNING_KEYS_DIR", str(data_dir() / "user-keys")))
        admins = set()
        for item in _items(env_str("USER_ADMIN_EMAILS", "")):
            try:
                admins.add(email_address(item)[1])
            except RpcFailure:
                raise ConfigError(f"USER_ADMIN_EMAILS: {item[:40]!r} is not an e-mail") from None
        proxies = []
        for item in _items(env_str("USER_TRUSTED_PROXIES", "")):
            try:
                proxies.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(
                    f"USER_TRUSTED_PROXIES: {item[:40]!r} is not an address"
                ) from None
        url = store_url("USER_DATABASE_URL", "user.db")
        per_hour = env_int(
            "USER_REGISTRATIONS_PER_HOUR", REGISTRATIONS_PER_HOUR, minimum=0, maximum=1_000_000
        )
        return cls(
            url,
            keys_dir,
            frozenset(admins),
            tuple(proxies),
            nats_url(),
            Stream.from_env().name,
            per_hour,
        )


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Users(upb_grpc.UserServiceServicer):
    """Registers accounts, signs their tokens and serves their profiles."""

    def __init__(
        self,
        store: UserStore,
        keys: KeyRing,
        config: Config,
        passwords: Passwords | None = None,
        lockout: Lockout | None = None,
        relay: Relay | None = None,
        registrations: RateLimit | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.config = config
        self.passwords = passwords or Passwords()
        self.lockout = lockout or Lockout(store)
        """Failed logins per e-mail and per client, counted in the store every replica shares."""
        per_hour = config.registrations_per_hour
        self.registrations = registrations or (RateLimit(store, per_hour) if per_hour else None)
        """Registrations per client address, in the store too (none: unlimited)."""
        self.relay = relay
        """Publishes each registration's event, written with the account (none: no events)."""
        # the lock of each e-mail being logged in with; gone once no attempt holds it
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @rpc
    async def Register(self, request: upb.RegisterRequest, context: Any) -> upb.User:
        """A new account (ALREADY_EXISTS when its e-mail is taken; RESOURCE_EXHAUSTED when
        its address registered too often: every attempt counts, refused ones too, so that
        the limit also bounds probing which e-mails are taken)."""
        if self.registrations:
            client = client_address(context, self.config.trusted_proxies)
            try:
                wait = await self.registrations.take(client)
            except StoreUnavailable as exc:
                raise unavailable(f"user store: {exc}") from None
            if wait:
                log.warn("registration refused", reason="rate_limited", client=client)
                raise RpcFailure(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many registrations from this address: try again in {math.ceil(wait)} s",
                )
        email, key = email_address(request.email)
        name = fields.text(request.name, "name", MAX_NAME).strip()
        secret = password(request.password)
        role = ADMIN if key in self.config.admins else CUSTOMER
        user = User(uuid.uuid4().hex, email, name, role, time.time_ns())
        try:
            outbox = self.relay.outbox if self.relay else None
            await self.store.create(user, key, await self.passwords.hash(secret), outbox)
        except EmailTaken:
            raise RpcFailure(
                grpc.StatusCode.ALREADY_EXISTS, f"email {quote(email)} is already registered"
            ) from None
        except StoreUnavailable as exc:
            raise unavailable(f"user store: {exc}") from None
        trace.get_current_span().set_attribute("app.user.id", user.id)
        log.print("user registered", user_id=user.id, role=role)  # audit: always written
        if self.relay:
            self.relay.wake()
        return to_proto(user)

    @rpc
    async def Authenticate(self, request: upb.AuthenticateRequest, context: Any) -> upb.Token:
        """An access token for the account whose e-mail and password these are."""
        email, key = email_address(request.email)
        secret = password(request.password, minimum=1)
        client = client_address(context, self.config.trusted_proxies)
        # one attempt at a time per e-mail in this replica: concurrent guesses cannot
        # outrun its lockout (across replicas, each may have one more being checked)
        turn = self._turns.setdefault(key, asyncio.Lock())
        async with turn:
            try:
                return await self._authenticate(email, key, secret, client)
            except StoreUnavailable as exc:
                raise unavailable(f"user store: {exc}") from None

    async def _authenticate(self, email: str, key: str, secret: str, client: str) -> upb.Token:
        """Authenticate, with the e-mail's turn held."""
        locked = await self.lockout.locked_for(f"email:{key}", f"peer:{client}")
        if locked:
            self._failed("locked_out", email, client)
            raise RpcFailure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many failed logins: try again in {math.ceil(locked)} s",
            )
        found = await self.store.credentials(key)
        matched = await self.passwords.check(found[1] if found else None, secret)
        if found is None or not matched:
            self._failed("wrong_password" if found else "unknown_email", email, client)
            await self.lockout.fail(f"email:{key}", f"peer:{client}")
            raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "wrong e-mail or password")
        user, encoded = found
        trace.get_current_span().set_attribute("app.user.id", user.id)
        await self.lockout.forget(f"email:{key}")
        if self.passwords.outdated(encoded):
            await self._rehash(user, secret)
        return self._token(user)

    def _failed(self, reason: str, email: str, client: str) -> None:
        AUTH_FAILURES.add(1, {"reason": reason})
        log.warn("login failed", reason=reason, email=masked(email), client=client)

    async def _rehash(self, user: User, secret: str) -> None:
        try:
            await self.store.set_password_hash(user.id, await self.passwords.hash(secret))
        except StoreUnavailable as exc:  # the login stands; the next one tries again
            log.error("rehashing a password failed", exc=exc, user_id=user.id)

    def _token(self, user: User) -> upb.Token:
        now = int(time.time())
        claims = {
            "sub": user.id,
            "email": user.email,
            "scope": " ".join(SCOPES),
            "role": user.role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
        }
        return upb.Token(
            token=self.keys.sign(claims),
            token_type="Bearer",
            expires_at=rfc3339(now + TOKEN_SECONDS),
            expires_in=TOKEN_SECONDS,
        )

    @staticmethod
    def _target(user_id: str) -> str:
        """The account a call acts on: ``user_id`` or the caller's own; NOT_FOUND for
        another's unless the caller is an admin (never telling whether it exists)."""
        principal = caller()
        target = fields.identifier(user_id, "user_id") if user_id else principal.user_id
        if target != principal.user_id and not principal.is_admin:
            raise not_found(f"no user with id {quote(target)}")
        return target

    @rpc
    async def GetUser(self, request: upb.GetUserRequest, context: Any) -> upb.User:
        """The caller's account (an admin's: any)."""
        target = self._target(request.user_id)
        try:
            user = await self.store.get(target)
        except StoreUnavailable as exc:
            raise unavailable(f"user store: {exc}") from None
        if user is None:
            raise not_found(f"no user with id {quote(target)}")
        return to_proto(user)

    @rpc
    async def UpdateUser(self, request: upb.UpdateUserRequest, context: Any) -> upb.User:
        """Rename the caller's account (an admin's: any)."""
        target = self._target(request.user_id)
        name = fields.text(request.name, "name", MAX_NAME).strip()
        try:
            user = await self.store.rename(target, name)
        except StoreUnavailable as exc:
            raise unavailable(f"user store: {exc}") from None
        if user is None:
            raise not_found(f"no user with id {quote(target)}")
        return to_proto(user)

    @rpc
    async def DeleteUser(
        self, request: upb.DeleteUserRequest, context: Any
    ) -> upb.DeleteUserResponse:
        """Delete the caller's account (an admin's: any). Its tokens keep verifying until
        they expire, but name an account that is gone."""
        target = self._target(request.user_id)
        try:
            deleted = await self.store.delete(target)
        except StoreUnavailable as exc:
            raise unavailable(f"user store: {exc}") from None
        if not deleted:
            raise not_found(f"no user with id {quote(target)}")
        log.print("user deleted", deleted_user_id=target)  # audit: always written
        return upb.DeleteUserResponse()

    @rpc
    async def GetSigningKeys(self, request: upb.GetSigningKeysRequest, context: Any) -> upb.JWKS:
        """The public keys of every token this service signs."""
        return self.keys.jwks()


async def build(config: Config) -> Wiring:
    """The servicer on a store migrated first, with its keys (made on the first start)."""
    keys = KeyRing.load(config.keys_dir)
    store = UserStore(open_database(config.database_url))
    try:
        await store.migrate()
    except StoreUnavailable as exc:
        await store.close()
        raise OSError(f"user store: {exc}") from exc
    add = upb_grpc.add_UserServiceServicer_to_server
    authorizer = Authorizer(keys, RULES)
    if config.nats_url is None:
        users = Users(store, keys, config)
        return Wiring([(add, users)], [store], closers=[store.close], authorizer=authorizer)
    broker = Broker(config.nats_url, Stream(config.stream))
    relay = Relay(Outbox(store.db), broker)
    broker.start()
    relay.start()
    return Wiring(
        servicers=[(add, Users(store, keys, config, relay=relay))],
        pingers=[store, broker],
        closers=[store.close, broker.close, relay.stop],  # run last to first
        authorizer=authorizer,
    )


ENTRY = Entry("user", build, Config.from_env)
