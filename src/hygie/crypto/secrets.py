"""Secrets: hashing of passwords and client secrets, random tokens, constant-time compare."""

from __future__ import annotations

import hmac
import secrets
from functools import cache
from hashlib import sha256

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2id with the RFC 9106 "low memory" profile (argon2-cffi's default).
_HASHER = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash of a random value, verified against when the account or client is unknown, so an
    unknown name costs the same as a wrong secret (no timing oracle). Made on first use: every
    process importing ``hygie.crypto`` (each CLI command) would otherwise pay one argon2 hash."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def warm_up() -> None:
    """Make the dummy hash now (the server calls this at start-up, so that not even the first
    sign-in with an unknown name takes longer than the others)."""
    _dummy_hash()


def hash_secret(secret: str) -> str:
    """argon2id hash (PHC string) of a password or client secret."""
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """True when ``secret`` matches ``stored_hash``. ``None`` burns the same time and fails."""
    try:
        if stored_hash is None:
            _HASHER.verify(_dummy_hash(), secret)
            return False
        return _HASHER.verify(stored_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token with ``nbytes`` of entropy."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> bytes:
    """SHA-256 of a high-entropy token, for lookup. (Low-entropy secrets use hash_secret.)"""
    return sha256(token.encode()).digest()


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)
