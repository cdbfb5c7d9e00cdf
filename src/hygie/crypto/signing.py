"""Ed25519 signing: the one place in Hygie that touches Ed25519 primitives.

* :class:`SigningKey` — an Ed25519 private key (RFC 8032), held as its 32-byte seed inside
  ``cryptography``'s key object. ``repr`` never shows it. :meth:`SigningKey.save` writes it to
  a small text file with mode 0600, atomically; :meth:`SigningKey.load` reads it back.
* :func:`verify_ed25519` — check a signature against a raw 32-byte public key. It returns
  ``False`` on anything wrong (bad signature, malformed key or signature, wrong types of
  length) and never raises for untrusted input.

The key file format is one line of ASCII::

    hygie-ed25519-seed-v1:<standard base64 of the 32-byte seed>

Higher-level formats (the C2SP signed-note key strings of the ledger) live in
:mod:`hygie.ledger.note`; they call this module for every signature.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from hygie.errors import KeyFailure

__all__ = [
    "ED25519_PUBLIC_KEY_SIZE",
    "ED25519_SEED_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "SigningKey",
    "verify_ed25519",
]

ED25519_SEED_SIZE = 32
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

_FILE_PREFIX = "hygie-ed25519-seed-v1:"
# Enough for the prefix, 44 base64 characters and a newline; anything larger is not a key file.
_MAX_FILE_SIZE = 256


class SigningKey:
    """An Ed25519 signing key. ``repr`` shows the public key only."""

    __slots__ = ("_private", "_public")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        if not isinstance(private, Ed25519PrivateKey):
            raise TypeError("SigningKey wraps an Ed25519 private key")
        self._private = private
        self._public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key (from the operating system's CSPRNG)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key whose RFC 8032 private key (seed) is these 32 bytes."""
        if not isinstance(seed, bytes | bytearray | memoryview):
            raise TypeError("an Ed25519 seed is bytes")
        seed = bytes(seed)
        if len(seed) != ED25519_SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {ED25519_SEED_SIZE} bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    # -- use ----------------------------------------------------------------------------------

    def public_bytes(self) -> bytes:
        """The 32-byte public key (RFC 8032 encoding)."""
        return self._public

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``msg`` (deterministic, RFC 8032 §5.1.6)."""
        return self._private.sign(bytes(msg))

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True when ``sig`` is this key's signature of ``msg``."""
        return verify_ed25519(self._public, msg, sig)

    def secret_seed(self) -> bytes:
        """The 32-byte seed. SECRET: only for writing the key out in another key format."""
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    # -- storage ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the seed to ``path`` with mode 0600, atomically.

        The key is written to a temporary file in the same directory (created 0600), flushed
        to disk, then moved into place, so a crash leaves either no key file or a complete one.
        An existing file is never replaced unless ``overwrite`` is true: losing the ledger key
        would be an unplanned key rotation. Raises :class:`~hygie.errors.KeyFailure`.
        """
        target = Path(path)
        text = _FILE_PREFIX + base64.b64encode(self.secret_seed()).decode("ascii") + "\n"
        directory = target.parent
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise KeyFailure(f"cannot write key file {target}: {exc.strerror}") from None
        tmp = Path(tmp_name)
        try:
            try:
                os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit
                os.write(fd, text.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, target)
            else:
                _link_exclusive(tmp, target)
            _fsync_directory(directory)
        except FileExistsError:
            raise KeyFailure(f"key file {target} already exists; not overwriting it") from None
        except OSError as exc:
            raise KeyFailure(f"cannot write key file {target}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key written by :meth:`save`. Raises :class:`~hygie.errors.KeyFailure`."""
        source = Path(path)
        try:
            with source.open("rb") as handle:
                raw = handle.read(_MAX_FILE_SIZE + 1)
        except OSError as exc:
            raise KeyFailure(f"cannot read key file {source}: {exc.strerror}") from None
        # Messages below never quote the file's content: it is a secret.
        bad = KeyFailure(f"key file {source} is not a Hygie Ed25519 key file")
        if len(raw) > _MAX_FILE_SIZE:
            raise bad
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise bad from None
        if text.endswith("\n"):
            text = text[:-1]
        if not text.startswith(_FILE_PREFIX):
            raise bad
        encoded = text[len(_FILE_PREFIX) :]
        try:
            seed = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad from None
        if len(seed) != ED25519_SEED_SIZE or base64.b64encode(seed).decode() != encoded:
            raise bad
        return cls.from_seed(seed)

    # -- hygiene ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SigningKey(ed25519, public={self._public.hex()[:16]}…)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("SigningKey is not picklable (it holds a private key)")


def verify_ed25519(public_key: bytes, msg: bytes, sig: bytes) -> bool:
    """True when ``sig`` is a valid Ed25519 signature of ``msg`` by ``public_key`` (32 bytes).

    Never raises on untrusted input: a malformed key or signature is simply ``False``.
    """
    try:
        public_key = bytes(public_key)
        sig = bytes(sig)
        msg = bytes(msg)
    except (TypeError, ValueError):
        return False
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE or len(sig) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def _link_exclusive(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` atomically, failing if ``target`` exists."""
    try:
        os.link(tmp, target)  # atomic, and fails with FileExistsError if target exists
    except FileExistsError:
        raise
    except OSError as exc:
        # Filesystems without hard links: fall back to check-then-rename (racy, but rare).
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if target.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.replace(tmp, target)


def _fsync_directory(directory: Path) -> None:
    """Flush the directory entry of a rename (best effort where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
