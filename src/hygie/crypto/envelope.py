"""Envelope encryption: AES-256-GCM data keys (DEKs).

A sealed blob is ``version byte (0x01) || 12-byte random nonce || ciphertext || 16-byte tag``.
The associated data binds the blob to where it belongs (tenant, type, id, version): a blob
moved to another row does not open. Every failure to open — wrong key, altered byte, wrong
associated data, truncated blob — is the same :class:`IntegrityFailure`, so a caller cannot
learn which check failed.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hygie.errors import IntegrityFailure

_FORMAT = b"\x01"
_NONCE = 12
KEY_BYTES = 32


def new_key_material() -> bytes:
    """Fresh 256-bit key material from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


class DataKey:
    """One AES-256-GCM key. Its ``repr`` never shows the key."""

    __slots__ = ("_aead",)

    def __init__(self, material: bytes) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes")
        self._aead = AESGCM(material)

    def __repr__(self) -> str:
        return "DataKey(<hidden>)"

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, blob: bytes, associated_data: bytes) -> bytes:
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _FORMAT:
            raise IntegrityFailure("stored data failed its integrity check")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], associated_data)
        except InvalidTag:
            raise IntegrityFailure("stored data failed its integrity check") from None
