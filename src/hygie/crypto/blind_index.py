"""Blind indexes: search encrypted data without storing the searched values.

A blind index is a keyed HMAC-SHA-256 of a normalised value, truncated to 16 bytes. The key
never leaves memory; the database holds only the tags. Equal values give equal tags (that is
what makes search work, and it is the one thing a reader of the database learns: which rows
share a value, not what the value is).
"""

from __future__ import annotations

import hmac
from hashlib import sha256

TAG_BYTES = 16


class BlindIndexer:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a blind-index key is at least 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "BlindIndexer(<hidden>)"

    def tag(self, domain: str, value: str) -> bytes:
        """Tag of ``value`` in ``domain`` (e.g. ``"Patient|family"``); domains never collide."""
        msg = domain.encode() + b"\x00" + value.encode()
        return hmac.new(self._key, msg, sha256).digest()[:TAG_BYTES]
