"""Instance life cycle: creating a data directory, key status and rotation."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, update

from hygie.crypto import Keyring, KeySource
from hygie.crypto.keyring import write_secret_file
from hygie.errors import DataDirError, HygieError, KeyFailure
from hygie.settings import (
    CONFIG_NAME,
    KEY_FILE_NAME,
    default_database_url,
    load_settings,
    render_config,
    resolve_data_dir,
)
from hygie.store.db import make_engine, migrate, now_us, transaction
from hygie.store.keys import INDEX_OWNER, TENANT_OWNER, KeyStore
from hygie.store.tables import instance_meta, kek_version


def init_instance(data_dir: Path | str | None, *, key_source: str | None = None,
                  database_url: str | None = None, tenant: str = "default") -> dict[str, Any]:
    """Create a data dir (0700) with config, database schema and keyring. All or nothing."""
    path = resolve_data_dir(data_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DataDirError(f"{path} already exists and is not empty; Hygie will not touch it")
    created = not path.exists()
    source = KeySource.parse(key_source) if key_source else KeySource("file", str(
        path / KEY_FILE_NAME))
    # An env: source must already hold a keyring ('hygie keys generate').
    keyring = Keyring.load(source) if source.kind == "env" else Keyring.generate()
    url = database_url or default_database_url(path)
    instance_id = str(uuid.uuid4())
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        if source.kind == "file":
            key_path = Path(source.location)
            if key_path.exists():
                raise DataDirError(f"key file {key_path} already exists")
            write_secret_file(key_path, keyring.serialize())
        engine = make_engine(url, pool=False)
        try:
            if "alembic_version" in inspect(engine).get_table_names():
                raise DataDirError("the database already holds a Hygie schema; "
                                   "Hygie will not touch it")
            migrate(url)
            keys = KeyStore(keyring, tenant)
            with transaction(engine) as conn:
                keys.record_keyring(conn)
                keys.ensure(conn, INDEX_OWNER)
                keys.ensure(conn, TENANT_OWNER)
                conn.execute(instance_meta.insert(), [
                    {"key": "instance_id", "value": instance_id},
                    {"key": "created_at", "value": str(now_us())},
                ])
        finally:
            engine.dispose()
        from hygie.ledger.log import create_key, origin_for

        create_key(path, origin_for(instance_id))
        for db_file in path.glob("hygie.db*"):
            os.chmod(db_file, 0o600)
        (path / CONFIG_NAME).write_text(render_config(
            instance_id=instance_id, database_url=url, key_source=source))
        os.chmod(path / CONFIG_NAME, 0o600)
    except (HygieError, OSError, Exception):
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return {"instance_id": instance_id, "data_dir": str(path),
            "database": "sqlite" if url.startswith("sqlite") else "postgresql",
            "key_source": str(source)}


def key_status(rt: Any) -> dict[str, Any]:
    keys: KeyStore = rt.gate.keys
    with transaction(rt.engine) as conn:
        in_use = keys.versions_in_use(conn)
        from sqlalchemy import func, select

        from hygie.store.tables import data_key

        destroyed = conn.execute(select(func.count()).select_from(data_key).where(
            data_key.c.wrapped.is_(None))).scalar_one()
    return {
        "key_source": str(rt.settings.key_source),
        "active_version": keys.keyring.active_version,
        "versions": [{"version": v, "active": v == keys.keyring.active_version,
                      "data_keys": in_use.get(v, 0)} for v in keys.keyring.versions],
        "data_keys": sum(in_use.values()),
        "destroyed_keys": int(destroyed),
    }


def rotate_keys(rt: Any, *, out_file: Path | None = None) -> dict[str, Any]:
    """Add a KEK version, re-wrap every DEK under it, retire versions nothing uses.

    Order makes a crash at any point safe: the keyring holding old and new versions is written
    first; the database re-wrap is one transaction; old versions are dropped last.
    """
    settings = rt.settings
    source: KeySource = settings.key_source
    if source.kind == "env":
        if out_file is None:
            raise KeyFailure("the keyring comes from an environment variable: pass --out FILE "
                             "to receive the rotated keyring, then update the variable")
        target = KeySource("file", str(out_file))
    else:
        target = source
    keys: KeyStore = rt.gate.keys
    old = keys.keyring
    new = old.rotated()
    target.write(new)
    with transaction(rt.engine) as conn:
        rewrapped = keys.rewrap_all(conn, new)
        keys.keyring = new
        keys.record_keyring(conn)
    with transaction(rt.engine) as conn:
        in_use = keys.versions_in_use(conn)
        retire = {v for v in new.versions if v != new.active_version and not in_use.get(v)}
        if retire:
            conn.execute(update(kek_version).where(kek_version.c.version.in_(retire))
                         .values(retired_at=now_us()))
    final = new.retired(retire) if retire else new
    target.write(final)
    keys.keyring = final
    return {"active_version": final.active_version, "rewrapped": rewrapped,
            "retired": sorted(retire), "key_source": str(target)}


def migrate_instance(data_dir: Path | str | None) -> dict[str, Any]:
    """Bring an instance made by an earlier version of Hygie to this version's schema.

    Refuses a database at a revision this version does not know (made by a newer Hygie, or not
    a Hygie database); after the upgrade, checks that the key file still opens the instance and
    records the migration in the ledger. Run it with the server stopped, after a backup."""
    from hygie.ledger.audit import record_system_event
    from hygie.runtime import open_runtime
    from hygie.store.db import current_revision, head_revision, older_revisions

    settings = load_settings(resolve_data_dir(data_dir))
    engine = make_engine(settings.database_url, pool=False)
    try:
        before = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if before is None:
        raise DataDirError("the database holds no Hygie schema: nothing to migrate "
                           "('hygie init' creates a new instance)")
    if before != head and before not in older_revisions():
        raise DataDirError(f"the database schema is at revision {before}, which this version "
                           f"of Hygie ({head}) does not know: a newer Hygie made it")
    if before != head:
        migrate(settings.database_url)
    rt = open_runtime(settings)  # the schema is at head and the key file opens it
    try:
        if before != head:
            record_system_event(rt.engine, settings.tenant, "migrate", actor="cli:migrate",
                                detail=f"{before}->{head}")
    finally:
        rt.engine.dispose()
    return {"data_dir": str(settings.data_dir), "from": before, "to": head,
            "migrated": before != head}
