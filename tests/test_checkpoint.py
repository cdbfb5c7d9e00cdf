"""C2SP tlog-checkpoint (hygie.ledger.checkpoint): format, strict parsing, signing, opening.

Vectors (tests/fixtures/note/checkpoint_vectors.json, see PROVENANCE.md there): golang/mod's
sumdb/tlog FormatTree/ParseTree golden tree, a real sum.golang.org signed checkpoint with three
cosignatures from transparency-dev/formats, transparency-dev/formats' checkpoint parser cases
and the example of the C2SP tlog-checkpoint spec.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hygie.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from hygie.ledger.merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes
from hygie.ledger.note import (
    InvalidSignatureError,
    NoteError,
    Signer,
    UnverifiedNoteError,
    Verifier,
    open_note,
)

FIXTURES = Path(__file__).parent / "fixtures" / "note"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "checkpoint_vectors.json").read_text("utf-8"))
TLOG = VECTORS["golang_mod_tlog"]
SUMDB = VECTORS["sum_golang_org_signed"]
FORMATS = VECTORS["transparency_dev_formats_checkpoint"]
SPEC = VECTORS["c2sp_tlog_checkpoint_spec"]

ORIGIN = "hygie.example/ledger/7b0c1e2f"
LOG = Signer.generate(ORIGIN)
WITNESS = Signer.generate("witness.example/w1")
ROOT = root_from_leaf_hashes([leaf_hash(b"entry %d" % i) for i in range(7)])
B64_ROOT = base64.b64encode(ROOT).decode()


# --------------------------------------------------------------------------------------------
# Vectors
# --------------------------------------------------------------------------------------------


def test_tlog_format_tree_vector() -> None:
    cp = Checkpoint(TLOG["origin"], TLOG["size"], leaf_hash(TLOG["root_hash_of"].encode()))
    assert cp.format() == TLOG["text"]
    assert Checkpoint.parse(TLOG["text"]) == cp
    assert parse_checkpoint(TLOG["text"]) == cp


def test_tlog_parse_tree_bad_vectors() -> None:
    other_origin, hex_size, long_hash = TLOG["bad"]
    # ParseTree requires the go.sum origin; as a checkpoint it is fine, with another origin.
    assert Checkpoint.parse(other_origin).origin == "not-go.sum database tree"
    for bad in (hex_size, long_hash):
        with pytest.raises(CheckpointError):
            Checkpoint.parse(bad)


def test_tlog_junk_after_the_tree_is_extensions_or_an_error() -> None:
    text = TLOG["text"]
    # ParseTree ignores trailing junk. Here lines after the root are extension lines, and the
    # text must still end with a newline.
    with pytest.raises(CheckpointError, match="newline"):
        Checkpoint.parse(text + "JOE")
    assert Checkpoint.parse(text + "JOE\n").extensions == ("JOE",)
    assert Checkpoint.parse(text + "JOE\n" * 1000).extensions == ("JOE",) * 1000


def test_sum_golang_org_checkpoint() -> None:
    verifier = Verifier.from_verifier_key(SUMDB["verifier_key"])
    cp = open_checkpoint(SUMDB["signed_note"], verifier, SUMDB["origin"])
    assert cp.origin == "go.sum database tree"
    assert cp.size == SUMDB["size"] == 6476701
    assert cp.root_hash == base64.b64decode(SUMDB["root_hash_base64"])
    assert cp.extensions == ()
    assert cp.format() == SUMDB["text"]
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(SUMDB["signed_note"], verifier, "Go rocks but I might have the wrong ID")


def test_sum_golang_org_checkpoint_with_cosignatures() -> None:
    log = Verifier.from_verifier_key(SUMDB["verifier_key"])
    cosigners = [Verifier.from_verifier_key(c["verifier_key"]) for c in SUMDB["cosigners"]]
    msg = (
        SUMDB["signed_note"]
        + "".join(c["signature_line"] for c in SUMDB["cosigners"])
        + "".join(SUMDB["unknown_signature_lines"])
    )
    # The log key alone: the cosignatures and the unknown lines are ignored.
    assert open_checkpoint(msg, log, SUMDB["origin"]).size == 6476701
    note = open_note(msg, [log, *cosigners])
    assert [s.name for s in note.verified_signatures] == [
        "sum.golang.org",
        "monkeys",
        "bananas",
        "witness",
    ]
    assert [s.name for s in note.unverified_signatures] == ["random1", "random2"]


@pytest.mark.parametrize("text", FORMATS["rejected_by_hygie_only"] + FORMATS["invalid"])
def test_transparency_dev_vectors_are_rejected_by_the_strict_parser(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_c2sp_spec_example() -> None:
    cp = Checkpoint.parse(SPEC["text"])
    assert (cp.origin, cp.size, cp.extensions) == (SPEC["origin"], SPEC["size"], ())
    assert cp.format() == SPEC["text"]
    # Its signer's verifier key is not published: an unknown key only.
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(SPEC["text"] + "\n" + SPEC["signature_line"], LOG.verifier(), cp.origin)


# --------------------------------------------------------------------------------------------
# Format and strict parsing
# --------------------------------------------------------------------------------------------


def test_format() -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT)
    assert cp.format() == f"{ORIGIN}\n7\n{B64_ROOT}\n"
    assert Checkpoint(ORIGIN, 0, EMPTY_ROOT).format() == (
        f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )
    with_ext = Checkpoint(ORIGIN, 7, ROOT, ("ext one", "ext two"))
    assert with_ext.format() == f"{ORIGIN}\n7\n{B64_ROOT}\next one\next two\n"
    assert Checkpoint.parse(with_ext.format()) == with_ext


def test_extensions_become_a_tuple_and_root_bytes() -> None:
    cp = Checkpoint(ORIGIN, 1, bytearray(ROOT), ["a"])  # type: ignore[arg-type]
    assert cp.extensions == ("a",) and type(cp.root_hash) is bytes
    assert hash(cp) == hash(Checkpoint(ORIGIN, 1, ROOT, ("a",)))


@pytest.mark.parametrize(
    "size_text",
    [
        "00",
        "01",
        "0123",
        "+5",
        "-1",
        " 5",
        "5 ",
        "",
        "1_000",
        "0x10",
        "1e3",
        "\u0663",
        "５",
        str(MAX_TREE_SIZE + 1),
        "9" * 21,
        "1" + "0" * 4400,
    ],
)
def test_bad_sizes(size_text: str) -> None:
    with pytest.raises(CheckpointError, match="size"):
        Checkpoint.parse(f"{ORIGIN}\n{size_text}\n{B64_ROOT}\n")


@pytest.mark.parametrize("size", [0, 1, 9, 10, 1234567, MAX_TREE_SIZE])
def test_good_sizes(size: int) -> None:
    assert Checkpoint.parse(f"{ORIGIN}\n{size}\n{B64_ROOT}\n").size == size


@pytest.mark.parametrize(
    "root_text",
    [
        base64.b64encode(ROOT[:31]).decode(),  # 31 bytes
        base64.b64encode(ROOT + b"\x00").decode(),  # 33 bytes
        "",
        B64_ROOT.rstrip("="),  # unpadded
        B64_ROOT[:-2] + chr(ord(B64_ROOT[-2]) ^ 1) + "=",  # non-canonical trailing bits
        base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # base64url alphabet
        " " + B64_ROOT,
        B64_ROOT + " ",
        ROOT.hex(),
    ],
)
def test_bad_root_hashes(root_text: str) -> None:
    assert root_text != B64_ROOT
    with pytest.raises(CheckpointError, match="root hash"):
        Checkpoint.parse(f"{ORIGIN}\n7\n{root_text}\n")


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n7\n{B64_ROOT}",  # no final newline
        f"{ORIGIN}\n7\n",  # two lines
        f"\n7\n{B64_ROOT}\n",  # empty origin
        f"{ORIGIN}\r\n7\r\n{B64_ROOT}\r\n",  # CRLF
        f"{ORIGIN}\t\n7\n{B64_ROOT}\n",  # control character in origin
        f"{ORIGIN}\n7\n{B64_ROOT}\n\n",  # empty extension line
        f"{ORIGIN}\n7\n{B64_ROOT}\next\n\nmore\n",
        f"{ORIGIN}\n7\n{B64_ROOT}\next\x7f\x01\n",
        "",
        "\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_parse_bytes_and_bad_utf8() -> None:
    text = f"{ORIGIN}\n7\n{B64_ROOT}\n"
    assert Checkpoint.parse(text.encode()) == Checkpoint(ORIGIN, 7, ROOT)
    with pytest.raises(CheckpointError, match="UTF-8"):
        Checkpoint.parse(b"\xff" + text.encode())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", 1, ROOT), "origin is empty"),
        (("a\nb", 1, ROOT), "control character"),
        ((ORIGIN, -1, ROOT), "out of range"),
        ((ORIGIN, MAX_TREE_SIZE + 1, ROOT), "out of range"),
        ((ORIGIN, True, ROOT), "must be an int"),
        ((ORIGIN, 1.0, ROOT), "must be an int"),
        ((ORIGIN, 1, ROOT[:31]), "32 bytes, not 31"),
        ((ORIGIN, 1, B64_ROOT), "must be bytes"),
        ((ORIGIN, 1, ROOT, ("",)), "extension line is empty"),
        ((ORIGIN, 1, ROOT, ("a\nb",)), "control character"),
        ((ORIGIN, 1, ROOT, "abc"), "not one str"),
        ((1, 1, ROOT), "must be a str"),
    ],
)
def test_constructor_validation(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        Checkpoint(*args)


# --------------------------------------------------------------------------------------------
# Signing and opening
# --------------------------------------------------------------------------------------------


def test_sign_and_open() -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT)
    msg = sign_checkpoint(cp, LOG)
    assert msg.startswith(cp.format() + "\n\u2014 " + ORIGIN + " ")
    assert open_checkpoint(msg, LOG.verifier(), ORIGIN) == cp
    assert open_checkpoint(msg.encode(), LOG.verifier(), ORIGIN) == cp
    # The verifier as a witness would hold it: parsed from the published key string.
    assert open_checkpoint(msg, Verifier.from_verifier_key(LOG.verifier_key()), ORIGIN) == cp


def test_cosigned_checkpoint_opens_with_the_log_key() -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT)
    msg = sign_checkpoint(cp, [WITNESS, LOG])
    assert open_checkpoint(msg, LOG.verifier(), ORIGIN) == cp


def test_wrong_origin() -> None:
    msg = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), LOG)
    with pytest.raises(CheckpointError, match="not the expected origin"):
        open_checkpoint(msg, LOG.verifier(), ORIGIN + "x")
    with pytest.raises(CheckpointError):
        open_checkpoint(msg, LOG.verifier(), "hygie.example/ledger/other")


def test_wrong_key() -> None:
    msg = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), LOG)
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(msg, WITNESS.verifier(), ORIGIN)
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(msg, Signer.generate(ORIGIN).verifier(), ORIGIN)  # same name, other key


def test_tampered_size_or_root_fails() -> None:
    msg = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), LOG)
    for tampered in (
        msg.replace("\n7\n", "\n8\n", 1),
        msg.replace(B64_ROOT, base64.b64encode(EMPTY_ROOT).decode(), 1),
    ):
        assert tampered != msg
        with pytest.raises(InvalidSignatureError):
            open_checkpoint(tampered, LOG.verifier(), ORIGIN)


def test_signed_note_that_is_not_a_checkpoint() -> None:
    from hygie.ledger.note import sign_note

    msg = sign_note("if this is a valid checkpoint then I'll eat my hat\n", LOG)
    with pytest.raises(CheckpointError, match="fewer than three lines"):
        open_checkpoint(msg, LOG.verifier(), ORIGIN)


def test_errors_are_note_errors_and_value_errors() -> None:
    assert issubclass(CheckpointError, NoteError)
    assert issubclass(NoteError, ValueError)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_LINE = st.text(st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1)

checkpoints = st.builds(
    Checkpoint,
    origin=_LINE,
    size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3).map(tuple),
)


@settings(max_examples=100, deadline=None)
@given(checkpoints)
def test_format_parse_round_trip(cp: Checkpoint) -> None:
    assert Checkpoint.parse(cp.format()) == cp


@settings(max_examples=40, deadline=None)
@given(checkpoints)
def test_sign_open_round_trip(cp: Checkpoint) -> None:
    assert open_checkpoint(sign_checkpoint(cp, LOG), LOG.verifier(), cp.origin) == cp


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=120), st.binary(max_size=120)))
def test_parse_only_raises_checkpoint_error(text: str | bytes) -> None:
    with contextlib.suppress(CheckpointError):
        Checkpoint.parse(text)
