"""Ed25519 keys (hygie.crypto.signing) and C2SP signed notes (hygie.ledger.note).

Interoperability is checked against the vectors of the Go reference implementation
(golang.org/x/mod/sumdb/note) and of transparency-dev/formats, copied into
tests/fixtures/note (see PROVENANCE.md there). Ed25519 is deterministic, so signing the Go
vector text with the Go vector key must give the Go vector signature byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hygie.ledger.note as note_module
from hygie.crypto.signing import SigningKey, verify_ed25519
from hygie.errors import KeyFailure
from hygie.ledger.note import (
    MAX_SIGNATURES,
    InvalidSignatureError,
    Note,
    NoteError,
    Signature,
    Signer,
    UnverifiedNoteError,
    Verifier,
    is_valid_key_name,
    key_id,
    open_note,
    sign_note,
)

FIXTURES = Path(__file__).parent / "fixtures" / "note"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "note_vectors.json").read_text("utf-8"))
GO = VECTORS["golang_mod_sumdb_note"]
PETER = GO["peter"]
ENOCH = GO["enoch"]
TEXT: str = GO["text"]
PETER_SIG: str = PETER["signature_line"]
ENOCH_SIG: str = ENOCH["signature_line"]

PETER_V = Verifier.from_verifier_key(PETER["verifier_key"])
ENOCH_V = Verifier.from_verifier_key(ENOCH["verifier_key"])
PETER_S = Signer.from_signing_key_string(PETER["signing_key"])

# Fixed random keys for the property tests (generated once: keeps hypothesis fast).
ALICE = Signer.generate("hygie.example/ledger/alice")
BOB = Signer.generate("witness.example/bob")


# --------------------------------------------------------------------------------------------
# hygie.crypto.signing
# --------------------------------------------------------------------------------------------


def _peter_seed() -> bytes:
    return base64.b64decode(PETER["signing_key"].split("+", 4)[4])[1:]


def test_from_seed_gives_the_go_vector_public_key() -> None:
    key = SigningKey.from_seed(_peter_seed())
    assert key.public_bytes() == PETER_V.public_key
    assert key.secret_seed() == _peter_seed()


def test_sign_and_verify() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"hello")
    assert len(sig) == 64
    assert key.sign(b"hello") == sig  # deterministic
    assert verify_ed25519(key.public_bytes(), b"hello", sig)
    assert key.verify(b"hello", sig)
    assert not verify_ed25519(key.public_bytes(), b"hellO", sig)
    bad = bytearray(sig)
    bad[0] ^= 1
    assert not verify_ed25519(key.public_bytes(), b"hello", bytes(bad))
    assert not verify_ed25519(SigningKey.generate().public_bytes(), b"hello", sig)


@pytest.mark.parametrize(
    ("public_key", "msg", "sig"),
    [
        (b"", b"m", bytes(64)),
        (bytes(31), b"m", bytes(64)),
        (bytes(33), b"m", bytes(64)),
        (bytes(32), b"m", bytes(63)),
        (bytes(32), b"m", bytes(65)),
        (b"\xff" * 32, b"m", bytes(64)),  # not a curve point
        ("not bytes", b"m", bytes(64)),
        (bytes(32), None, bytes(64)),
        (bytes(32), b"m", 12),
    ],
)
def test_verify_ed25519_never_raises(public_key: Any, msg: Any, sig: Any) -> None:
    assert verify_ed25519(public_key, msg, sig) is False


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=20), st.binary(max_size=70))
def test_verify_ed25519_random_input_is_false(public_key: bytes, msg: bytes, sig: bytes) -> None:
    assert verify_ed25519(public_key, msg, sig) is False


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_from_seed_rejects_wrong_length(seed: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey.from_seed(seed)


def test_repr_and_pickle_hide_the_key() -> None:
    key = SigningKey.from_seed(_peter_seed())
    seed = _peter_seed()
    for shown in (repr(key), str(key), repr(PETER_S), str(PETER_S)):
        assert seed.hex() not in shown
        assert base64.b64encode(seed).decode() not in shown
        assert PETER["signing_key"].split("+")[-1] not in shown
    assert "PeterNeumann+c74f20a3" in repr(PETER_S)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(PETER_S)


def test_save_and_load(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "ledger.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["ledger.key"]  # no temporary file left behind
    text = path.read_text("ascii")
    assert text.startswith("hygie-ed25519-seed-v1:") and text.endswith("\n")
    loaded = SigningKey.load(path)
    assert loaded.public_bytes() == key.public_bytes()
    assert loaded.secret_seed() == key.secret_seed()


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    first, second = SigningKey.generate(), SigningKey.generate()
    first.save(path)
    with pytest.raises(KeyFailure, match="already exists"):
        second.save(path)
    assert SigningKey.load(path).public_bytes() == first.public_bytes()
    second.save(path, overwrite=True)
    assert SigningKey.load(path).public_bytes() == second.public_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["ledger.key"]


def test_save_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(KeyFailure, match="cannot write"):
        SigningKey.generate().save(tmp_path / "missing" / "ledger.key")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hygie-ed25519-seed-v1:\n",
        b"hygie-ed25519-seed-v1:" + base64.b64encode(bytes(31)) + b"\n",
        b"hygie-ed25519-seed-v1:" + base64.b64encode(bytes(33)) + b"\n",
        b"hygie-ed25519-seed-v2:" + base64.b64encode(bytes(32)) + b"\n",
        b"hygie-ed25519-seed-v1:" + base64.b64encode(bytes(32)).rstrip(b"=") + b"\n",
        b"hygie-ed25519-seed-v1:" + base64.b64encode(bytes(32))[:-2] + b"B=\n",  # not canonical
        b"hygie-ed25519-seed-v1: " + base64.b64encode(bytes(32)) + b"\n",
        b"hygie-ed25519-seed-v1:" + base64.b64encode(bytes(32)) + b"\n\n",
        b"\xff" * 10,
        b"x" * 10_000,
    ],
)
def test_load_rejects_bad_files_without_quoting_them(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.key"
    path.write_bytes(content)
    with pytest.raises(KeyFailure) as info:
        SigningKey.load(path)
    assert "not a Hygie Ed25519 key file" in str(info.value)
    assert "AAAA" not in str(info.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFailure, match="cannot read"):
        SigningKey.load(tmp_path / "nope.key")


# --------------------------------------------------------------------------------------------
# Keys in signed-note form (Go vectors)
# --------------------------------------------------------------------------------------------


def test_go_verifier_key() -> None:
    assert PETER_V.name == "PeterNeumann"
    assert PETER_V.key_id == int(PETER["key_id"], 16) == 0xC74F20A3
    assert PETER_V.verifier_key() == PETER["verifier_key"]
    assert key_id("PeterNeumann", PETER_V.public_key) == 0xC74F20A3
    assert ENOCH_V.key_id == 0xAF0CFE78


def test_go_signing_key_round_trips() -> None:
    assert PETER_S.name == "PeterNeumann"
    assert PETER_S.key_id == 0xC74F20A3
    assert PETER_S.verifier_key() == PETER["verifier_key"]
    assert PETER_S.verifier() == PETER_V
    assert PETER_S.signing_key_string() == PETER["signing_key"]


@pytest.mark.parametrize("pair", VECTORS["transparency_dev_formats_keys"]["pairs"])
def test_transparency_dev_key_pairs(pair: dict[str, str]) -> None:
    signer = Signer.from_signing_key_string(pair["signing_key"])
    assert signer.signing_key_string() == pair["signing_key"]
    assert signer.verifier_key() == pair["verifier_key"]
    assert Verifier.from_verifier_key(pair["verifier_key"]) == signer.verifier()


def test_generated_keys_round_trip() -> None:
    signer = Signer.generate("hygie.example/ledger/0f3c")
    again = Signer.from_signing_key_string(signer.signing_key_string())
    assert again.verifier_key() == signer.verifier_key()
    verifier = Verifier.from_verifier_key(signer.verifier_key())
    assert verifier == signer.verifier()
    assert verifier.verify(b"x", signer.sign(b"x"))


def _manglings(key: str) -> list[str]:
    """Go's TestNewVerifier/TestNewSigner: every proper substring, every byte incremented."""
    out = [key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)]
    out.remove(key)
    out += [key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))]
    return out


def test_mangled_verifier_keys_are_rejected() -> None:
    for bad in _manglings(PETER["verifier_key"]):
        with pytest.raises(NoteError):
            Verifier.from_verifier_key(bad)


def test_mangled_signing_keys_are_rejected() -> None:
    for bad in _manglings(PETER["signing_key"]):
        with pytest.raises(NoteError) as info:
            Signer.from_signing_key_string(bad)
        assert PETER["signing_key"].split("+")[-1] not in str(info.value)


@pytest.mark.parametrize("bad", GO["bad_verifier_keys"])
def test_go_bad_verifier_keys(bad: str) -> None:
    with pytest.raises(NoteError):
        Verifier.from_verifier_key(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f_20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+ c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # base64url
        "PeterNeumann+c74f20a3+",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    ],
)
def test_bad_verifier_key_strings(bad: str) -> None:
    with pytest.raises(NoteError):
        Verifier.from_verifier_key(bad)


def test_uppercase_hex_key_id_is_accepted_like_go() -> None:
    name, hex_id, key = PETER["verifier_key"].split("+", 2)
    assert Verifier.from_verifier_key(f"{name}+{hex_id.upper()}+{key}") == PETER_V


def test_a_verifier_key_is_not_a_signing_key() -> None:
    with pytest.raises(NoteError):
        Signer.from_signing_key_string(PETER["verifier_key"])


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("PeterNeumann", True),
        ("hygie.example/ledger/0f3c", True),
        ("Señor-1", True),
        ("", False),
        ("a+b", False),
        ("bad name", False),
        ("tab\tname", False),
        ("nbsp\u00a0name", False),
        ("ideographic\u3000space", False),
        ("line\u2028sep", False),
        ("ctrl\x01", False),
        ("surrogate\ud800", False),
    ],
)
def test_key_names(name: str, valid: bool) -> None:
    assert is_valid_key_name(name) is valid
    if not valid:
        with pytest.raises(NoteError):
            Signer(name, SigningKey.generate())


# --------------------------------------------------------------------------------------------
# Signing and opening notes (Go vectors)
# --------------------------------------------------------------------------------------------


def test_signing_the_go_text_gives_the_go_note() -> None:
    assert sign_note(TEXT, PETER_S) == GO["signed_note"]
    assert sign_note(TEXT, [PETER_S]) == GO["signed_note"]
    sig = base64.b64decode(PETER["signature_base64"])
    assert PETER_S.sign(TEXT.encode()) == sig[4:]


def test_open_the_go_note() -> None:
    note = open_note(GO["signed_note"], [PETER_V])
    assert note == Note(
        TEXT, (Signature("PeterNeumann", 0xC74F20A3, PETER["signature_base64"]),), ()
    )
    assert open_note(GO["signed_note"].encode("utf-8"), PETER_V) == note


def test_open_one_verified_one_unknown() -> None:
    note = open_note(GO["doubly_signed_note"], [PETER_V])
    assert note.text == TEXT
    assert [(s.name, s.key_id) for s in note.verified_signatures] == [("PeterNeumann", 0xC74F20A3)]
    assert note.unverified_signatures == (
        Signature("EnochRoot", 0xAF0CFE78, ENOCH["signature_base64"]),
    )


def test_open_both_verified() -> None:
    note = open_note(GO["doubly_signed_note"], [PETER_V, ENOCH_V])
    assert [s.name for s in note.verified_signatures] == ["PeterNeumann", "EnochRoot"]
    assert note.unverified_signatures == ()


def test_open_with_no_known_key() -> None:
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(GO["doubly_signed_note"], [])
    assert "no verifiable signatures" in str(info.value)
    assert info.value.note.verified_signatures == ()
    assert [s.name for s in info.value.note.unverified_signatures] == ["PeterNeumann", "EnochRoot"]


def test_unknown_key_only() -> None:
    msg = sign_note(TEXT, ALICE)
    with pytest.raises(UnverifiedNoteError, match="alice"):
        open_note(msg, [PETER_V])


def test_same_name_other_key_is_unknown_not_invalid() -> None:
    impostor = Signer.generate("PeterNeumann")  # same name, other key: other key id
    with pytest.raises(UnverifiedNoteError):
        open_note(sign_note(TEXT, impostor), [PETER_V])


def test_duplicate_identical_verifiers_are_merged() -> None:
    again = Verifier.from_verifier_key(PETER["verifier_key"])
    assert open_note(GO["signed_note"], [PETER_V, again, ENOCH_V]).text == TEXT


def test_ambiguous_verifiers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two different keys with the same name and key id (a 32-bit collision, forced here).
    monkeypatch.setattr(note_module, "key_id", lambda name, public_key, alg=1: 0x01020304)
    first, second = Signer.generate("twin"), Signer.generate("twin")
    msg = sign_note(TEXT, first)
    with pytest.raises(NoteError, match="ambiguous key twin\\+01020304"):
        open_note(msg, [first.verifier(), second.verifier()])
    assert open_note(msg, [first.verifier()]).text == TEXT


def test_too_many_signatures() -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [PETER_V]).text == TEXT
    for known in ([PETER_V], []):
        with pytest.raises(NoteError, match="more than 100"):
            open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), known)


def _insert_bytes(line: str, at: int, insert: str) -> str:
    raw = line.encode("utf-8")
    return (raw[:at] + insert.encode() + raw[at:]).decode("utf-8")


def test_invalid_signature_go_vector() -> None:
    bad = _insert_bytes(PETER_SIG, 60, "ABCD")  # Go: peterSig[:60]+"ABCD"+peterSig[60:]
    with pytest.raises(InvalidSignatureError) as info:
        open_note(TEXT + "\n" + bad, [PETER_V])
    assert str(info.value) == "invalid signature for key PeterNeumann+c74f20a3"
    assert (info.value.name, info.value.key_id) == ("PeterNeumann", 0xC74F20A3)


def test_duplicated_verified_and_unverified_signatures_go_vector() -> None:
    enoch_abcd = _insert_bytes(ENOCH_SIG, 60, "ABCD")
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    note = open_note(msg, [PETER_V])
    assert [s.name for s in note.verified_signatures] == ["PeterNeumann"]
    assert note.unverified_signatures == (
        Signature("EnochRoot", 0xAF0CFE78, ENOCH["signature_base64"]),
        Signature("EnochRoot", 0xAF0CFE78, enoch_abcd.split(" ")[2].rstrip("\n")),
    )


def test_a_bad_second_line_from_a_known_key_is_ignored_like_go() -> None:
    # One verdict per known key: the first signature line by that key.
    bad = _insert_bytes(PETER_SIG, 60, "ABCD")
    assert open_note(TEXT + "\n" + PETER_SIG + bad, [PETER_V]).text == TEXT


@pytest.mark.parametrize(
    "msg",
    [
        TEXT,  # no signatures
        TEXT + "\n",  # blank line, no signatures
        TEXT + "\n" + PETER_SIG[:-1],  # no final newline
        "\x01" + TEXT + "\n" + PETER_SIG,  # control character
        TEXT + "\n" + "\u2014 Bad Name " + PETER["signature_base64"],
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + PETER_SIG,  # missing blank line
        TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),  # hyphen, not em dash
        TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"),
        TEXT + "\n" + "\u2014 PeterNeumann\n",  # no signature
        TEXT + "\n" + "\u2014 PeterNeumann \n",
        TEXT + "\n" + "\u2014  " + PETER["signature_base64"] + "\n",  # empty name
        TEXT + "\n" + "\u2014 PeterNeumann AAAAAA==\n",  # shorter than key id + 1 byte
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # missing padding
        TEXT + "\n" + PETER_SIG.replace("M=\n", "N=\n"),  # non-canonical base64
        TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"),
        TEXT + "\n" + PETER_SIG + "\n",  # trailing blank line
        TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG,
        "",
        "\n",
        "\n\n",
    ],
)
def test_malformed_notes(msg: str) -> None:
    with pytest.raises(NoteError) as info:
        open_note(msg, [PETER_V])
    assert not isinstance(info.value, UnverifiedNoteError | InvalidSignatureError)
    assert "malformed" in str(info.value)


def test_invalid_utf8_is_malformed() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff" + GO["signed_note"].encode("utf-8"), [PETER_V])
    with pytest.raises(NoteError, match="UTF-8"):
        open_note("\ud800" + GO["signed_note"], [PETER_V])


def test_flipped_text_byte_fails() -> None:
    msg = GO["signed_note"].replace("problem,", "problem;")
    with pytest.raises(InvalidSignatureError):
        open_note(msg, [PETER_V])


def test_flipped_signature_byte_fails() -> None:
    sig = bytearray(base64.b64decode(PETER["signature_base64"]))
    sig[10] ^= 0x01
    line = "\u2014 PeterNeumann " + base64.b64encode(bytes(sig)).decode() + "\n"
    with pytest.raises(InvalidSignatureError):
        open_note(TEXT + "\n" + line, [PETER_V])


def test_flipped_key_id_makes_the_signature_unknown() -> None:
    sig = bytearray(base64.b64decode(PETER["signature_base64"]))
    sig[0] ^= 0x01
    line = "\u2014 PeterNeumann " + base64.b64encode(bytes(sig)).decode() + "\n"
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + line, [PETER_V])


def test_c2sp_spec_example_splits_at_the_last_blank_line() -> None:
    spec = VECTORS["c2sp_signed_note_spec"]
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(spec["signed_note"], [PETER_V])
    parsed = info.value.note
    assert parsed.text == spec["text"]
    assert "\n\n" in parsed.text
    assert [s.name for s in parsed.unverified_signatures] == ["quasimodo.example/salvatore"]


def test_text_with_blank_lines_round_trips() -> None:
    text = "first\n\nsecond\n\n\n"
    note = open_note(sign_note(text, ALICE), ALICE.verifier())
    assert note.text == text


# --------------------------------------------------------------------------------------------
# sign_note errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "abc", "no final newline\nx", "tab\there\n", "cr\r\n"])
def test_sign_rejects_bad_text(text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(text, PETER_S)


def test_sign_needs_signers_without_duplicates() -> None:
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(TEXT, [])
    with pytest.raises(NoteError, match="duplicate signer"):
        sign_note(TEXT, [PETER_S, ALICE, PETER_S])
    with pytest.raises(TypeError):
        sign_note(TEXT, [PETER_V])  # type: ignore[list-item]


def test_several_signers_in_order() -> None:
    msg = sign_note(TEXT, [PETER_S, ALICE, BOB])
    assert msg.startswith(GO["signed_note"])
    note = open_note(msg, [BOB.verifier(), PETER_V, ALICE.verifier()])
    assert [s.name for s in note.verified_signatures] == [
        "PeterNeumann",
        ALICE.name,
        BOB.name,
    ]


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_LINE_CHARS = st.characters(min_codepoint=0x20, codec="utf-8")
_LINES = st.lists(st.text(_LINE_CHARS, max_size=40), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(_LINES, st.sampled_from([[ALICE], [BOB], [ALICE, BOB], [BOB, PETER_S]]))
def test_sign_open_round_trip(lines: list[str], signers: list[Signer]) -> None:
    text = "\n".join(lines) + "\n"
    msg = sign_note(text, signers)
    note = open_note(msg, [s.verifier() for s in signers])
    assert note.text == text
    assert [s.name for s in note.verified_signatures] == [s.name for s in signers]
    # Verifying with only the first signer's key leaves the others unverified.
    partial = open_note(msg, signers[0].verifier())
    assert len(partial.unverified_signatures) == len(signers) - 1


@settings(max_examples=60, deadline=None)
@given(_LINES, st.data())
def test_any_changed_text_character_fails(lines: list[str], data: st.DataObject) -> None:
    text = "\n".join(lines) + "\n"
    msg = sign_note(text, ALICE)
    i = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(_LINE_CHARS.filter(lambda c: c != text[i]))
    with pytest.raises(NoteError):
        open_note(msg[:i] + replacement + msg[i + 1 :], ALICE.verifier())


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_open_note_only_raises_note_error(msg: str | bytes) -> None:
    with contextlib.suppress(NoteError):
        open_note(msg, [PETER_V, ALICE.verifier()])


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_key_string_parsers_only_raise_note_error(text: str) -> None:
    for parse in (Verifier.from_verifier_key, Signer.from_signing_key_string):
        with contextlib.suppress(NoteError):
            parse(text)
        with contextlib.suppress(NoteError):
            parse("PRIVATE+KEY+" + text)
