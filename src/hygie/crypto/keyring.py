"""Key-encryption keys (KEKs): versioned, loaded from a key file or an environment variable.

The keyring is a small JSON document::

    {"format": "hygie-keyring/1", "active": 2, "keys": {"1": "<base64>", "2": "<base64>"}}

Data keys are wrapped by the *active* KEK; older versions stay only to unwrap what they
wrapped until rotation has re-wrapped everything, then they are retired (removed).
The KEK never enters the database or a backup: the database holds only a *check value*
(an HMAC under the KEK) that proves a given keyring is the right one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from hygie.crypto.envelope import KEY_BYTES, DataKey, new_key_material
from hygie.errors import IntegrityFailure, KeyFailure

FORMAT = "hygie-keyring/1"


@dataclass(frozen=True)
class KeySource:
    """Where the keyring lives: ``file:/path/to/kek.json`` or ``env:VARIABLE``."""

    kind: str
    location: str

    @classmethod
    def parse(cls, text: str) -> KeySource:
        kind, sep, location = text.partition(":")
        if not sep or kind not in ("file", "env") or not location:
            raise KeyFailure("key source must be 'file:PATH' or 'env:VARIABLE'")
        return cls(kind, location)

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"

    def read(self) -> str:
        if self.kind == "env":
            value = os.environ.get(self.location)
            if not value:
                raise KeyFailure(f"environment variable {self.location} holds no keyring")
            return value
        try:
            return Path(self.location).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFailure(f"cannot read key file {self.location}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise KeyFailure(f"key file {self.location} is not a valid keyring (binary content: "
                             "encrypted or overwritten?)") from None

    def write(self, keyring: Keyring) -> None:
        """Write atomically with mode 0600 (file sources only)."""
        if self.kind != "file":
            raise KeyFailure("an env: key source cannot be written; use a file")
        write_secret_file(Path(self.location), keyring.serialize())


def write_secret_file(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Keyring:
    """Versioned KEKs. ``repr`` hides the keys."""

    __slots__ = ("_active", "_keys")

    def __init__(self, keys: dict[int, bytes], active: int) -> None:
        if active not in keys:
            raise KeyFailure("the keyring's active version has no key")
        for k in keys.values():
            if len(k) != KEY_BYTES:
                raise KeyFailure("a key-encryption key is 32 bytes")
        self._keys = dict(keys)
        self._active = active

    def __repr__(self) -> str:
        return f"Keyring(versions={sorted(self._keys)}, active={self._active})"

    @classmethod
    def generate(cls) -> Keyring:
        return cls({1: new_key_material()}, 1)

    @classmethod
    def parse(cls, text: str) -> Keyring:
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise ValueError
            keys = {int(v): base64.b64decode(k, validate=True) for v, k in doc["keys"].items()}
            return cls(keys, int(doc["active"]))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise KeyFailure("the keyring is not a valid Hygie keyring") from None

    @classmethod
    def load(cls, source: KeySource) -> Keyring:
        return cls.parse(source.read())

    def serialize(self) -> str:
        keys = {str(v): base64.b64encode(k).decode() for v, k in sorted(self._keys.items())}
        return json.dumps({"format": FORMAT, "active": self._active, "keys": keys}, indent=1) + "\n"

    @property
    def active_version(self) -> int:
        return self._active

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    def rotated(self) -> Keyring:
        """A keyring with a fresh active version; older versions kept until retired."""
        new = max(self._keys) + 1
        return Keyring({**self._keys, new: new_key_material()}, new)

    def retired(self, versions: set[int]) -> Keyring:
        """A keyring without ``versions`` (never the active one)."""
        if self._active in versions:
            raise KeyFailure("the active key-encryption key cannot be retired")
        return Keyring({v: k for v, k in self._keys.items() if v not in versions}, self._active)

    def check_value(self, version: int) -> str:
        """Public fingerprint proving possession of KEK ``version`` (stored in the database)."""
        return hmac.new(self._key(version), b"hygie-kek-check-v1", sha256).hexdigest()[:32]

    def has_version(self, version: int) -> bool:
        return version in self._keys

    def _key(self, version: int) -> bytes:
        try:
            return self._keys[version]
        except KeyError:
            raise KeyFailure(
                f"key-encryption key version {version} is not in the keyring") from None

    def wrap(self, material: bytes, context: bytes) -> tuple[int, bytes]:
        """Wrap a data key with the active KEK. Returns (kek_version, wrapped)."""
        return self._active, DataKey(self._keys[self._active]).seal(material, context)

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        try:
            return DataKey(self._key(version)).open(wrapped, context)
        except IntegrityFailure:
            raise KeyFailure("a data key could not be unwrapped: wrong key-encryption key "
                             "or damaged key table") from None
