"""The user service's signing keys: Ed25519 private keys, one PEM file each, in a directory.

A key's id (``kid``) is its file's name without ``.pem``; the last by name signs,
and all are published, so a key is rotated by adding a file named after the
others (a token signed by an older key stays valid until it expires) and
retired by removing it. An empty directory gets one key at start, written
readable by its owner only (0600): the demo's first start. In Kubernetes the
directory is a mounted Secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from clue import log
from reference_services.common.auth import ALGORITHM
from reference_services.protos.boutique.v1 import user_pb2 as upb

KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a key file's name (without ``.pem``) may be."""


class KeyFileError(OSError):
    """The key directory cannot give a usable key (its message names the file); the
    service does not start."""


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair and its id."""

    kid: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def jwk(self) -> upb.JWK:
        """The public half as a JSON Web Key (RFC 8037)."""
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return upb.JWK(kid=self.kid, kty="OKP", crv="Ed25519", x=x, alg=ALGORITHM, use="sig")


class KeyRing:
    """The keys of a directory: the last by id signs, every one verifies."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise KeyFileError("a key ring needs at least one key")
        self.keys = sorted(keys, key=lambda k: k.kid)
        self._public = {k.kid: k.public for k in self.keys}

    @property
    def signer(self) -> SigningKey:
        return self.keys[-1]

    def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` as a JWT signed by the newest key, its id in the header."""
        return jwt.encode(
            claims, self.signer.private, algorithm=ALGORITHM, headers={"kid": self.signer.kid}
        )

    def jwks(self) -> upb.JWKS:
        """Every public key, as published by GetSigningKeys."""
        return upb.JWKS(keys=[k.jwk() for k in self.keys])

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key ``kid`` (the user service verifies its own tokens with these)."""
        return self._public.get(kid)

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        """The keys of ``directory``, one made first if it holds none."""
        files = sorted(directory.glob("*.pem")) if directory.is_dir() else []
        if not files:
            try:
                files = [generate(directory)]
            except OSError as exc:  # e.g. an empty read-only mount: say what is missing
                raise KeyFileError(
                    f"{directory} holds no signing key (*.pem) and none can be written"
                    f" there: {exc.strerror or exc}"
                ) from None
        return cls([read(path) for path in files])


def generate(directory: Path, kid: str | None = None) -> Path:
    """Write a new key into ``directory`` (made 0700 if missing), readable by its owner
    only; its path. The id defaults to the time, so that a later key sorts last."""
    kid = kid or dt.datetime.now(dt.UTC).strftime("k%Y%m%dT%H%M%SZ")
    if not KID.fullmatch(kid):
        raise KeyFileError(f"key id {kid[:40]!r}: letters, digits, '.', '_' and '-' only")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{kid}.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: never overwrite a key; the mode is set at creation, never readable by others
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    log.print("signing key generated", kid=kid, path=str(path))
    return path


def read(path: Path) -> SigningKey:
    """The Ed25519 key in the PEM file ``path``."""
    kid = path.stem
    if not KID.fullmatch(kid):
        raise KeyFileError(f"{path}: a key file's name must be letters, digits, '.', '_' or '-'")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not path.is_symlink():
        log.warn("a signing key is readable by others than its owner", path=str(path))
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise KeyFileError(f"{path}: not a readable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return SigningKey(kid, key)
