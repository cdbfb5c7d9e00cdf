"""Start-up integrity check (issue 5, item 7): each damage is named; ``hygie serve`` refuses.

Real damage on real instances (SQLite files, a real PostgreSQL database): files encrypted with
random bytes as ransomware does, truncated, deleted, renamed to ``*.locked``; keys replaced;
ledger rows edited. Nothing here mocks a part.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update
from typer.testing import CliRunner

from hygie.access.actor import Actor
from hygie.api.app import open_runtime
from hygie.cli.main import app
from hygie.crypto import Keyring
from hygie.crypto.keyring import write_secret_file
from hygie.ledger.log import origin_for
from hygie.ledger.note import Signer
from hygie.resilience.integrity import EXIT_CODE, IntegrityReport, check_instance
from hygie.store.db import make_engine
from hygie.store.tables import audit_event, ledger_checkpoint, ledger_leaf

from .conftest import Instance, _make_instance, _pg_admin

HYGIE = str(Path(sys.executable).parent / "hygie")
runner = CliRunner()
FAMILY = "Integrite-Durand"


def populate(instance: Instance, patients: int = 3) -> None:
    """A few records through the gate, then a signed ledger checkpoint."""
    rt = open_runtime(instance.settings)
    try:
        with rt.gate.open(Actor.system("test")) as door:
            for i in range(patients):
                p = door.create("Patient", {"resourceType": "Patient",
                                            "name": [{"family": f"{FAMILY}{i}"}]})
                door.create("Observation", {
                    "resourceType": "Observation", "status": "final",
                    "code": {"text": "poids"}, "subject": {"reference": f"Patient/{p.rid}"},
                    "valueQuantity": {"value": 70 + i, "unit": "kg"}})
        rt.ledger.checkpoint()
        with rt.gate.open(Actor.system("test")) as door:  # entries after the checkpoint too
            door.create("Patient", {"resourceType": "Patient", "name": [{"family": FAMILY}]})
    finally:
        rt.engine.dispose()


@pytest.fixture
def populated(instance: Instance) -> Instance:
    populate(instance)
    return instance


@pytest.fixture
def sqlite_instance(templates: dict[str, Any], tmp_path: Path) -> Iterator[Instance]:
    with _make_instance("sqlite", templates, tmp_path) as inst:
        populate(inst)
        yield inst


def secrets_of(instance: Instance) -> list[bytes]:
    kek = json.loads((instance.data_dir / "kek.json").read_text())
    keys = [v.encode() for v in kek["keys"].values()]
    return [*keys, (instance.data_dir / "ledger.key").read_text().strip().encode()]


def failed(report: IntegrityReport) -> tuple[str, str]:
    """(name, message) of the one failed check; the later checks did not run."""
    assert not report.ok
    failures = report.failures
    assert len(failures) == 1, [c.as_dict() for c in report.checks]
    return failures[0].name, failures[0].message


def encrypt(path: Path, keep: int = 0) -> None:
    """What ransomware does to a file: its bytes replaced by a keystream XOR (from ``keep``)."""
    raw = path.read_bytes()
    pad = secrets.token_bytes(len(raw) - keep)
    path.write_bytes(raw[:keep] + bytes(a ^ b for a, b in zip(raw[keep:], pad, strict=True)))


# -- a healthy instance ------------------------------------------------------------------------
def test_healthy_instance_passes(populated: Instance) -> None:
    report = check_instance(populated.data_dir)
    assert report.ok, [c.as_dict() for c in report.checks]
    assert [c.name for c in report.checks] == ["config", "database", "key", "ledger-key",
                                               "ledger"]
    ledger = report.checks[-1].message
    assert "checkpoint" in ledger and "verified" in ledger
    result = runner.invoke(app, ["check", "--data-dir", str(populated.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["backend"] == populated.backend
    full = check_instance(populated.data_dir, full=True)
    assert full.ok and "every entry re-hashed" in full.checks[-1].message


def test_fresh_instance_without_checkpoint_passes(instance: Instance) -> None:
    report = check_instance(instance.data_dir)
    assert report.ok, [c.as_dict() for c in report.checks]
    assert "no checkpoint yet" in report.checks[-1].message


# -- the SQLite database file ------------------------------------------------------------------
def test_database_encrypted(sqlite_instance: Instance) -> None:
    db = sqlite_instance.data_dir / "hygie.db"
    encrypt(db)
    name, message = failed(check_instance(sqlite_instance.data_dir))
    assert name == "database"
    assert message == ("the database file hygie.db is not a SQLite database "
                       "(encrypted or overwritten?)")


def test_database_encrypted_after_its_header(sqlite_instance: Instance) -> None:
    """Fast ransomware encrypts only part of each file: the header survives."""
    db = sqlite_instance.data_dir / "hygie.db"
    encrypt(db, keep=4096)
    name, message = failed(check_instance(sqlite_instance.data_dir))
    assert name == "database"
    assert "hygie.db is damaged" in message and "integrity check fails" in message


def test_database_truncated(sqlite_instance: Instance) -> None:
    db = sqlite_instance.data_dir / "hygie.db"
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.truncate(size // 2)
    name, message = failed(check_instance(sqlite_instance.data_dir))
    assert name == "database"
    assert message.startswith(f"the database file hygie.db is truncated ({size // 2} of ")
    with db.open("r+b") as f:
        f.truncate(40)
    assert failed(check_instance(sqlite_instance.data_dir))[1] == (
        "the database file hygie.db is truncated (40 bytes)")
    with db.open("r+b") as f:
        f.truncate(0)
    assert "hygie.db is empty" in failed(check_instance(sqlite_instance.data_dir))[1]


def test_database_deleted_or_renamed(sqlite_instance: Instance) -> None:
    db = sqlite_instance.data_dir / "hygie.db"
    locked = db.with_name("hygie.db.locked")
    db.rename(locked)
    name, message = failed(check_instance(sqlite_instance.data_dir))
    assert name == "database"
    assert message == ("the database file hygie.db is missing (hygie.db.locked is there "
                       "instead: renamed by ransomware?)")
    locked.unlink()
    assert failed(check_instance(sqlite_instance.data_dir))[1] == (
        "the database file hygie.db is missing")
    # The check never creates an empty database in its place (the evidence stays as found).
    assert not db.exists()


def test_write_ahead_log_encrypted_or_renamed(sqlite_instance: Instance) -> None:
    wal = sqlite_instance.data_dir / "hygie.db-wal"
    wal.write_bytes(secrets.token_bytes(8192))
    name, message = failed(check_instance(sqlite_instance.data_dir))
    assert name == "database"
    assert message == ("the database's write-ahead log hygie.db-wal is not a SQLite WAL "
                       "(encrypted or overwritten?)")
    assert len(wal.read_bytes()) == 8192  # left as found
    wal.rename(wal.with_name("hygie.db-wal.locked"))
    assert "write-ahead log was renamed to hygie.db-wal.locked" in failed(
        check_instance(sqlite_instance.data_dir))[1]


def test_quick_check_has_a_time_budget(sqlite_instance: Instance) -> None:
    report = check_instance(sqlite_instance.data_dir, quick_check_seconds=0)
    assert report.ok
    assert "quick_check stopped after 0 s" in report.checks[1].message


def test_config_encrypted_or_missing(sqlite_instance: Instance) -> None:
    config = sqlite_instance.data_dir / "hygie.toml"
    encrypt(config)
    name, message = failed(check_instance(sqlite_instance.data_dir))
    assert name == "config"
    assert message == ("the configuration file hygie.toml is not readable TOML "
                       "(encrypted, truncated or overwritten?)")
    assert [c.ok for c in check_instance(sqlite_instance.data_dir).checks] == [
        False, None, None, None, None]
    config.rename(config.with_name("hygie.toml.locked"))
    assert failed(check_instance(sqlite_instance.data_dir))[1] == (
        "the configuration file hygie.toml is missing (hygie.toml.locked is there instead: "
        "renamed by ransomware?)")


# -- PostgreSQL --------------------------------------------------------------------------------
@pytest.fixture
def pg_instance(templates: dict[str, Any], tmp_path: Path) -> Iterator[Instance]:
    with _make_instance("postgresql", templates, tmp_path) as inst:
        populate(inst)
        yield inst


def test_postgresql_tables_dropped_or_database_gone(pg_instance: Instance) -> None:
    engine = make_engine(pg_instance.settings.database_url, pool=False)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE resource CASCADE"))
    engine.dispose()
    name, message = failed(check_instance(pg_instance.data_dir))
    assert name == "database"
    assert message.endswith("lacks the table(s) resource (dropped?)")
    engine = make_engine(pg_instance.settings.database_url, pool=False)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    assert "holds no Hygie schema (emptied or replaced?)" in failed(
        check_instance(pg_instance.data_dir))[1]
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE "{pg_instance.dbname}" WITH (FORCE)')
    name, message = failed(check_instance(pg_instance.data_dir))
    assert name == "database"
    assert message.startswith(f"cannot use the PostgreSQL database {pg_instance.dbname} on "
                              "127.0.0.1 (OperationalError")


# -- the key file ------------------------------------------------------------------------------
def test_key_file_damaged_or_replaced(populated: Instance) -> None:
    kek = populated.data_dir / "kek.json"
    original = kek.read_bytes()
    encrypt(kek)
    name, message = failed(check_instance(populated.data_dir))
    assert name == "key"
    assert message == ("the key file kek.json is not a valid Hygie keyring "
                       "(encrypted, truncated or overwritten?)")
    kek.write_bytes(original[: len(original) // 2])
    assert failed(check_instance(populated.data_dir)) == ("key", message)
    write_secret_file(kek, Keyring.generate().serialize())
    assert failed(check_instance(populated.data_dir)) == (
        "key", "the key file kek.json does not open this database (another key, or replaced?)")
    kek.unlink()
    assert failed(check_instance(populated.data_dir)) == (
        "key", "the key file kek.json is missing: restore it from its safe copy or recover it "
        "from the key shares ('hygie keys recover')")
    kek.write_bytes(original)
    assert check_instance(populated.data_dir).ok


def test_key_table_damaged(populated: Instance) -> None:
    from hygie.store.tables import data_key

    engine = make_engine(populated.settings.database_url, pool=False)
    with engine.begin() as conn:
        conn.execute(update(data_key).where(data_key.c.owner == "index")
                     .values(wrapped=secrets.token_bytes(60)))
    engine.dispose()
    assert failed(check_instance(populated.data_dir)) == (
        "key", "the key file kek.json matches, but the database's key table is damaged (a data "
        "key does not unwrap)")


# -- the ledger key and the ledger -------------------------------------------------------------
def test_ledger_key_replaced_or_damaged(populated: Instance) -> None:
    key = populated.data_dir / "ledger.key"
    original = key.read_text()
    stranger = Signer.generate(origin_for(populated.settings.instance_id))
    write_secret_file(key, stranger.signing_key_string() + "\n")
    assert failed(check_instance(populated.data_dir)) == (
        "ledger-key", "the ledger signing key ledger.key is not the key that signed the "
        "ledger's checkpoints (replaced?)")
    other = Signer.generate(origin_for("another-instance"))
    write_secret_file(key, other.signing_key_string() + "\n")
    assert failed(check_instance(populated.data_dir)) == (
        "ledger-key", "the ledger signing key ledger.key belongs to another instance (replaced?)")
    key.write_text(original)
    encrypt(key)
    assert failed(check_instance(populated.data_dir)) == (
        "ledger-key", "the ledger signing key ledger.key is not a valid signing key "
        "(encrypted, truncated or overwritten?)")
    key.unlink()
    assert failed(check_instance(populated.data_dir)) == (
        "ledger-key", "the ledger signing key ledger.key is missing")


def _edit(instance: Instance, statement: Any) -> None:
    engine = make_engine(instance.settings.database_url, pool=False)
    with engine.begin() as conn:
        conn.execute(statement)
    engine.dispose()


def _scalar(instance: Instance, query: Any) -> Any:
    engine = make_engine(instance.settings.database_url, pool=False)
    with engine.connect() as conn:
        value = conn.execute(query).scalar_one()
    engine.dispose()
    return value


def test_audit_entry_edited(populated: Instance) -> None:
    seq = _scalar(populated, select(func.max(ledger_leaf.c.seq)))
    _edit(populated, update(audit_event).where(audit_event.c.seq == seq)
          .values(actor="someone-else"))
    name, message = failed(check_instance(populated.data_dir))
    assert name == "ledger"
    assert message.endswith(f"(audit seq {seq}): the audit entry was altered")
    _edit(populated, delete(audit_event).where(audit_event.c.seq == seq))
    assert failed(check_instance(populated.data_dir))[1].endswith(
        f"(audit seq {seq}): the audit entry was deleted")


def test_ledger_leaf_edited_or_removed(populated: Instance) -> None:
    _edit(populated, update(ledger_leaf).where(ledger_leaf.c.idx == 0)
          .values(hash=secrets.token_bytes(32)))
    name, message = failed(check_instance(populated.data_dir))
    assert name == "ledger"
    assert "no longer give the root of the latest signed checkpoint" in message


def test_ledger_truncated_or_gapped(populated: Instance) -> None:
    size = _scalar(populated, select(func.max(ledger_checkpoint.c.size)))
    _edit(populated, delete(ledger_leaf).where(ledger_leaf.c.idx == 1))
    assert failed(check_instance(populated.data_dir)) == (
        "ledger", "ledger entry 1 is missing (the leaf table has a gap)")
    _edit(populated, delete(ledger_leaf).where(ledger_leaf.c.idx >= 1))
    assert failed(check_instance(populated.data_dir)) == (
        "ledger", f"the ledger holds 1 entries, fewer than the {size} of its latest signed "
        "checkpoint (truncated)")


def test_checkpoint_note_altered(populated: Instance) -> None:
    size = _scalar(populated, select(func.max(ledger_checkpoint.c.size)))
    note = _scalar(populated, select(ledger_checkpoint.c.note)
                   .where(ledger_checkpoint.c.size == size))
    lines = note.split("\n")
    lines[1] = str(size + 1)
    _edit(populated, update(ledger_checkpoint).where(ledger_checkpoint.c.size == size)
          .values(note="\n".join(lines)))
    assert failed(check_instance(populated.data_dir)) == (
        "ledger", f"the latest ledger checkpoint (size {size}) does not verify: its signature "
        "or text was altered")


# -- hygie check and hygie serve ---------------------------------------------------------------
def test_check_command_exit_code_and_steps(populated: Instance, tmp_path: Path) -> None:
    target = tmp_path / "backups"
    result = runner.invoke(app, ["backup", "create", "--data-dir", str(populated.data_dir),
                                 "--to", str(target), "--json"])
    assert result.exit_code == 0, result.output
    backup = json.loads(result.stdout)["backup"]
    kek = populated.data_dir / "kek.json"
    write_secret_file(kek, Keyring.generate().serialize())
    result = runner.invoke(app, ["check", "--data-dir", str(populated.data_dir)],
                           env={"HYGIE_BACKUP_TARGET": str(target)})
    assert result.exit_code == EXIT_CODE
    assert "FAILED key" in result.stdout
    first = result.stderr.splitlines()[0]
    assert first == ("hygie: error: integrity check failed: the key file kek.json does not "
                     "open this database (another key, or replaced?)")
    assert f"hygie backup verify {backup}" in result.stderr
    restore = f"hygie restore {backup} --data-dir NEWDIR --key-file KEYFILE"
    if populated.backend == "postgresql":
        restore += " --database-url EMPTY_DATABASE_URL"
    assert restore in result.stderr
    result = runner.invoke(app, ["check", "--data-dir", str(populated.data_dir), "--json"])
    assert result.exit_code == EXIT_CODE
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["checks"][2]["ok"] is False
    assert [c["ok"] for c in doc["checks"]] == [True, True, False, True, True]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_refuses_damaged_data_without_binding(populated: Instance, tmp_path: Path) -> None:
    d = populated.data_dir
    secret_bytes = secrets_of(populated)
    # The latest backup, from the [backup] target setting.
    target = tmp_path / "backups"
    for _ in range(2):
        subprocess.run([HYGIE, "backup", "create", "--data-dir", str(d), "--to", str(target)],
                       check=True, capture_output=True)
    latest = max(p.name for p in target.iterdir())
    with (d / "hygie.toml").open("a") as f:
        f.write(f'\n[backup]\ntarget = "{target}"\n')
    if populated.backend == "sqlite":
        encrypt(d / "hygie.db")
        expected = ("the database file hygie.db is not a SQLite database (encrypted or "
                    "overwritten?)")
    else:
        _edit(populated, text("DROP TABLE audit_event CASCADE"))
        expected = "lacks the table(s) audit_event (dropped?)"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "HYGIE_BACKUP_TARGET"}
    began = time.monotonic()
    proc = subprocess.run([HYGIE, "serve", "--data-dir", str(d), "--port", str(port)],
                          capture_output=True, timeout=120, env=env, check=False)
    assert proc.returncode == EXIT_CODE, proc.stderr
    err = proc.stderr.decode()
    lines = err.splitlines()
    assert lines[0].startswith("hygie: error: integrity check failed: ")
    assert lines[0].endswith(expected), lines[0]
    assert f"keep this data dir aside for investigation, do not repair or delete it: {d}" in err
    assert f"hygie backup verify {target / latest}" in err
    assert f"hygie restore {target / latest} --data-dir NEWDIR --key-file KEYFILE" in err
    assert "Traceback" not in err and "serving" not in err and proc.stdout == b""
    for secret in secret_bytes:
        assert secret not in proc.stderr
    assert FAMILY.encode() not in proc.stderr
    # The port was never bound: it is still free.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert time.monotonic() - began < 60


def test_a_directory_that_never_was_an_instance_is_a_plain_error(tmp_path: Path) -> None:
    """A mistyped --data-dir is not damage: exit 1 and the usual line, no restore steps."""
    for d in (tmp_path / "nothing", tmp_path):
        proc = subprocess.run([HYGIE, "serve", "--data-dir", str(d), "--port", "1"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (f"hygie: error: {d} is not a Hygie data directory (no "
                                       "hygie.toml); create one with 'hygie init --data-dir DIR'")
