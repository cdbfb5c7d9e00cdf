"""C2SP transparency-log checkpoints (https://c2sp.org/tlog-checkpoint): Hygie's signed tree heads.

A checkpoint is the text of a :mod:`signed note <hygie.ledger.note>`::

    <origin>
    <tree size, decimal>
    <root hash, standard base64>
    [extension lines]

e.g. ``hygie.example/ledger/<instance-id>\\n1024\\n<44 base64 chars>\\n``. The root hash is the
RFC 6962 / RFC 9162 Merkle Tree Hash of :mod:`hygie.ledger.merkle` (SHA-256, 32 bytes).

Parsing is strict (:meth:`Checkpoint.parse`): a non-empty origin, a size in canonical decimal
(no sign, no leading zeros except ``0`` itself, at most 2**64 - 1), a root hash in canonical
base64 of exactly 32 bytes, then optional extension lines, each non-empty, and a final
newline. Any failure raises :class:`CheckpointError` (a :class:`~hygie.ledger.note.NoteError`,
so one ``except NoteError`` covers a whole signed checkpoint).

The spec recommends that the log's key name equal the origin; :func:`open_checkpoint` does not
require it (sum.golang.org signs origin ``go.sum database tree`` with key ``sum.golang.org``)
but checks the origin against the one the caller expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hygie.ledger.merkle import HASH_SIZE
from hygie.ledger.note import (
    NoteError,
    Signer,
    Verifier,
    _b64decode,
    _b64encode,
    _is_utf8,
    open_note,
    sign_note,
)

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CheckpointError",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size accepted (an unsigned 64-bit integer, as in the Go implementations)."""

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")  # ASCII digits only (\d would match other scripts)


class CheckpointError(NoteError):
    """A checkpoint that is malformed, or not the one expected (origin)."""


def _check_line(value: object, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise CheckpointError(f"checkpoint {what} must be a str")
    if not value and not allow_empty:
        raise CheckpointError(f"checkpoint {what} is empty")
    for ch in value:
        if ch < " ":
            raise CheckpointError(f"checkpoint {what} contains a control character U+{ord(ch):04X}")
    if not _is_utf8(value):
        raise CheckpointError(f"checkpoint {what} is not valid UTF-8")
    return value


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError("checkpoint size must be an int")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError("checkpoint size out of range (0 to 2**64 - 1)")
        if not isinstance(self.root_hash, bytes | bytearray | memoryview):
            raise CheckpointError("checkpoint root hash must be bytes")
        root = bytes(self.root_hash)
        if len(root) != HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash must be {HASH_SIZE} bytes, not {len(root)}"
            )
        object.__setattr__(self, "root_hash", root)
        if isinstance(self.extensions, str):
            raise CheckpointError("checkpoint extensions are a sequence of lines, not one str")
        extensions = tuple(self.extensions)
        for line in extensions:
            _check_line(line, "extension line")
        object.__setattr__(self, "extensions", extensions)

    def format(self) -> str:
        """The note text: ``<origin>\\n<size>\\n<base64 root>\\n`` then extension lines."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str | bytes) -> Checkpoint:
        """Parse checkpoint note text, str or UTF-8 bytes (strictly; see the module docstring)."""
        if isinstance(text, bytes | bytearray | memoryview):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError("malformed checkpoint: not valid UTF-8") from None
        if not isinstance(text, str):
            raise TypeError("checkpoint text is str or bytes")
        if not text.endswith("\n"):
            raise CheckpointError("malformed checkpoint: it must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("malformed checkpoint: fewer than three lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE.fullmatch(size_text):
            raise CheckpointError(
                "malformed checkpoint: the tree size is not a canonical decimal number"
            )
        size = int(size_text)
        if size > MAX_TREE_SIZE:
            raise CheckpointError("malformed checkpoint: the tree size is larger than 2**64 - 1")
        root = _b64decode(root_text)
        if root is None:
            raise CheckpointError("malformed checkpoint: the root hash is not canonical base64")
        if len(root) != HASH_SIZE:
            raise CheckpointError(
                f"malformed checkpoint: the root hash is {len(root)} bytes, not {HASH_SIZE}"
            )
        try:
            return cls(origin, size, root, tuple(extensions))
        except CheckpointError as exc:
            raise CheckpointError(f"malformed checkpoint: {exc}") from None


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """Same as :meth:`Checkpoint.parse`."""
    return Checkpoint.parse(text)


def sign_checkpoint(cp: Checkpoint, signer: Signer | Iterable[Signer]) -> str:
    """The signed note of ``cp`` (the log's signer first, if several)."""
    if not isinstance(cp, Checkpoint):
        raise TypeError("sign_checkpoint takes a Checkpoint")
    return sign_note(cp.format(), signer)


def open_checkpoint(msg: str | bytes, verifier: Verifier, origin: str) -> Checkpoint:
    """Verify a signed checkpoint by the log key ``verifier`` and check its ``origin``.

    Signatures by other keys (witness cosignatures, a rotated key) are ignored. Raises
    :class:`~hygie.ledger.note.NoteError` (bad note or signature) or :class:`CheckpointError`
    (malformed checkpoint text, or an origin other than ``origin``).
    """
    if not isinstance(verifier, Verifier):
        raise TypeError("open_checkpoint takes one Verifier: the log's key")
    if not isinstance(origin, str) or not origin:
        raise TypeError("open_checkpoint needs the expected origin (a non-empty str)")
    note = open_note(msg, verifier)
    cp = Checkpoint.parse(note.text)
    if cp.origin != origin:
        raise CheckpointError(
            f"checkpoint origin {cp.origin[:200]!r} is not the expected origin {origin!r}"
        )
    return cp
