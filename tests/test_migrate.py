"""Upgrading a data dir made by an earlier Hygie: the start-up check says 'hygie migrate' (not
'restore a backup'), and ``hygie migrate`` brings the schema to this version's head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.store.db import alembic_config, head_revision, make_engine, older_revisions
from hygie.store.tables import audit_event

from .conftest import Instance

HYGIE = str(Path(sys.executable).parent / "hygie")
runner = CliRunner()


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def downgrade(instance: Instance) -> str:
    from alembic import command

    command.downgrade(alembic_config(instance.settings.database_url), "-1")
    engine = make_engine(instance.settings.database_url, pool=False)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def test_an_older_schema_is_migrated_not_restored(instance: Instance) -> None:
    d = str(instance.data_dir)
    older = downgrade(instance)
    assert older in older_revisions() and older != head_revision()
    checked = cli("check", "--data-dir", d)
    assert checked.exit_code == 4, checked.output
    assert "needs an upgrade" in checked.output and f"hygie migrate --data-dir {d}" in \
        checked.output
    assert "hygie restore" not in checked.output
    served = subprocess.run([HYGIE, "serve", "--data-dir", d, "--port", "1"],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ})
    assert served.returncode == 4 and "hygie migrate" in served.stderr
    assert "Traceback" not in served.stderr
    migrated = cli("migrate", "--data-dir", d, "--json")
    assert migrated.exit_code == 0, migrated.output
    assert json.loads(migrated.stdout) == {"data_dir": d, "from": older,
                                           "to": head_revision(), "migrated": True}
    assert cli("check", "--data-dir", d).exit_code == 0
    again = cli("migrate", "--data-dir", d)
    assert again.exit_code == 0 and "up to date" in again.output
    engine = make_engine(instance.settings.database_url, pool=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_event.c.actor, audit_event.c.detail)
                                .where(audit_event.c.action == "migrate")).all()
    finally:
        engine.dispose()
    assert [(r.actor, r.detail) for r in rows] == [("cli:migrate",
                                                    f"{older}->{head_revision()}")]
    assert cli("ledger", "verify", "--data-dir", d).exit_code == 0


def test_an_unknown_schema_is_refused(instance: Instance) -> None:
    engine = make_engine(instance.settings.database_url, pool=False)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    d = str(instance.data_dir)
    refused = cli("migrate", "--data-dir", d)
    assert refused.exit_code == 1
    assert "revision 9999, which this version of Hygie" in refused.output
    checked = cli("check", "--data-dir", d)
    assert checked.exit_code == 3 and "hygie restore" in checked.output
