"""Who calls: verifying the user service's access tokens on user-scoped RPCs.

A service declares which of its RPCs need a token, and with what scope or role
(`Rule`), and puts an `Authorizer` in its `Wiring`. The runtime wraps those
handlers inside clue's layers, so a refused call still has its span and its
request line. A guarded handler reads its caller with `caller()`; the caller's
user id is in the log context of everything it logs (never the token), and on the
server span as ``app.user.id``.

Tokens are JWTs signed by the user service (EdDSA, Ed25519). Services other
than the user service hold no secret: they verify with the public keys its
GetSigningKeys publishes (`PublishedKeys`: cached, fetched again on an unknown
key id at most every few seconds, and when the cache grows old).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import grpc
import grpc.aio
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from opentelemetry import metrics, trace

from clue import log
from reference_services.common.clients import Clients
from reference_services.common.config import env_addr
from reference_services.protos.boutique.v1 import user_pb2 as upb
from reference_services.protos.boutique.v1 import user_pb2_grpc as upb_grpc

ALGORITHM = "EdDSA"
ISSUER = "boutique-user"
"""``iss`` of every token the user service signs."""
AUDIENCE = "boutique"
"""``aud``: the boutique's services, the only ones that accept the tokens."""
SCOPES = ("orders:read", "orders:write", "profile")
"""What a customer's token allows (its ``scope`` claim, space-separated)."""
ADMIN = "admin"
CUSTOMER = "customer"
MAX_TOKEN = 4096
"""Characters of a bearer token accepted (those signed here are under 600)."""
LEEWAY_SECONDS = 5
"""Clock difference tolerated between the user service and a verifying service."""
MAX_VERIFIED = 10_000
"""Verified tokens remembered by an Authorizer (each a few hundred bytes)."""

METER = metrics.get_meter("reference_services.auth")
AUTH_FAILURES = METER.create_counter(
    "boutique.auth.failures",
    unit="{failure}",
    description="Failed logins and refused access tokens, by reason",
)


@dataclass(frozen=True)
class Rule:
    """What an RPC asks of its caller's token: a scope, and a role if given."""

    scope: str
    role: str | None = None


@dataclass(frozen=True)
class Principal:
    """The verified caller of a guarded RPC."""

    user_id: str
    email: str
    role: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


_CALLER: ContextVar[Principal | None] = ContextVar("boutique.auth.caller", default=None)


def caller() -> Principal:
    """The caller of the guarded RPC being handled; RuntimeError outside one."""
    principal = _CALLER.get()
    if principal is None:
        raise RuntimeError("caller() is only known inside an RPC an Authorizer guards")
    return principal


class Refused(Exception):
    """A call the token does not allow: its status code, a reason (a metric label) and
    a message for the caller."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


def _unauthenticated(reason: str, message: str) -> Refused:
    return Refused(grpc.StatusCode.UNAUTHENTICATED, reason, message)


class KeysUnavailable(Exception):
    """The signing keys cannot be fetched now."""


class Keys(Protocol):
    """Where the public key a token names is found."""

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The key with id ``kid``, None if there is none; KeysUnavailable if unknown now."""
        ...


def public_keys(jwks: upb.JWKS) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a published key set by id (keys of other kinds are skipped)."""
    found = {}
    for key in jwks.keys:
        if key.kty != "OKP" or key.crv != "Ed25519" or not key.kid:
            continue
        try:
            jwk = jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x}, algorithm=ALGORITHM)
        except jwt.PyJWTError as exc:  # one bad key must not stop the others from verifying
            log.error("a published signing key is unusable", kid=key.kid[:64], reason=str(exc))
            continue
        if isinstance(jwk.key, Ed25519PublicKey):
            found[key.kid] = jwk.key
    return found


class PublishedKeys:
    """The user service's published keys, cached.

    An unknown key id fetches them again, at most once per ``min_interval``
    seconds (a flood of forged key ids costs one call to the user service per
    interval); a cache older than ``max_age`` is fetched again on the next use,
    so a key removed there stops being accepted here too.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[upb.JWKS]],
        *,
        min_interval: float = 5.0,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.min_interval = min_interval
        self.max_age = max_age
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt
        self._lock = asyncio.Lock()

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        now = self.clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self.max_age
        if kid not in self._keys or stale:
            await self._refresh(kid)
        return self._keys.get(kid)

    async def _refresh(self, kid: str) -> None:
        async with self._lock:
            now = self.clock()
            fresh = self._fetched_at is not None and now - self._fetched_at < self.max_age
            if kid in self._keys and fresh:
                return  # fetched by a call that held the lock before this one
            if self._tried_at is not None and now - self._tried_at < self.min_interval:
                if self._fetched_at is None:
                    raise KeysUnavailable("the signing keys could not be fetched")
                return
            self._tried_at = now
            self.fetches += 1
            try:
                jwks = await self.fetch()
            except grpc.aio.AioRpcError as exc:
                log.error("fetching the signing keys failed", code=exc.code().name)
                if self._fetched_at is None:
                    raise KeysUnavailable(f"signing keys: {exc.details()}") from None
                return  # keep verifying with the keys known
            self._keys = public_keys(jwks)
            self._fetched_at = now

    @classmethod
    def from_stub(cls, stub: upb_grpc.UserServiceAsyncStub, **options: Any) -> PublishedKeys:
        """The keys GetSigningKeys of ``stub`` publishes."""

        async def fetch() -> upb.JWKS:
            return await stub.GetSigningKeys(upb.GetSigningKeysRequest(), timeout=3.0)

        return cls(fetch, **options)


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # subscriptable for type checkers only


class Authorizer:
    """Checks ``authorization: Bearer <jwt>`` on the RPCs ``rules`` names (full method
    names, ``/boutique.v1.UserService/GetUser``); other RPCs pass untouched.

    Missing, malformed, expired, forged, wrong-audience or unknown-key tokens
    are ``UNAUTHENTICATED``; a token without the rule's scope or role is
    ``PERMISSION_DENIED``. Each refusal is logged (reason, never the token)
    and counted in ``boutique.auth.failures``.
    """

    def __init__(
        self, keys: Keys, rules: Mapping[str, Rule], *, leeway: float = LEEWAY_SECONDS
    ) -> None:
        self.keys = keys
        self.rules = dict(rules)
        self.leeway = leeway
        self._guarded: set[str] = set()
        # token -> (principal, kid, key, valid until): a token is checked once, then looked
        # up (a signature check costs ~150 µs, a look-up ~1 µs), while its key stays the same
        self._verified: dict[str, tuple[Principal, str, Ed25519PublicKey, float]] = {}

    async def verify(self, authorization: str | None, rule: Rule) -> Principal:
        """The principal a bearer ``authorization`` value stands for, if it meets ``rule``;
        `Refused` otherwise."""
        if not authorization:
            raise _unauthenticated("missing_token", "authorization metadata is required")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated("malformed", "authorization must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN:
            raise _unauthenticated("malformed", f"the token is longer than {MAX_TOKEN} characters")
        principal = await self._principal(token)
        if rule.scope not in principal.scopes:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "missing_scope",
                f"the token lacks the scope {rule.scope!r}",
            )
        if rule.role is not None and principal.role != rule.role:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "missing_role",
                f"only the role {rule.role!r} may call this",
            )
        return principal

    async def _principal(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, signer, key, until = cached
            if time.time() < until and await self._key(signer) is key:
                return principal
            del self._verified[token]  # expired, or its key was replaced: check it again
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _unauthenticated("malformed", "the token is not a JWT") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
            raise _unauthenticated("malformed", f"the token must be {ALGORITHM} with a kid")
        key = await self._key(kid)
        claims = self._decode(token, key)
        principal = _principal(claims)
        if len(self._verified) >= MAX_VERIFIED:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, kid, key, float(claims["exp"]) + self.leeway)
        return principal

    async def _key(self, kid: str) -> Ed25519PublicKey:
        try:
            key = await self.keys.public_key(kid)
        except KeysUnavailable as exc:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "keys_unavailable", str(exc)) from None
        if key is None:
            raise _unauthenticated("unknown_kid", "the token is signed with an unknown key")
        return key

    def _decode(self, token: str, key: Ed25519PublicKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss", "scope", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("expired", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated(
                "wrong_audience", "the token is not meant for the boutique"
            ) from None
        except jwt.InvalidIssuerError:
            raise _unauthenticated(
                "wrong_issuer", "the token was not issued by the boutique"
            ) from None
        except jwt.InvalidSignatureError:
            raise _unauthenticated("bad_signature", "the token's signature is invalid") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthenticated("invalid", f"the token is invalid: {exc}") from None
        return claims

    def guard(self, method: str, handler: Handler | None) -> Handler | None:
        """``handler`` of the full ``method``, checking its rule first if it has one."""
        rule = self.rules.get(method)
        if rule is None or handler is None:
            return handler
        behavior = handler.unary_unary
        if behavior is None:
            raise ValueError(f"{method}: only unary RPCs can be guarded")
        self._guarded.add(method)

        async def guarded(request: Any, context: Any) -> Any:
            authorization = _metadata(context.invocation_metadata(), "authorization")
            try:
                principal = await self.verify(authorization, rule)
            except Refused as exc:
                AUTH_FAILURES.add(1, {"reason": exc.reason})
                log.warn("call refused", reason=exc.reason)
                await context.abort(exc.code, exc.message)
            trace.get_current_span().set_attribute("app.user.id", principal.user_id)
            bound = _CALLER.set(principal)
            try:
                with log.context(user_id=principal.user_id):
                    return await behavior(request, context)
            finally:
                _CALLER.reset(bound)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def guard_generic(self, handlers: grpc.GenericRpcHandler[Any, Any]) -> Any:
        """A generic handler whose method handlers are guarded (keeping its service name)."""
        return _GuardedGeneric(self, handlers)

    def unguarded(self) -> list[str]:
        """The methods with a rule that no handler added so far matched (a misspelt rule
        would leave its RPC open: the runtime refuses to start then)."""
        return sorted(set(self.rules) - self._guarded)


class _GuardedGeneric(grpc.ServiceRpcHandler):  # type: ignore[type-arg]
    def __init__(self, authorizer: Authorizer, handlers: grpc.GenericRpcHandler[Any, Any]) -> None:
        self.authorizer = authorizer
        self.handlers = handlers

    def service_name(self) -> str:
        if isinstance(self.handlers, grpc.ServiceRpcHandler):
            return str(self.handlers.service_name())
        return ""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self.handlers.service(handler_call_details)
        return self.authorizer.guard(handler_call_details.method, handler)


def _metadata(metadata: Iterable[tuple[str, Any]] | None, key: str) -> str | None:
    for name, value in metadata or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub, scope, role = claims.get("sub"), claims.get("scope"), claims.get("role")
    if not isinstance(sub, str) or not isinstance(scope, str) or not isinstance(role, str):
        raise _unauthenticated("invalid", "the token's sub, scope and role must be strings")
    email = claims.get("email")
    return Principal(sub, email if isinstance(email, str) else "", role, frozenset(scope.split()))


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying ``token``: ``stub.GetUser(req, metadata=bearer(token))``."""
    return (("authorization", f"Bearer {token}"),)


def authorizer_from_env(rules: Mapping[str, Rule], clients: Clients) -> Authorizer:
    """An authorizer verifying with the keys of the user service at ``USER_SERVICE_ADDR``
    (host:port), reached through ``clients`` (whose pingers then include it)."""
    stub = clients.stub("user", env_addr("USER_SERVICE_ADDR"), upb_grpc.UserServiceStub)
    return Authorizer(PublishedKeys.from_stub(stub), rules)


def methods(service: str, names: Iterable[str], rule: Rule) -> dict[str, Rule]:
    """``rule`` for each RPC ``name`` of ``service`` (``boutique.v1.UserService``)."""
    return {f"/{service}/{name}": rule for name in names}
