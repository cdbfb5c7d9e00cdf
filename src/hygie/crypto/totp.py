"""Time-based one-time passwords: TOTP (RFC 6238) over HOTP (RFC 4226).

Hygie's second factor: SHA-1, 6 digits, 30-second steps, one step of tolerance either side
(clock drift). The code arithmetic is pyotp's; the rules around it are Hygie's:

- a code is checked against each step of the window with a constant-time comparison;
- a code is accepted only for a time step *later* than the last one accepted for the account
  (the caller stores the returned step), so a code cannot be replayed within its window
  (RFC 6238 section 5.2);
- the secret is 160 bits (RFC 4226 section 4 recommends 160) from the OS CSPRNG.

``totp_at`` and ``hotp_at`` also take other digests and lengths, for the RFC test vectors.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pyotp

from hygie.crypto.secrets import constant_time_equal

SECRET_BYTES = 20  # 160 bits
STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of the current one
ISSUER = "Hygie"

_DIGESTS: dict[str, Callable[..., Any]] = {
    "SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512,
}


def new_totp_secret() -> bytes:
    """A fresh 160-bit TOTP secret."""
    return os.urandom(SECRET_BYTES)


def b32(secret: bytes) -> str:
    """The base32 form authenticator apps expect (no padding, as in otpauth URIs)."""
    return base64.b32encode(secret).decode().rstrip("=")


def _digest(algorithm: str) -> Callable[..., Any]:
    try:
        return _DIGESTS[algorithm.upper()]
    except KeyError:
        raise ValueError(f"unsupported TOTP algorithm {algorithm!r}") from None


def hotp_at(secret: bytes, counter: int, *, digits: int = DIGITS,
            algorithm: str = "SHA1") -> str:
    """HOTP value of ``counter`` (RFC 4226)."""
    return pyotp.HOTP(b32(secret), digits=digits, digest=_digest(algorithm)).at(counter)


def time_step(unix_time: float, *, step: int = STEP_SECONDS) -> int:
    return int(unix_time // step)


def totp_at(secret: bytes, unix_time: float, *, digits: int = DIGITS, step: int = STEP_SECONDS,
            algorithm: str = "SHA1") -> str:
    """TOTP value at ``unix_time`` (RFC 6238, T0 = 0)."""
    return hotp_at(secret, time_step(unix_time, step=step), digits=digits, algorithm=algorithm)


def verify_totp(secret: bytes, code: str, *, unix_time: float, last_step: int | None,
                window: int = WINDOW) -> int | None:
    """The time step ``code`` is valid for, or None.

    Steps at or before ``last_step`` (the last one accepted for this account) never match:
    a code, once used, cannot be used again, and neither can an older one.
    """
    code = code.strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = time_step(unix_time)
    matched: int | None = None
    for candidate in range(now - window, now + window + 1):
        # Every candidate is computed and compared, whatever matched, so the time taken
        # does not depend on which step (if any) matched.
        ok = constant_time_equal(hotp_at(secret, candidate), code)
        if ok and matched is None and (last_step is None or candidate > last_step):
            matched = candidate
    return matched


def provisioning_uri(secret: bytes, *, account: str, issuer: str = ISSUER) -> str:
    """``otpauth://totp/Issuer:account?secret=...&issuer=...`` (Key Uri Format)."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode({"secret": b32(secret), "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": STEP_SECONDS}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"
