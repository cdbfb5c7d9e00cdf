"""Backups (issue 5, items 1, 3, 4): create, verify (one flipped byte is named), restore."""

from __future__ import annotations

import json
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hygie.access.actor import Actor
from hygie.api.app import open_runtime
from hygie.cli.main import app
from hygie.crypto import Keyring
from hygie.crypto.keyring import write_secret_file
from hygie.fhir.search import SearchQuery
from hygie.ledger.note import Signer
from hygie.records.importer import run_import
from hygie.settings import Settings, load_settings

from .conftest import FIXTURES, Instance, _pg_admin, _pg_url

runner = CliRunner()
FAMILIES = [b"Fonseca", b"Kreiger", b"Hintz"]


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def bundles() -> list[Path]:
    return sorted((FIXTURES / "synthea").glob("*.json"))


@pytest.fixture
def populated(instance: Instance) -> Instance:
    rt = open_runtime(instance.settings)
    try:
        for bundle in bundles():
            run_import(rt.gate, bundle, page_max=1000)
    finally:
        rt.engine.dispose()
    return instance


@pytest.fixture
def fresh_db(instance: Instance) -> Iterator[str | None]:
    """PostgreSQL: an empty database to restore into (dropped afterwards)."""
    if instance.backend != "postgresql":
        yield None
        return
    name = f"hygie_r_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_backup(instance: Instance, target: Path) -> dict[str, Any]:
    result = cli("backup", "create", "--data-dir", str(instance.data_dir), "--to", str(target),
                 "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def restore_args(backup: str, data_dir: Path, key_file: Path, db_url: str | None) -> list[str]:
    args = ["restore", backup, "--data-dir", str(data_dir), "--key-file", str(key_file)]
    return args + (["--database-url", db_url] if db_url else [])


def everything(settings: Settings) -> dict[tuple[str, str], bytes]:
    rt = open_runtime(settings)
    try:
        found: dict[tuple[str, str], bytes] = {}
        with rt.gate.open(Actor.system("test"), readonly=True) as door:
            for rtype in door.resource_types():
                offset = 0
                while True:
                    page, _ = door.search(SearchQuery(rtype=rtype, count=500, offset=offset))
                    for f in page:
                        assert f.body is not None
                        found[(f.rtype, f.rid)] = f.body
                    if len(page) < 500:
                        break
                    offset += 500
        return found
    finally:
        rt.engine.dispose()


def test_backup_verify_restore_round_trip(populated: Instance, fresh_db: str | None,
                                          tmp_path: Path) -> None:
    target = tmp_path / "backups"
    info = make_backup(populated, target)
    backup = Path(info["backup"])
    assert backup.parent == target and backup.name.startswith("hygie-backup-")
    assert info["resources"] > 100 and info["ledger_size"] > 0
    assert not list(target.glob("*.partial"))
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for part in backup.iterdir():
        assert stat.S_IMODE(part.stat().st_mode) == 0o600, part
    # No keyring, no private ledger key, no names in clear.
    names = {p.name for p in backup.iterdir()}
    assert "kek.json" not in names and "ledger.key" not in names
    kek = (populated.data_dir / "kek.json").read_bytes()
    ledger_key = (populated.data_dir / "ledger.key").read_text().strip().encode()
    for part in backup.iterdir():
        raw = part.read_bytes()
        assert kek not in raw and ledger_key not in raw
        assert b'"keys"' not in raw
        for family in FAMILIES:
            assert family not in raw, (part.name, family)
    config = (backup / "hygie.toml").read_text()
    assert "database_url =" not in config.replace("# database_url", "")
    assert "key_source =" not in config.replace("# key_source", "")
    manifest_text = (backup / "manifest.json").read_text()
    assert '"format": "hygie-backup/1"' in manifest_text
    # Verify.
    result = cli("backup", "verify", str(backup), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    original = everything(populated.settings)
    assert len(original) == info["resources"]
    # Restore into a fresh data dir.
    key_file = tmp_path / "safe" / "kek.json"
    key_file.parent.mkdir()
    shutil.copy(populated.data_dir / "kek.json", key_file)
    new_dir = tmp_path / "restored"
    result = cli(*restore_args(str(backup), new_dir, key_file, fresh_db), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resources"] == info["resources"]
    assert stat.S_IMODE((new_dir / "kek.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((new_dir / "ledger.key").stat().st_mode) == 0o600
    assert (new_dir / "ledger.key").read_text() == (populated.data_dir / "ledger.key").read_text()
    settings = load_settings(new_dir)
    assert settings.instance_id == populated.settings.instance_id
    assert settings.key_source.location == str(new_dir / "kek.json")
    if fresh_db:
        assert settings.database_url == fresh_db
    else:
        assert settings.database_url == f"sqlite:///{new_dir / 'hygie.db'}"
    assert everything(settings) == original
    result = cli("ledger", "verify", "--data-dir", str(new_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    assert not [p for p in tmp_path.iterdir() if "restoring" in p.name]


def flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def test_one_flipped_byte_names_the_damaged_part(instance: Instance, tmp_path: Path) -> None:
    rt = open_runtime(instance.settings)
    run_import(rt.gate, bundles()[0], page_max=1000)
    rt.engine.dispose()
    backup = Path(make_backup(instance, tmp_path / "b")["backup"])
    parts = sorted(p.name for p in backup.iterdir())
    assert len(parts) == 5
    for name in parts:
        for where in ("start", "middle", "end"):
            copy = tmp_path / f"copy-{name}-{where}"
            shutil.copytree(backup, copy)
            size = (copy / name).stat().st_size
            flip(copy / name, {"start": 0, "middle": size // 2, "end": size - 2}[where])
            result = cli("backup", "verify", str(copy))
            assert result.exit_code != 0, (name, where)
            assert f"{name}: " in result.stderr, (name, where, result.stderr)
            others = [p for p in parts if p != name]
            assert not any(f"{p}: " in result.stderr for p in others), result.stderr
            shutil.rmtree(copy)
    # A pinned verifier key other than the instance's is refused.
    stranger = Signer.generate("hygie.local/ledger/someone-else").verifier_key()
    result = cli("backup", "verify", str(backup), "--verifier-key", stranger)
    assert result.exit_code != 0 and "manifest.json" in result.stderr
    mine = Signer.from_signing_key_string(
        (instance.data_dir / "ledger.key").read_text().strip()).verifier_key()
    assert cli("backup", "verify", str(backup), "--verifier-key", mine).exit_code == 0
    # A damaged backup is never restored: the database part (hashed as it is restored) and
    # any other part (hashed before).
    key = instance.data_dir / "kek.json"
    db_part = next(p for p in parts if p.startswith("database"))
    damaged = tmp_path / "damaged-db"
    shutil.copytree(backup, damaged)
    flip(damaged / db_part, (damaged / db_part).stat().st_size // 2)
    result = cli(*restore_args(str(damaged), tmp_path / "r", key, None))
    assert result.exit_code != 0 and "fails verification" in result.stderr
    assert f"{db_part}: damaged" in result.stderr
    assert not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if "restoring" in p.name]
    flip(backup / "hygie.toml", 3)
    result = cli(*restore_args(str(backup), tmp_path / "r", key, None))
    assert result.exit_code != 0 and "fails verification" in result.stderr
    assert not (tmp_path / "r").exists()


def test_wrong_key_file_is_refused_and_nothing_left(instance: Instance, fresh_db: str | None,
                                                    tmp_path: Path) -> None:
    backup = make_backup(instance, tmp_path / "b")["backup"]
    wrong = tmp_path / "wrong.json"
    write_secret_file(wrong, Keyring.generate().serialize())
    new_dir = tmp_path / "restored"
    result = cli(*restore_args(backup, new_dir, wrong, fresh_db))
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "key file does not open this backup" in lines[0], lines
    assert not new_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "data", "wrong.json"]
    if fresh_db:
        from sqlalchemy import create_engine, inspect

        engine = create_engine(fresh_db)
        assert inspect(engine).get_table_names() == []
        engine.dispose()
    # A PostgreSQL backup needs a target database; a non-empty one is refused.
    if instance.backend == "postgresql":
        result = cli(*restore_args(backup, new_dir, instance.data_dir / "kek.json", None))
        assert result.exit_code != 0 and "--database-url" in result.stderr
        result = cli(*restore_args(backup, new_dir, instance.data_dir / "kek.json",
                                   instance.settings.database_url))
        assert result.exit_code != 0 and "not empty" in result.stderr
        assert not new_dir.exists()


def test_force_keeps_the_replaced_dir_aside(instance: Instance, fresh_db: str | None,
                                            tmp_path: Path) -> None:
    backup = make_backup(instance, tmp_path / "b")["backup"]
    new_dir = tmp_path / "restored"
    new_dir.mkdir()
    (new_dir / "precious.txt").write_text("old data")
    key = instance.data_dir / "kek.json"
    result = cli(*restore_args(backup, new_dir, key, fresh_db))
    assert result.exit_code != 0 and "--force" in result.stderr
    assert (new_dir / "precious.txt").read_text() == "old data"
    result = cli(*restore_args(backup, new_dir, key, fresh_db), "--force", "--json")
    assert result.exit_code == 0, result.output
    replaced = Path(json.loads(result.stdout)["replaced"])
    assert replaced.name.startswith("restored.replaced-")
    assert (replaced / "precious.txt").read_text() == "old data"
    assert (new_dir / "hygie.toml").is_file() and not (new_dir / "precious.txt").exists()
    assert cli("ledger", "verify", "--data-dir", str(new_dir)).exit_code == 0


def test_backup_names_are_never_reused(instance: Instance, tmp_path: Path) -> None:
    first = make_backup(instance, tmp_path)["backup"]
    second = make_backup(instance, tmp_path)["backup"]
    assert first != second
    assert cli("backup", "verify", first).exit_code == 0
    assert cli("backup", "verify", second).exit_code == 0


def test_backup_and_restore_are_recorded_in_the_ledger(instance: Instance,
                                                       fresh_db: str | None,
                                                       tmp_path: Path) -> None:
    """The one path around the gate (it copies ciphertext) records itself (DESIGN.md)."""
    from sqlalchemy import select

    from hygie.api.app import open_runtime
    from hygie.store.tables import audit_event

    backup = make_backup(instance, tmp_path / "backups")["backup"]

    def entries(settings: Settings, action: str) -> list[Any]:
        rt = open_runtime(settings)
        with rt.engine.connect() as conn:
            rows = conn.execute(select(audit_event).where(audit_event.c.action == action)).all()
        rt.engine.dispose()
        return list(rows)

    made = entries(instance.settings, "backup")
    assert len(made) == 1 and made[0].actor == "cli:backup"
    assert made[0].detail == Path(backup).name[:64]
    new_dir = tmp_path / "restored"
    key = tmp_path / "kek.json"
    shutil.copy(instance.data_dir / "kek.json", key)
    result = cli(*restore_args(backup, new_dir, key, fresh_db))
    assert result.exit_code == 0, result.output
    restored = load_settings(new_dir)
    assert [r.actor for r in entries(restored, "restore")] == ["cli:restore"]
    assert len(entries(restored, "backup")) == 1  # the backup's own entry came along
    assert cli("ledger", "verify", "--data-dir", str(new_dir)).exit_code == 0


def test_backup_while_writers_write_is_a_consistent_snapshot(instance: Instance,
                                                             fresh_db: str | None,
                                                             tmp_path: Path) -> None:
    """Writers go on during a backup; the backup holds a consistent prefix of their work."""
    import threading

    from hygie.resilience.backup import create_backup

    rt = open_runtime(instance.settings)
    stop = threading.Event()
    written: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                with rt.gate.open(Actor.system("writer")) as door:
                    written.append(door.create("Patient", {
                        "resourceType": "Patient", "name": [{"family": "Ecrivain"}]}).rid)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        for bundle in bundles()[:2]:
            run_import(rt.gate, bundle, page_max=1000)
        thread = threading.Thread(target=writer)
        thread.start()
        while len(written) < 5:
            threading.Event().wait(0.01)
        before = len(written)
        result = create_backup(instance.data_dir, tmp_path / "backups")
        during = len(written) - before
        stop.set()
        thread.join(timeout=60)
    finally:
        stop.set()
        rt.engine.dispose()
    assert not errors, errors
    assert during > 0  # writes were not held up for the whole backup
    key = tmp_path / "kek.json"
    shutil.copy(instance.data_dir / "kek.json", key)
    new_dir = tmp_path / "restored"
    restored = cli(*restore_args(str(result.path), new_dir, key, fresh_db), "--json")
    assert restored.exit_code == 0, restored.output
    live = everything(instance.settings)
    copy = everything(load_settings(new_dir))
    assert len(copy) == result.resources
    # A prefix: every restored resource is identical to the live one, and the writer's
    # patients in the copy are exactly its first ones.
    assert all(live[k] == v for k, v in copy.items())
    mine = {rid for (rtype, rid) in copy if rtype == "Patient"} & set(written)
    assert mine == set(written[:len(mine)])
    assert cli("ledger", "verify", "--data-dir", str(new_dir)).exit_code == 0
