"""C2SP signed notes (https://c2sp.org/signed-note), the envelope of Hygie's checkpoints.

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines ``— <key name> <base64(4-byte key id || signature)>`` (U+2014 EM DASH, space)::

    If you think cryptography is the answer to your problem,
    then you don't know what your problem is.

    — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp...

(signature shortened here: it is 92 base64 characters).

The signature covers the note *text*: everything before the last blank line, including the
text's final newline. This is the format of golang.org/x/mod/sumdb/note, interoperable with
its keys and with the transparency-log ecosystem (witnesses, sum.golang.org, Sigsum, ...).

Only Ed25519 (signature type 0x01) is supported, with the key id of the spec:
``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` as a big-endian uint32.
Key strings:

* verifier key: ``<name>+<8 hex digits key id>+<base64(0x01 || public key)>`` (public);
* signing key: ``PRIVATE+KEY+<name>+<8 hex digits key id>+<base64(0x01 || seed)>`` (SECRET).

:func:`open_note` ignores signatures by unknown keys, fails on a bad signature by a known key
and requires at least one verified signature. Everything malformed raises :class:`NoteError`
(a :class:`ValueError`); its subclasses :class:`UnverifiedNoteError` and
:class:`InvalidSignatureError` say which way a well-formed note failed.

Deliberately stricter than the Go reference in two ways, neither of which rejects anything a
conforming signer produces: base64 must be canonical (the encoder's output; no alternative
trailing bits), and key names may not contain control characters. Verifiers given twice with
the same key are merged instead of being reported as ambiguous.

Ed25519 itself is in :mod:`hygie.crypto.signing`; this module only formats and parses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from hygie.crypto.signing import ED25519_PUBLIC_KEY_SIZE, SigningKey, verify_ed25519

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "InvalidSignatureError",
    "Note",
    "NoteError",
    "Signature",
    "Signer",
    "UnverifiedNoteError",
    "Verifier",
    "is_valid_key_name",
    "key_id",
    "open_note",
    "sign_note",
]

ALG_ED25519 = 0x01
"""Signature type identifier byte of Ed25519 in the signed-note spec."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the Go reference's limit; the spec asks ≥ 16)."""

_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")

# Unicode White_Space (what Go's unicode.IsSpace tests): no key name may contain these.
_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


class NoteError(ValueError):
    """A signed note, or a key string, that is malformed or does not verify."""


class UnverifiedNoteError(NoteError):
    """A well-formed note with no signature by any known key. ``note`` holds what was parsed."""

    def __init__(self, message: str, note: Note) -> None:
        super().__init__(message)
        self.note = note


class InvalidSignatureError(NoteError):
    """A signature by a known key (``name``, ``key_id``) that does not verify."""

    def __init__(self, name: str, key_id: int) -> None:
        super().__init__(f"invalid signature for key {name}+{key_id:08x}")
        self.name = name
        self.key_id = key_id


# --------------------------------------------------------------------------------------------
# Names, key ids, base64
# --------------------------------------------------------------------------------------------


def is_valid_key_name(name: object) -> bool:
    """A key name is non-empty UTF-8 without Unicode spaces, '+' or control characters."""
    if not isinstance(name, str) or not name or "+" in name:
        return False
    if any(ch in _WHITE_SPACE or ch < " " for ch in name):
        return False
    return _is_utf8(name)


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> int:
    """``SHA-256(name || 0x0A || alg || public key)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4, padded, canonical), or None."""
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


class Verifier:
    """An Ed25519 verifier key with its name; ``key_id`` is derived, never taken on trust."""

    __slots__ = ("_key_id", "_name", "_public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        if not is_valid_key_name(name):
            raise NoteError("invalid key name (empty, or contains a space, '+' or a control char)")
        public_key = bytes(public_key)
        if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
        self._name = name
        self._public_key = public_key
        self._key_id = key_id(name, public_key)

    @classmethod
    def from_verifier_key(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<8 hex digits key id>+<base64(0x01 || public key)>``."""
        if not isinstance(vkey, str):
            raise NoteError("a verifier key is a string")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise NoteError("malformed verifier key: expected <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        if not is_valid_key_name(name):
            raise NoteError("malformed verifier key: invalid key name")
        if not _HEX8.fullmatch(hex_id):
            raise NoteError("malformed verifier key: the key id is not 8 hex digits")
        raw = _b64decode(encoded)
        if not raw:
            raise NoteError("malformed verifier key: the key is not canonical base64")
        if raw[0] != ALG_ED25519:
            raise NoteError(f"unsupported verifier key algorithm 0x{raw[0]:02x} (only Ed25519)")
        if len(raw) != 1 + ED25519_PUBLIC_KEY_SIZE:
            raise NoteError("malformed verifier key: an Ed25519 public key is 32 bytes")
        verifier = cls(name, raw[1:])
        if verifier.key_id != int(hex_id, 16):
            raise NoteError("verifier key id does not match the key (wrong name or key)")
        return verifier

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def verifier_key(self) -> str:
        """``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self._public_key)
        return f"{self._name}+{self._key_id:08x}+{encoded}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True when ``sig`` (raw signature, without key id) is this key's signature of msg."""
        return verify_ed25519(self._public_key, msg, sig)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return self._name == other._name and self._public_key == other._public_key

    def __hash__(self) -> int:
        return hash((self._name, self._public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.verifier_key()!r})"


class Signer:
    """A named Ed25519 signing key. ``repr`` shows the verifier key only."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, key: SigningKey) -> None:
        if not isinstance(key, SigningKey):
            raise TypeError("a Signer needs a hygie.crypto.signing.SigningKey")
        self._verifier = Verifier(name, key.public_bytes())  # validates the name
        self._key = key

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key under ``name``."""
        return cls(name, SigningKey.generate())

    @classmethod
    def from_signing_key_string(cls, skey: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``.

        Error messages never quote the input: it is a secret.
        """
        if not isinstance(skey, str):
            raise NoteError("a signing key is a string")
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError(
                "malformed signing key: expected PRIVATE+KEY+<name>+<hex key id>+<base64 key>"
            )
        _, _, name, hex_id, encoded = parts
        if not is_valid_key_name(name):
            raise NoteError("malformed signing key: invalid key name")
        if not _HEX8.fullmatch(hex_id):
            raise NoteError("malformed signing key: the key id is not 8 hex digits")
        raw = _b64decode(encoded)
        if not raw:
            raise NoteError("malformed signing key: the key is not canonical base64")
        if raw[0] != ALG_ED25519:
            raise NoteError(f"unsupported signing key algorithm 0x{raw[0]:02x} (only Ed25519)")
        if len(raw) != 1 + 32:
            raise NoteError("malformed signing key: an Ed25519 seed is 32 bytes")
        signer = cls(name, SigningKey.from_seed(raw[1:]))
        # The id is a hash of the *public* key: nothing secret is compared here.
        if signer.key_id != int(hex_id, 16):
            raise NoteError("signing key id does not match the key (wrong name or key)")
        return signer

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    @property
    def signing_key(self) -> SigningKey:
        return self._key

    def verifier(self) -> Verifier:
        return self._verifier

    def verifier_key(self) -> str:
        """The public ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        return self._verifier.verifier_key()

    def signing_key_string(self) -> str:
        """The SECRET ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`` (Go's form)."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self._key.secret_seed())
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"

    def sign(self, msg: bytes) -> bytes:
        """Raw Ed25519 signature of ``msg`` (without the key id)."""
        return self._key.sign(msg)

    def __repr__(self) -> str:
        return f"Signer({self.verifier_key()!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Signer is not picklable (it holds a private key)")


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, key id and the base64 of ``key id || signature``."""

    name: str
    key_id: int
    base64: str

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {self.base64}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text and the signatures that verified or were by unknown keys."""

    text: str
    verified_signatures: tuple[Signature, ...]
    unverified_signatures: tuple[Signature, ...]


def _check_text_chars(text: str, what: str) -> None:
    """Valid UTF-8, no ASCII control characters other than newline."""
    for ch in text:
        if ch < " " and ch != "\n":
            raise NoteError(f"malformed {what}: control character U+{ord(ch):04X}")
    if not _is_utf8(text):
        raise NoteError(f"malformed {what}: not valid UTF-8")


def sign_note(text: str, signers: Signer | Iterable[Signer]) -> str:
    """Sign ``text`` (non-empty, ending in a newline) and return the signed note.

    Signature lines follow the order of ``signers``. Two signers with the same name and key id
    are refused (the second would be ignored by every verifier).
    """
    if not isinstance(text, str):
        raise TypeError("note text is a str")
    if not text.endswith("\n"):
        raise NoteError("malformed note text: it must end with a newline")
    _check_text_chars(text, "note text")
    signer_list = [signers] if isinstance(signers, Signer) else list(signers)
    if not signer_list:
        raise NoteError("a note needs at least one signer")
    if len(signer_list) > MAX_SIGNATURES:
        raise NoteError(f"too many signers (at most {MAX_SIGNATURES})")
    msg = text.encode("utf-8")
    seen: set[tuple[str, int]] = set()
    lines = []
    for signer in signer_list:
        if not isinstance(signer, Signer):
            raise TypeError("signers must be hygie.ledger.note.Signer")
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise NoteError(f"duplicate signer {signer.name}+{signer.key_id:08x}")
        seen.add(ident)
        sig = signer.key_id.to_bytes(4, "big") + signer.sign(msg)
        lines.append(Signature(signer.name, signer.key_id, _b64encode(sig)).line())
    return text + "\n" + "".join(lines)


def _verifier_map(
    verifiers: Verifier | Iterable[Verifier],
) -> tuple[dict[tuple[str, int], Verifier], set[tuple[str, int]]]:
    """Index verifiers by (name, key id); a pair given with two different keys is ambiguous."""
    known: dict[tuple[str, int], Verifier] = {}
    ambiguous: set[tuple[str, int]] = set()
    for verifier in [verifiers] if isinstance(verifiers, Verifier) else verifiers:
        if not isinstance(verifier, Verifier):
            raise TypeError("verifiers must be hygie.ledger.note.Verifier")
        ident = (verifier.name, verifier.key_id)
        if ident in known and known[ident] != verifier:
            ambiguous.add(ident)
        known.setdefault(ident, verifier)
    return known, ambiguous


def open_note(msg: str | bytes, verifiers: Verifier | Iterable[Verifier]) -> Note:
    """Parse a signed note and verify its signatures by the known ``verifiers``.

    Returns the :class:`Note` when at least one signature by a known key verifies and no
    signature by a known key fails. Raises :class:`NoteError` otherwise: malformed note,
    :class:`InvalidSignatureError` (a known key's signature is wrong), or
    :class:`UnverifiedNoteError` (no signature by a known key).
    """
    if isinstance(msg, bytes | bytearray | memoryview):
        try:
            msg = bytes(msg).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("malformed note: not valid UTF-8") from None
    if not isinstance(msg, str):
        raise TypeError("a signed note is str or bytes")
    known, ambiguous = _verifier_map(verifiers)
    _check_text_chars(msg, "note")

    split = msg.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise NoteError("malformed note: no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError("malformed note: it must end with a newline")

    message = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen_known: set[tuple[str, int]] = set()
    seen_unknown: set[str] = set()
    for count, line in enumerate(block[:-1].split("\n"), start=1):
        if count > MAX_SIGNATURES:
            raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"malformed note: signature line {count} does not start with '— '")
        name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise NoteError(f"malformed note: invalid key name on signature line {count}")
        raw = _b64decode(encoded)
        if raw is None or len(raw) < 5:
            raise NoteError(f"malformed note: bad signature encoding on line {count}")
        ident = (name, int.from_bytes(raw[:4], "big"))
        signature = Signature(name, ident[1], encoded)

        verifier = known.get(ident)
        if verifier is None:
            if line not in seen_unknown:  # drop repeated identical unknown lines
                seen_unknown.add(line)
                unverified.append(signature)
            continue
        if ident in ambiguous:  # two different keys with the same name and id: trust neither
            raise NoteError(f"ambiguous key {name}+{ident[1]:08x}: two different keys given")
        if ident in seen_known:  # one verdict per known key: the first line
            continue
        seen_known.add(ident)
        if not verifier.verify(message, raw[4:]):
            raise InvalidSignatureError(name, ident[1])
        verified.append(signature)

    note = Note(text, tuple(verified), tuple(unverified))
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in unverified)
        raise UnverifiedNoteError(
            f"note has no verifiable signatures (signed only by unknown keys: {names})", note
        )
    return note
