"""The restore drill (issue 5, item 5): restore the latest backup, check it, measure RTO/RPO."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select

from hygie.api.app import open_runtime
from hygie.crypto import Keyring
from hygie.crypto.keyring import write_secret_file
from hygie.ledger.log import load_key
from hygie.ledger.note import sign_note
from hygie.records.importer import run_import
from hygie.resilience.backup import MANIFEST, open_manifest
from hygie.resilience.retention import JOURNAL
from hygie.store.tables import audit_event

from .conftest import Instance, _pg_admin, _pg_url
from .test_backup import FAMILIES, bundles, cli, flip, make_backup


def drill(instance: Instance, target: Path, *args: str) -> tuple[int, dict[str, Any], Any]:
    result = cli("backup", "drill", "--data-dir", str(instance.data_dir), "--from", str(target),
                 "--work-dir", str(target.parent / "work"), "--json", *args)
    return result.exit_code, json.loads(result.stdout), result


def drills(instance: Instance) -> list[Any]:
    rt = open_runtime(instance.settings)
    with rt.engine.connect() as conn:
        rows = conn.execute(select(audit_event).where(audit_event.c.action == "backup-drill")
                            .order_by(audit_event.c.seq)).all()
    rt.engine.dispose()
    return list(rows)


def journal(target: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (target / JOURNAL).read_text().splitlines()]


def resign(instance: Instance, backup: Path, change: Any) -> None:
    """Rewrite the manifest as someone holding the instance's ledger key could."""
    manifest, problem = open_manifest(backup)
    assert manifest is not None, problem
    change(manifest)
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    (backup / MANIFEST).write_text(sign_note(body, load_key(instance.data_dir)))


def pg_databases(prefix: str) -> set[str]:
    with _pg_admin() as admin:
        return {r[0] for r in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))}


@pytest.fixture
def populated(instance: Instance) -> Instance:
    """The instance with the Synthea fixtures' 3 patients."""
    rt = open_runtime(instance.settings)
    try:
        for bundle in bundles():
            run_import(rt.gate, bundle, page_max=1000)
    finally:
        rt.engine.dispose()
    return instance


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def test_drill_restores_the_latest_backup_and_checks_it_end_to_end(
        populated: Instance, tmp_path: Path, work: Path) -> None:
    target = tmp_path / "backups"
    older = make_backup(populated, target)["backup"]
    latest = make_backup(populated, target)
    code, report, result = drill(populated, target, "--max-age", "1")
    assert code == 0, result.output
    assert report["ok"] is True and report["failed_check"] is None
    assert report["backup"] == Path(latest["backup"]).name != Path(older).name
    assert [c["check"] for c in report["checks"]] == [
        "find", "age", "manifest", "restore", "ledger", "counts", "sample"]
    assert report["backend"] == populated.backend
    assert report["resources_total"] == latest["resources"] > 100
    assert report["ledger_size"] >= latest["ledger_size"]
    assert report["sampled_patients"] == 3  # the fixtures hold 3 patients
    assert 3 <= report["sampled_resources"] <= 20 and report["sampled_shared"] > 0
    assert 0 < report["restore_seconds"] <= report["rto_seconds"]
    assert 0 <= report["rpo_seconds"] < 3600
    # The result is in the live ledger (no health data) and in the target's journal.
    [entry] = drills(populated)
    assert (entry.actor, entry.outcome, entry.code) == ("cli:drill", "success", None)
    assert entry.detail.startswith(report["backup"].removeprefix("hygie-backup-") + " rto=")
    assert f"n={latest['resources']}" in entry.detail
    last = journal(target)[-1]
    assert (last["backup"], last["check"], last["ok"]) == (report["backup"], "drill", True)
    assert last["manifest_sha256"] == hashlib.sha256(
        (Path(latest["backup"]) / MANIFEST).read_bytes()).hexdigest()
    # Nothing is left behind: no restored copy, no scratch database.
    assert list(work.iterdir()) == []
    if populated.backend == "postgresql":
        assert report["scratch_database"].startswith("hygie_drill_")
        assert report["scratch_database"] not in pg_databases("hygie_drill_")
    # No health data in what the operator sees.
    plain = cli("backup", "drill", "--data-dir", str(populated.data_dir), "--from", str(target))
    assert plain.exit_code == 0, plain.output
    assert "restore time (RTO)" in plain.stdout and "backup age (RPO)" in plain.stdout
    for family in FAMILIES:
        assert family.decode() not in plain.output + result.output
    assert len(drills(populated)) == 2
    ledger = cli("ledger", "verify", "--data-dir", str(populated.data_dir))
    assert ledger.exit_code == 0, ledger.output


def test_a_damaged_latest_backup_fails_the_drill_and_is_recorded(
        instance: Instance, tmp_path: Path, work: Path) -> None:
    target = tmp_path / "backups"
    make_backup(instance, target)
    latest = Path(make_backup(instance, target)["backup"])
    part = "database.sqlite" if instance.backend == "sqlite" else "database.pgdump"
    flip(latest / part, (latest / part).stat().st_size // 2)
    code, report, result = drill(instance, target)
    assert code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hygie: error: backup drill failed: "
                                                    "manifest: ")
    assert f"{part}: damaged" in lines[0]
    assert report["backup"] == latest.name and report["failed_check"] == "manifest"
    [entry] = drills(instance)
    assert (entry.outcome, entry.code) == ("error", "drill-manifest")
    assert journal(target)[-1]["ok"] is False
    # A newer backup whose manifest is unreadable is not skipped in favour of an older one.
    shutil.rmtree(latest)
    newest = Path(make_backup(instance, target)["backup"])
    (newest / MANIFEST).write_text("nothing to see\n")
    code, report, result = drill(instance, target)
    assert code != 0 and report["failed_check"] == "find"
    assert f"the newest backup {newest.name} is unusable" in result.stderr
    assert [e.code for e in drills(instance)] == ["drill-manifest", "drill-find"]
    assert list(work.iterdir()) == []


def test_max_age_fails_a_drill_on_a_stale_backup(instance: Instance, tmp_path: Path,
                                                 work: Path) -> None:
    target = tmp_path / "backups"
    backup = Path(make_backup(instance, target)["backup"])
    week_ago = datetime.now(UTC) - timedelta(days=7)
    resign(instance, backup, lambda m: m.update(
        created_at=week_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
    code, report, result = drill(instance, target, "--max-age", "26")
    assert code != 0
    assert report["failed_check"] == "age" and report["rpo_seconds"] >= 7 * 86400 - 60
    assert "age: the latest backup is 7 d 0 h old, more than --max-age 26 h" in result.stderr
    # The other checks still ran: the restore works, only the backup job is late.
    assert all(c["ok"] for c in report["checks"] if c["check"] != "age")
    assert report["rto_seconds"] > 0
    code, report, _ = drill(instance, target)  # without --max-age the same backup passes
    assert code == 0 and report["ok"]


def test_counts_differing_from_the_manifest_fail_the_drill(instance: Instance, tmp_path: Path,
                                                           work: Path) -> None:
    rt = open_runtime(instance.settings)
    run_import(rt.gate, bundles()[0], page_max=1000)
    rt.engine.dispose()
    target = tmp_path / "backups"
    backup = Path(make_backup(instance, target)["backup"])
    resign(instance, backup, lambda m: m["resources"].update(
        Observation=m["resources"]["Observation"] + 1))
    code, report, result = drill(instance, target)
    assert code != 0 and report["failed_check"] == "counts"
    assert "counts: Observation: " in result.stderr and "in the manifest" in result.stderr
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_records_that_do_not_decrypt_fail_the_sample_check(
        populated: Instance, tmp_path: Path, work: Path) -> None:
    target = tmp_path / "backups"
    backup = Path(make_backup(populated, target)["backup"])
    db = backup / "database.sqlite"
    conn = sqlite3.connect(db)
    with conn:  # every body damaged: whichever records the drill samples, they fail
        rows = conn.execute("SELECT rowid, body FROM resource WHERE body IS NOT NULL").fetchall()
        for rowid, body in rows:
            conn.execute("UPDATE resource SET body = ? WHERE rowid = ?",
                         (body[:-1] + bytes([body[-1] ^ 1]), rowid))
    conn.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    resign(populated, backup, lambda m: [p.update(sha256=digest, size=db.stat().st_size)
                                         for p in m["parts"] if p["name"] == db.name])
    code, report, result = drill(populated, target)
    assert code != 0 and report["failed_check"] == "sample"
    assert "cannot be read (integrity-failure)" in result.stderr
    for family in FAMILIES:
        assert family.decode() not in result.output
    assert list(work.iterdir()) == []


def test_a_key_file_that_does_not_open_the_backup_fails_the_keyring_check(
        instance: Instance, tmp_path: Path, work: Path) -> None:
    target = tmp_path / "backups"
    make_backup(instance, target)
    wrong = tmp_path / "stale-kek.json"
    write_secret_file(wrong, Keyring.generate().serialize())
    code, report, result = drill(instance, target, "--key-file", str(wrong))
    assert code != 0 and report["failed_check"] == "keyring"
    assert "key file does not open this backup" in result.stderr
    good = tmp_path / "kek-copy.json"
    shutil.copy(instance.data_dir / "kek.json", good)
    code, report, _ = drill(instance, target, "--key-file", str(good))
    assert code == 0 and report["ok"]
    assert [e.outcome for e in drills(instance)] == ["error", "success"]


def test_drill_without_backups_fails(instance: Instance, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "work").mkdir()
    code, report, result = drill(instance, tmp_path / "empty")
    assert code != 0 and report["failed_check"] == "find"
    assert result.stderr.strip() == ("hygie: error: backup drill failed: find: no backup of "
                                     f"this instance in {tmp_path / 'empty'}")
    [entry] = drills(instance)
    assert (entry.outcome, entry.code, entry.detail) == ("error", "drill-find", "none")


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)
def test_postgresql_drill_into_a_given_database(instance: Instance, tmp_path: Path,
                                                work: Path) -> None:
    target = tmp_path / "backups"
    make_backup(instance, target)
    # The live database is not empty: refused, untouched.
    code, report, result = drill(instance, target, "--database-url",
                                 instance.settings.database_url)
    assert code != 0 and report["failed_check"] == "restore"
    assert "not empty" in result.stderr
    assert cli("ledger", "verify", "--data-dir", str(instance.data_dir)).exit_code == 0
    # An empty one is used, then emptied again (not dropped: it is the operator's).
    name = f"hygie_drillto_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        code, report, result = drill(instance, target, "--database-url", _pg_url(name))
        assert code == 0, result.output
        assert report["scratch_database"] == name
        engine = create_engine(_pg_url(name))
        assert inspect(engine).get_table_names() == []
        engine.dispose()
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
