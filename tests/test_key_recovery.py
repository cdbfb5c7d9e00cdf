"""Key safety (issue 5, item 6): keyring export, Shamir shares (SLIP-0039) and recovery.

Secrets never reach the test output: keys are compared through their SHA-256 fingerprints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import uuid
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import segno
import shamir_mnemonic
from shamir_mnemonic import EncryptedMasterSecret, MnemonicError, Share
from sqlalchemy import select
from typer.testing import CliRunner

from hygie.access.actor import Actor
from hygie.api.app import open_runtime
from hygie.cli.main import app
from hygie.crypto import Keyring
from hygie.crypto.recovery import (
    BEGIN,
    parse_share,
    recover_keyring,
    render_share_qr,
    render_share_text,
    split_keyring,
)
from hygie.errors import KeyFailure
from hygie.settings import Settings, load_settings
from hygie.store.tables import audit_event

from .conftest import FIXTURES, Instance, _pg_admin, _pg_url

runner = CliRunner()
VECTORS = FIXTURES / "slip39" / "vectors.json"


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def fp(data: str | bytes) -> str:
    """A fingerprint to compare secrets without ever printing them."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def keyring_of(*keys: bytes, active: int | None = None) -> Keyring:
    ring = {v: k for v, k in enumerate(keys, 1)}
    return Keyring(ring, active or len(keys))


def words_of(share_text: str) -> list[str]:
    return parse_share(share_text, "x").share.mnemonic().split()


def audit_rows(settings: Settings, action: str) -> list[Any]:
    from hygie.store.db import make_engine

    engine = make_engine(settings.database_url, pool=False)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(audit_event).where(
                audit_event.c.action == action)).all())
    finally:
        engine.dispose()


def one_error_line(result: Any) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hygie: error: "), lines
    return str(lines[0])


# -- the library against the published SLIP-0039 vectors --------------------------------------
def test_slip39_official_vectors() -> None:
    vectors = json.loads(VECTORS.read_text())
    assert len(vectors) == 40
    valid = 0
    for description, mnemonics, secret in vectors:
        if secret:
            got = shamir_mnemonic.combine_mnemonics(mnemonics, b"TREZOR")
            assert got.hex() == secret, description
            valid += 1
        else:
            with pytest.raises(MnemonicError):
                shamir_mnemonic.combine_mnemonics(mnemonics, b"TREZOR")
    assert valid == 10


def test_vectors_through_hygie_share_reader() -> None:
    """Hygie's own reader refuses the published bad shares, with its own clear messages."""
    vectors = {d.split(".")[0]: m for d, m, _ in json.loads(VECTORS.read_text())}
    for n in ("2", "3", "21", "22", "39", "40"):  # bad checksum, padding, length
        with pytest.raises(KeyFailure, match="damaged or mistyped"):
            parse_share("\n".join(vectors[n]), f"vector-{n}")
    cases = {"5": "need 2 shares, got 1", "24": "need 2 shares, got 1",
             "6": "different share sets", "25": "different share sets",
             "11": "two different shares numbered", "30": "two different shares numbered",
             "13": "do not rebuild the key", "32": "do not rebuild the key",
             "12": "disagree on their threshold", "31": "disagree on their threshold"}
    for n, message in cases.items():
        files = [parse_share(m, f"vector-{n}-{i}") for i, m in enumerate(vectors[n])]
        with pytest.raises(KeyFailure, match=message):
            recover_keyring(files)
    # Multi-group SLIP-0039 shares are not Hygie key shares.
    with pytest.raises(KeyFailure, match="not a Hygie key share"):
        parse_share(vectors["17"][0], "vector-17")


# -- split / recover --------------------------------------------------------------------------
def test_any_threshold_of_shares_rebuilds_the_keyring_exactly() -> None:
    keyring = Keyring.generate().rotated()  # two versions, active 2
    share_set = split_keyring(keyring, threshold=3, shares=5, instance_id="inst-1")
    texts = [render_share_text(share_set, n) for n in range(1, 6)]
    files = [parse_share(t, f"share-{n}.txt") for n, t in enumerate(texts, 1)]
    assert [f.number for f in files] == [1, 2, 3, 4, 5]
    assert len({f.set_id for f in files}) == 1 and files[0].set_id == share_set.set_id
    for k in (3, 4, 5):
        for subset in combinations(files, k):
            got = recover_keyring(list(subset))
            assert fp(got.keyring.serialize()) == fp(keyring.serialize())
            assert got.keyring.versions == [1, 2] and got.keyring.active_version == 2
            assert got.instance_id == "inst-1" and got.threshold == 3
            assert got.checked_values == 2 * k
            assert got.used == sorted(f.number for f in subset)
    for subset in combinations(files, 2):
        with pytest.raises(KeyFailure, match="need 3 shares, got 2"):
            recover_keyring(list(subset))
    # The same share twice counts once.
    with pytest.raises(KeyFailure, match="need 3 shares, got 2 different ones"):
        recover_keyring([files[0], files[1], files[0]])


def test_bad_parameters_are_refused() -> None:
    keyring = Keyring.generate()
    for threshold, shares in ((1, 5), (6, 5), (2, 1), (3, 17), (0, 3)):
        with pytest.raises(KeyFailure):
            split_keyring(keyring, threshold=threshold, shares=shares, instance_id="i")


def _gf_mul(a: int, b: int) -> int:
    """GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (SLIP-0039's field)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = (a << 1) ^ (0x11B if a & 0x80 else 0)
        b >>= 1
    return r


def _gf_inv(a: int) -> int:
    return next(x for x in range(1, 256) if _gf_mul(a, x) == 1)


def _line_at(x: int, p: tuple[int, bytes], q: tuple[int, bytes]) -> bytes:
    """Evaluate at ``x`` the degree-1 polynomial through two shares (independent arithmetic)."""
    (x1, y1), (x2, y2) = p, q
    l1 = _gf_mul(x ^ x2, _gf_inv(x1 ^ x2))
    l2 = _gf_mul(x ^ x1, _gf_inv(x1 ^ x2))
    return bytes(_gf_mul(a, l1) ^ _gf_mul(b, l2) for a, b in zip(y1, y2, strict=True))


def test_fewer_shares_than_the_threshold_reveal_nothing() -> None:
    """With threshold 3, any 2 shares are random bytes unrelated to the key.

    Three checks that would each fail with a broken sharing: the API refuses 2 shares; the
    polynomial is of degree 2, not 1 (the line through 2 shares never gives the shared value);
    the share values look the same whatever the key (all zeros or all ones).
    """
    secret_index = 255  # SLIP-0039: the shared value sits at x = 255
    means = {}
    for fill in (0x00, 0xFF):
        keyring = keyring_of(bytes([fill]) * 32)
        values: list[int] = []
        for _ in range(40):
            share_set = split_keyring(keyring, threshold=3, shares=5, instance_id="i")
            shares = [Share.from_mnemonic(m) for m in share_set.mnemonics]
            ems = EncryptedMasterSecret.from_master_secret(
                _secret_of(keyring), b"", shares[0].identifier, shares[0].extendable,
                shares[0].iteration_exponent)
            for a, b in combinations(shares, 2):
                guess = _line_at(secret_index, (a.index, a.value), (b.index, b.value))
                assert guess != ems.ciphertext
                with pytest.raises(KeyFailure, match="need 3 shares, got 2"):
                    recover_keyring([parse_share(a.mnemonic(), "a"),
                                     parse_share(b.mnemonic(), "b")])
            values += shares[0].value + shares[1].value
            # No share holds the key in any usual encoding.
            for m in share_set.mnemonics:
                assert keyring.serialize().split('"')[-2] not in m
        means[fill] = sum(values) / len(values)
    # 40 x 2 x 38 bytes per key: uniform bytes have mean 127.5 and standard error ~1.2.
    for fill, mean in means.items():
        assert abs(mean - 127.5) < 8, (fill, mean)
    assert abs(means[0x00] - means[0xFF]) < 10


def _secret_of(keyring: Keyring) -> bytes:
    from hygie.crypto.recovery import _encode

    return _encode(keyring)


# -- share files ------------------------------------------------------------------------------
@pytest.fixture
def share_dir(tmp_path: Path) -> Iterator[tuple[Path, Keyring, Any]]:
    keyring = Keyring.generate()
    share_set = split_keyring(keyring, threshold=3, shares=5, instance_id="inst-x")
    folder = tmp_path / "shares"
    folder.mkdir()
    for n in range(1, 6):
        (folder / f"share-{n}.txt").write_text(render_share_text(share_set, n))
    yield folder, keyring, share_set


def test_share_page_is_printable_and_holds_no_key(share_dir: tuple[Path, Keyring, Any]) -> None:
    folder, keyring, share_set = share_dir
    text = (folder / "share-2.txt").read_text()
    assert text.startswith("HYGIE — PART DE SECOURS DE LA CLÉ DE CHIFFREMENT\n")
    assert "Part n° 2 sur 5 — il faut 3 parts" in text and "Share 2 of 5" in text
    assert "inst-x" in text and share_set.set_id in text
    assert "hygie keys recover" in text and "hygie restore" in text
    assert max(len(ln) for ln in text.splitlines()) <= 100
    assert f"check-1: {keyring.check_value(1)}" in text
    raw_key = base64.b64decode(keyring.serialize().split('"')[-2])
    for encoded in (raw_key.hex(), base64.b64encode(raw_key).decode(), keyring.serialize()):
        assert encoded not in text
    assert len(words_of(text)) == 38  # 38-byte shared secret for one key


def test_cli_recover_errors_are_one_clear_line(share_dir: tuple[Path, Keyring, Any],
                                               tmp_path: Path) -> None:
    folder, keyring, _ = share_dir
    s = [str(folder / f"share-{n}.txt") for n in range(1, 6)]
    out = tmp_path / "kek.json"
    # Fewer than the threshold.
    line = one_error_line(cli("keys", "recover", s[0], s[3], "--out", str(out)))
    assert "need 3 shares, got 2" in line and not out.exists()
    # Shares of another set (another split of the same keyring, even).
    other = split_keyring(keyring, threshold=3, shares=5, instance_id="inst-x")
    (tmp_path / "other-1.txt").write_text(render_share_text(other, 1))
    line = one_error_line(cli("keys", "recover", s[0], s[1], str(tmp_path / "other-1.txt"),
                              "--out", str(out)))
    assert "different share sets" in line and not out.exists()
    # A damaged share: one word replaced by another valid word fails the checksum.
    text = (folder / "share-3.txt").read_text()
    words = words_of(text)
    head, block = text.split(BEGIN)
    swapped = "acid" if words[10] != "acid" else "academic"
    damaged = tmp_path / "damaged.txt"
    damaged.write_text(head + BEGIN + block.replace(f"11. {words[10]}", f"11. {swapped}"))
    line = one_error_line(cli("keys", "recover", s[0], s[1], str(damaged), "--out", str(out)))
    assert "damaged.txt is damaged or mistyped" in line and not out.exists()
    for w in words:
        assert f" {w} " not in f" {line} "  # no share word in the message
    # A misspelt word: named by position, never echoed.
    typo = tmp_path / "typo.txt"
    typo.write_text(head + BEGIN + block.replace(f"11. {words[10]}", "11. zzqxv"))
    line = one_error_line(cli("keys", "recover", s[0], s[1], str(typo), "--out", str(out)))
    assert "word 11 is not a share word" in line and "zzqxv" not in line
    # A share file whose check value was altered: the rebuilt key does not match it.
    altered = tmp_path / "altered.txt"
    altered.write_text(text.replace("check-1: ", "check-1: 0"))
    line = one_error_line(cli("keys", "recover", s[0], s[1], str(altered), "--out", str(out)))
    assert "does not match the check value of key version 1" in line and not out.exists()
    # A missing file.
    line = one_error_line(cli("keys", "recover", s[0], s[1], str(tmp_path / "nope.txt"),
                              "--out", str(out)))
    assert "cannot be read" in line


def test_cli_recover_writes_0600_and_never_overwrites(share_dir: tuple[Path, Keyring, Any],
                                                      tmp_path: Path) -> None:
    folder, keyring, _ = share_dir
    s = [str(folder / f"share-{n}.txt") for n in range(1, 6)]
    out = tmp_path / "safe" / "kek.json"
    out.parent.mkdir()
    result = cli("keys", "recover", s[4], s[1], s[2], "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["shares_used"] == [2, 3, 5] and doc["threshold"] == 3
    assert doc["check_values_verified"] == 3 and doc["recorded"] is False
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert fp(out.read_text()) == fp(keyring.serialize())
    # Never overwritten without --force.
    out.write_text("precious")
    line = one_error_line(cli("keys", "recover", *s[:3], "--out", str(out)))
    assert "already exists" in line and out.read_text() == "precious"
    result = cli("keys", "recover", *s[:3], "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert fp(out.read_text()) == fp(keyring.serialize())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "hygie restore BACKUP" in result.stdout


def test_words_alone_are_enough(share_dir: tuple[Path, Keyring, Any], tmp_path: Path) -> None:
    """A share typed back from paper, or scanned from its QR code (upper case), is accepted."""
    folder, keyring, share_set = share_dir
    typed = tmp_path / "typed.txt"
    typed.write_text("\n".join(" ".join(words_of((folder / "share-1.txt").read_text())[i: i + 5])
                               for i in range(0, 38, 5)) + "\n")
    scanned = tmp_path / "scanned.txt"
    scanned.write_text(share_set.mnemonics[3].upper())
    out = tmp_path / "kek.json"
    result = cli("keys", "recover", str(typed), str(scanned), str(folder / "share-5.txt"),
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    assert fp(out.read_text()) == fp(keyring.serialize())


def test_qr_code_encodes_the_same_share(share_dir: tuple[Path, Keyring, Any]) -> None:
    _, _, share_set = share_dir
    png = render_share_qr(share_set, 2)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    qr = segno.make(share_set.mnemonics[1].upper(), error="q", micro=False)
    assert qr.designator.endswith("-Q") and qr.mode == "alphanumeric"
    assert png != render_share_qr(share_set, 3)


# -- with an instance: export, export-recovery, recover, restore ------------------------------
@pytest.fixture
def fresh_db(instance: Instance) -> Iterator[str | None]:
    """PostgreSQL: an empty database to restore into (dropped afterwards)."""
    if instance.backend != "postgresql":
        yield None
        return
    name = f"hygie_k_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _write_patients(settings: Settings) -> dict[str, bytes]:
    rt = open_runtime(settings)
    try:
        made = {}
        with rt.gate.open(Actor.system("test")) as door:
            for family in ("Lefebvre", "Moreau", "Garnier"):
                found = door.create("Patient", {"resourceType": "Patient",
                                                "name": [{"family": family}]})
                made[found.rid] = found.body
        return made
    finally:
        rt.engine.dispose()


def _read_patients(settings: Settings, ids: list[str]) -> dict[str, bytes]:
    rt = open_runtime(settings)
    try:
        with rt.gate.open(Actor.system("test"), readonly=True) as door:
            return {rid: door.read("Patient", rid).body for rid in ids}
    finally:
        rt.engine.dispose()


def test_shares_rebuild_a_key_that_restores_a_backup(instance: Instance, fresh_db: str | None,
                                                      tmp_path: Path) -> None:
    """init, data through the gate, backup, shares, keyring lost, 3 of 5 shares, restore."""
    written = _write_patients(instance.settings)
    original_kek = (instance.data_dir / "kek.json").read_text()
    result = cli("backup", "create", "--data-dir", str(instance.data_dir), "--to",
                 str(tmp_path / "backups"), "--json")
    assert result.exit_code == 0, result.output
    backup = json.loads(result.stdout)["backup"]
    shares = tmp_path / "shares"
    result = cli("keys", "export-recovery", "--data-dir", str(instance.data_dir), "--shares", "5",
                 "--threshold", "3", "--out", str(shares), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["instance_id"] == instance.settings.instance_id
    names = sorted(p.name for p in shares.iterdir())
    assert names == sorted([f"share-{n}.{e}" for n in range(1, 6) for e in ("txt", "png")])
    assert stat.S_IMODE(shares.stat().st_mode) == 0o700
    raw_key = base64.b64decode(Keyring.parse(original_kek).serialize().split('"')[-2])
    for p in shares.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
        data = p.read_bytes()
        assert raw_key not in data and raw_key.hex().encode() not in data
        assert base64.b64encode(raw_key) not in data
    # Each QR code carries the words of the page with the same number.
    for n in range(1, 6):
        words = words_of((shares / f"share-{n}.txt").read_text())
        qr = segno.make(" ".join(words).upper(), error="q", micro=False)
        buf = __import__("io").BytesIO()
        qr.save(buf, kind="png", scale=5, border=4)
        assert buf.getvalue() == (shares / f"share-{n}.png").read_bytes()
    rows = audit_rows(instance.settings, "key-shares-export")
    assert len(rows) == 1 and rows[0].actor == "cli:keys"
    assert rows[0].detail == f"3-of-5 set {doc['set']}"
    # Never over an existing non-empty folder.
    line = one_error_line(cli("keys", "export-recovery", "--data-dir", str(instance.data_dir),
                              "--out", str(shares)))
    assert "not empty" in line
    # The attack: the instance and its keyring are gone.
    shutil.rmtree(instance.data_dir)
    out = tmp_path / "recovered" / "kek.json"
    out.parent.mkdir()
    line = one_error_line(cli("keys", "recover", str(shares / "share-2.txt"),
                              str(shares / "share-5.txt"), "--out", str(out)))
    assert "need 3 shares, got 2" in line and not out.exists()
    result = cli("keys", "recover", str(shares / "share-1.txt"), str(shares / "share-3.txt"),
                 str(shares / "share-5.txt"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert fp(out.read_text()) == fp(original_kek)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    new_dir = tmp_path / "restored"
    args = ["restore", backup, "--data-dir", str(new_dir), "--key-file", str(out)]
    result = cli(*args, *(["--database-url", fresh_db] if fresh_db else []))
    assert result.exit_code == 0, result.output
    restored = load_settings(new_dir)
    got = _read_patients(restored, list(written))
    assert {k: fp(v) for k, v in got.items()} == {k: fp(v) for k, v in written.items()}
    assert len(audit_rows(restored, "key-shares-export")) == 0  # made after the backup
    assert cli("ledger", "verify", "--data-dir", str(new_dir)).exit_code == 0
    # Recovering against the restored instance checks the key and records it in its ledger.
    again = tmp_path / "again.json"
    result = cli("keys", "recover", *(str(shares / f"share-{n}.txt") for n in (2, 3, 4)),
                 "--out", str(again), "--data-dir", str(new_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recorded"] is True
    rows = audit_rows(restored, "key-recover")
    assert len(rows) == 1 and rows[0].detail == f"set {doc['set']} shares 2,3,4"


def test_recover_against_another_instance_is_refused(instance: Instance,
                                                     tmp_path: Path) -> None:
    other = split_keyring(Keyring.generate(), threshold=2, shares=3,
                          instance_id=instance.settings.instance_id)
    files = []
    for n in (1, 2):
        files.append(tmp_path / f"s{n}.txt")
        files[-1].write_text(render_share_text(other, n))
    line = one_error_line(cli("keys", "recover", *map(str, files), "--out",
                              str(tmp_path / "k.json"), "--data-dir", str(instance.data_dir)))
    assert "does not match this database" in line and not (tmp_path / "k.json").exists()
    assert audit_rows(instance.settings, "key-recover") == []


def test_keys_export_copies_the_keyring(instance: Instance, tmp_path: Path) -> None:
    out = tmp_path / "copy.json"
    result = cli("keys", "export", "--data-dir", str(instance.data_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    original = (instance.data_dir / "kek.json").read_text()
    assert fp(out.read_text()) == fp(original)
    # Never overwritten.
    line = one_error_line(cli("keys", "export", "--data-dir", str(instance.data_dir),
                              "--out", str(out)))
    assert "already exists" in line
    rows = audit_rows(instance.settings, "key-export")
    assert len(rows) == 1 and rows[0].actor == "cli:keys" and rows[0].detail == "versions 1"
    # From an env: key source (the key file gone).
    (instance.data_dir / "kek.json").unlink()
    env = {"HYGIE_KEY_SOURCE": "env:HYGIE_TEST_KEYRING", "HYGIE_TEST_KEYRING": original}
    out2 = tmp_path / "from-env.json"
    result = cli("keys", "export", "--data-dir", str(instance.data_dir), "--out", str(out2),
                 env=env)
    assert result.exit_code == 0, result.output
    assert fp(out2.read_text()) == fp(original)
    # A wrong keyring is refused before anything is written.
    env["HYGIE_TEST_KEYRING"] = Keyring.generate().serialize()
    line = one_error_line(cli("keys", "export", "--data-dir", str(instance.data_dir),
                              "--out", str(tmp_path / "wrong.json"), env=env))
    assert "does not match" in line and not (tmp_path / "wrong.json").exists()
