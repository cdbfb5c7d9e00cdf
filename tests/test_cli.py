"""The command line: init, client, keys, import (resumable), export, errors and help."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from hygie.access.actor import Actor
from hygie.api.app import open_runtime
from hygie.cli.main import app
from hygie.fhir.search import SearchQuery
from hygie.settings import load_settings

from .conftest import PG_ADMIN, Instance, _pg_url

HYGIE = str(Path(sys.executable).parent / "hygie")
runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([HYGIE, *args], capture_output=True, text=True, env=full_env,
                          timeout=120, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- init ------------------------------------------------------------------------------------
def test_init_creates_a_private_instance(tmp_path: Path) -> None:
    data = tmp_path / "inst"
    proc = run("init", "--data-dir", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["database"] == "sqlite" and info["key_source"] == f"file:{data / 'kek.json'}"
    assert mode(data) == 0o700
    for name in ("kek.json", "hygie.toml", "hygie.db"):
        assert mode(data / name) == 0o600, name
    keyring = json.loads((data / "kek.json").read_text())
    assert keyring["active"] == 1 and len(keyring["keys"]["1"]) == 44  # 32 bytes, base64
    # The key never reaches the database or the config.
    assert keyring["keys"]["1"].encode() not in (data / "hygie.db").read_bytes()
    assert keyring["keys"]["1"] not in (data / "hygie.toml").read_text()


def test_init_refuses_an_existing_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "inst"
    assert run("init", "--data-dir", str(data)).returncode == 0
    before = sorted(p.name for p in data.iterdir())
    again = run("init", "--data-dir", str(data))
    assert again.returncode == 1
    assert again.stderr.startswith("hygie: error: ") and again.stderr.count("\n") == 1
    assert "Traceback" not in again.stderr
    assert sorted(p.name for p in data.iterdir()) == before


def test_init_with_env_key_source(tmp_path: Path) -> None:
    keyring = cli("keys", "generate").stdout
    env = {"HYGIE_TEST_KEYRING": keyring}
    data = tmp_path / "inst"
    result = cli("init", "--data-dir", str(data), "--key-source", "env:HYGIE_TEST_KEYRING",
                 env=env)
    assert result.exit_code == 0, result.output
    assert not (data / "kek.json").exists()
    os.environ["HYGIE_TEST_KEYRING"] = keyring
    try:
        assert open_runtime(load_settings(data)).gate.keys.keyring.active_version == 1
    finally:
        del os.environ["HYGIE_TEST_KEYRING"]
    missing = cli("init", "--data-dir", str(tmp_path / "b"), "--key-source", "env:NOPE_NOT_SET")
    assert missing.exit_code == 1 and not (tmp_path / "b").exists()


def test_init_on_postgresql_refuses_a_used_database(tmp_path: Path) -> None:
    dbname = f"hygie_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        url = _pg_url(dbname)
        ok = cli("init", "--data-dir", str(tmp_path / "a"), "--database-url", url, "--json")
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["database"] == "postgresql"
        again = cli("init", "--data-dir", str(tmp_path / "b"), "--database-url", url)
        assert again.exit_code == 1 and "will not touch" in again.output
        assert not (tmp_path / "b").exists()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# -- clients ---------------------------------------------------------------------------------
def test_client_add_list_revoke(instance: Instance) -> None:
    d = str(instance.data_dir)
    added = cli("client", "add", "lab", "--data-dir", d, "--scope", "system/Patient.read",
                "--json")
    assert added.exit_code == 0, added.output
    creds = json.loads(added.stdout)
    assert set(creds) == {"client_id", "client_secret"}
    listed = json.loads(cli("client", "list", "--data-dir", d, "--json").stdout)
    assert listed[0]["client_id"] == creds["client_id"]
    assert listed[0]["scope"] == "system/Patient.read" and listed[0]["revoked_at"] is None
    assert creds["client_secret"] not in cli("client", "list", "--data-dir", d).stdout
    assert cli("client", "revoke", creds["client_id"], "--data-dir", d).exit_code == 0
    assert json.loads(cli("client", "list", "--data-dir", d, "--json").stdout)[0]["revoked_at"]
    again = cli("client", "revoke", creds["client_id"], "--data-dir", d)
    assert again.exit_code == 1 and "hygie: error:" in again.output
    bad = cli("client", "add", "x", "--data-dir", d, "--scope", "everything")
    assert bad.exit_code == 1 and "scope" in bad.output


# -- import / export ------------------------------------------------------------------------
def test_import_is_resumable_and_export_writes_ndjson(instance: Instance, tmp_path: Path,
                                                      synthea_bundles: list[Path]) -> None:
    d = str(instance.data_dir)
    first = cli("import", str(synthea_bundles[0]), "--data-dir", d, "--json")
    assert first.exit_code == 0, first.output
    n0 = json.loads(first.stdout)["resources"]
    # As if the first run had been interrupted after one bundle: the folder resumes.
    rest = json.loads(cli("import", str(synthea_bundles[0].parent), "--data-dir", d,
                          "--json").stdout)
    assert rest["bundles_skipped"] == 1 and rest["bundles_imported"] == len(synthea_bundles) - 1
    again = json.loads(cli("import", str(synthea_bundles[0].parent), "--data-dir", d,
                           "--json").stdout)
    assert again["bundles_imported"] == 0 and again["resources"] == 0
    total = n0 + rest["resources"]
    out = tmp_path / "export"
    exported = cli("export", "--out", str(out), "--data-dir", d, "--json")
    assert exported.exit_code == 0, exported.output
    counts = json.loads(exported.stdout)["counts"]
    assert sum(counts.values()) == total
    patients = (out / "Patient.ndjson").read_text().splitlines()
    assert len(patients) == counts["Patient"] == len(synthea_bundles)
    assert all(json.loads(line)["resourceType"] == "Patient" for line in patients)
    assert mode(out / "Patient.ndjson") == 0o600
    refused = cli("export", "--out", str(out), "--data-dir", d)
    assert refused.exit_code == 1 and "not empty" in refused.output
    # NDJSON round trip into a fresh type keeps ids (PUT semantics).
    ndjson = tmp_path / "orgs.ndjson"
    shutil.copy(out / "Organization.ndjson", ndjson)
    reimport = json.loads(cli("import", str(ndjson), "--data-dir", d, "--json").stdout)
    assert reimport["resources"] == counts["Organization"]


def test_import_errors_are_one_line(instance: Instance, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = cli("import", str(bad), "--data-dir", str(instance.data_dir))
    assert result.exit_code == 1
    assert result.output.strip().startswith("hygie: error:")
    assert len(result.output.strip().splitlines()) == 1
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"resourceType": "Patient", "birthDate": "x"}))
    result = cli("import", str(invalid), "--data-dir", str(instance.data_dir))
    assert result.exit_code == 1 and "birthDate" in result.output
    assert cli("import", str(tmp_path / "missing"), "--data-dir",
               str(instance.data_dir)).exit_code == 1


# -- keys ------------------------------------------------------------------------------------
def test_key_rotation_rewraps_and_retires(instance: Instance, synthea_bundles: list[Path]
                                          ) -> None:
    d = str(instance.data_dir)
    cli("import", str(synthea_bundles[0]), "--data-dir", d)
    status = json.loads(cli("keys", "status", "--data-dir", d, "--json").stdout)
    assert status["active_version"] == 1 and status["data_keys"] >= 3
    old_keyring = (instance.data_dir / "kek.json").read_text()
    rotated = cli("keys", "rotate", "--data-dir", d, "--json")
    assert rotated.exit_code == 0, rotated.output
    result = json.loads(rotated.stdout)
    assert result == {"active_version": 2, "rewrapped": status["data_keys"], "retired": [1],
                      "key_source": f"file:{d}/kek.json"}
    after = json.loads(cli("keys", "status", "--data-dir", d, "--json").stdout)
    assert [v["version"] for v in after["versions"]] == [2]
    assert after["versions"][0]["data_keys"] == status["data_keys"]
    # Data is still readable with the new keyring.
    rt = open_runtime(load_settings(d))
    with rt.gate.open(Actor.system("test")) as door:
        rows, total = door.search(SearchQuery(rtype="Patient", count=10))
    assert total == 1 and rows[0].body
    rt.engine.dispose()
    # The old keyring no longer opens this instance.
    (instance.data_dir / "kek.json").write_text(old_keyring)
    refused = cli("keys", "status", "--data-dir", d)
    assert refused.exit_code == 1 and "missing from the keyring" in refused.output


def test_wrong_keyring_is_refused(instance: Instance) -> None:
    d = str(instance.data_dir)
    (instance.data_dir / "kek.json").write_text(cli("keys", "generate").stdout)
    result = run("serve", "--data-dir", d, "--port", "1")
    assert result.returncode == 3  # the start-up integrity check (docs/operations.md)
    assert "does not open this database" in result.stderr and "Traceback" not in result.stderr


def test_encrypted_keyring_is_one_clear_line(instance: Instance) -> None:
    """A key file overwritten with binary (as ransomware does) is refused in one line."""
    (instance.data_dir / "kek.json").write_bytes(os.urandom(64) + b"\xff\xfe")
    result = cli("keys", "status", "--data-dir", str(instance.data_dir))
    assert result.exit_code == 1
    assert "is not a valid keyring" in result.output and "unexpected" not in result.output


def test_patient_erase_needs_confirmation(instance: Instance) -> None:
    result = cli("patient", "erase", "abc", "--data-dir", str(instance.data_dir))
    assert result.exit_code == 1 and "--yes" in result.output


# -- help and errors ------------------------------------------------------------------------
COMMANDS = [[], ["init"], ["serve"], ["client"], ["client", "add"], ["client", "list"],
            ["client", "revoke"], ["keys"], ["keys", "status"], ["keys", "rotate"],
            ["keys", "generate"], ["import"], ["export"], ["patient"], ["patient", "erase"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hygie")
def test_every_command_has_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_missing_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYGIE_DATA_DIR"}
    proc = subprocess.run([HYGIE, "client", "list"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("hygie: error: no data directory: pass --data-dir DIR or set "
                                   "HYGIE_DATA_DIR")
    proc = run("client", "list", "--data-dir", str(tmp_path / "nothing"))
    assert proc.returncode == 1 and "is not a Hygie data directory" in proc.stderr
