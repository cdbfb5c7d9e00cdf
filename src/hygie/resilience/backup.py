"""Backups: a signed, verifiable snapshot of an instance, and its restore (docs/operations.md).

A backup is a directory ``hygie-backup-<UTC time>-<id>`` holding:

- ``database.sqlite`` (SQLite online backup API) or ``database.pgdump`` (``pg_dump -Fc``, taken
  in an exported snapshot so the counts in the manifest describe exactly the dumped data);
- ``hygie.toml`` with the ``database_url`` and ``key_source`` lines removed (marked);
- ``ledger-key.wrapped``: the ledger's Ed25519 signing key, wrapped (AEAD) under the instance's
  key-encryption key — restorable only with the key file, useless to whoever merely reads the
  backup, who therefore cannot forge checkpoints or manifests;
- ``ledger-checkpoint.note``: the signed checkpoint taken just before the snapshot;
- ``manifest.json``: a signed note whose text is the canonical JSON manifest (format, instance,
  time, backend, each part's SHA-256 and size, resource counts, ledger size and root, KEK check
  values, the ledger's public verifier key).

The key-encryption keyring (``kek.json``) is never part of a backup.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, make_url, select, text

from hygie.crypto import Keyring, KeySource
from hygie.crypto.keyring import write_secret_file
from hygie.errors import DataDirError, HygieError, IntegrityFailure, KeyFailure
from hygie.fsutil import copy_new, fsync_dir, fsync_file, write_new
from hygie.ledger import audit
from hygie.ledger.checkpoint import open_checkpoint
from hygie.ledger.log import KEY_FILE, Ledger, origin_for
from hygie.ledger.merkle import EMPTY_ROOT
from hygie.ledger.note import NoteError, Signer, Verifier, open_note, sign_note
from hygie.settings import (
    CONFIG_NAME,
    DB_FILE_NAME,
    KEY_FILE_NAME,
    load_settings,
    resolve_data_dir,
)
from hygie.store.db import READONLY, WriteLock, make_engine, write_lock
from hygie.store.keys import KeyStore
from hygie.store.tables import kek_version

FORMAT = "hygie-backup/1"
MANIFEST = "manifest.json"
CONFIG_PART = "hygie.toml"
LEDGER_KEY_PART = "ledger-key.wrapped"
CHECKPOINT_PART = "ledger-checkpoint.note"
SQLITE_PART = "database.sqlite"
PG_PART = "database.pgdump"
LEDGER_KEY_CONTEXT = b"hygie/backup/ledger-key/1"
REMOVED = "# {key} = <removed by hygie backup: set on restore>"


class BackupError(HygieError):
    """A backup cannot be made, is damaged, or cannot be restored."""

    code = "backup-error"
    status = 500
    issue_code = "exception"


# -- small file helpers ---------------------------------------------------------------------
def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def sanitize_config(config: str) -> str:
    """The instance config without the lines naming the database and the key source."""
    lines = []
    for ln in config.splitlines():
        key = ln.split("=", 1)[0].strip()
        lines.append(REMOVED.format(key=key) if key in ("database_url", "key_source") else ln)
    return "\n".join(lines) + "\n"


def restored_config(config: str, *, database_url: str, key_source: KeySource) -> str:
    values = {"database_url": f'database_url = "{database_url}"',
              "key_source": f'key_source = "{key_source}"'}
    out = []
    for ln in config.splitlines():
        for key, line in values.items():
            if ln == REMOVED.format(key=key) or ln.split("=", 1)[0].strip() == key:
                ln = line
                values[key] = ""
        out.append(ln)
    missing = [v for v in values.values() if v]
    if missing:
        at = next((i + 1 for i, ln in enumerate(out) if ln.strip() == "[hygie]"), None)
        if at is None:
            raise BackupError("the backup's hygie.toml has no [hygie] table")
        out[at:at] = missing
    return "\n".join(out) + "\n"


# -- PostgreSQL connection arguments ----------------------------------------------------------
def pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq arguments and environment for ``url`` (the password only in PGPASSWORD)."""
    u = make_url(url)
    args: list[str] = []
    env = dict(os.environ)
    if u.host:
        args += ["--host", u.host]
    if u.port:
        args += ["--port", str(u.port)]
    if u.username:
        args += ["--username", u.username]
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    for key, var in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
        if key in u.query:
            value = u.query[key]
            env[var] = value if isinstance(value, str) else value[0]
    if not u.database:
        raise BackupError("the PostgreSQL URL names no database")
    args += ["--dbname", u.database]
    return args, env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    try:
        # The arguments are built here from a parsed URL (no shell); the password is in env.
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,  # noqa: S603
                              check=False)
    except FileNotFoundError:
        raise BackupError(f"{cmd[0]} is not installed (PostgreSQL client tools are needed)"
                          ) from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupError(f"{what} failed: {detail}")


# -- counts -----------------------------------------------------------------------------------
COUNT_SQL = ("SELECT rtype, count(*) FROM resource WHERE tenant = :t AND current AND NOT deleted "
             "GROUP BY rtype ORDER BY rtype")


def _kek_checks(rows: Any) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in rows}


# -- create -----------------------------------------------------------------------------------
@dataclass
class BackupResult:
    path: Path
    size: int
    resources: int
    ledger_size: int
    manifest: dict[str, Any] = field(default_factory=dict)


def create_backup(data_dir: Path | str | None, target: Path | str) -> BackupResult:
    """Snapshot the instance at ``data_dir`` into a new directory under ``target``."""
    from hygie.runtime import open_runtime

    settings = load_settings(data_dir)
    rt = open_runtime(settings)
    try:
        name = f"hygie-backup-{_stamp()}-{secrets.token_hex(4)}"
        # The one path around the gate (it copies ciphertext) records itself in the ledger,
        # before the checkpoint the backup carries.
        audit.record_system_event(rt.engine, settings.tenant, "backup", actor="cli:backup",
                                  detail=name[:64])
        note = rt.ledger.checkpoint()
        signer: Signer = rt.ledger.signer
        cp = open_checkpoint(note, signer.verifier(), rt.ledger.origin)
        target_dir = Path(target).expanduser().resolve()
        target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = target_dir / name
        partial = target_dir / f".{name}.partial"
        if final.exists() or partial.exists():
            raise BackupError(f"{final} already exists; a backup is never overwritten")
        partial.mkdir(mode=0o700)
        try:
            backend = rt.engine.dialect.name
            if backend == "sqlite":
                db_part = SQLITE_PART
                counts, kek, db_digest = _sqlite_snapshot(
                    settings.database_url, partial / db_part, settings.tenant,
                    write_lock(rt.engine))
            else:
                db_part = PG_PART
                counts, kek = _pg_snapshot(rt.engine, settings.database_url,
                                           partial / db_part, settings.tenant)
                db_digest = None
            fsync_file(partial / db_part)
            write_new(partial / CONFIG_PART,
                       sanitize_config(settings.config_path.read_text()).encode())
            version, wrapped = rt.gate.keys.keyring.wrap(
                signer.signing_key_string().encode(), LEDGER_KEY_CONTEXT)
            write_new(partial / LEDGER_KEY_PART, json.dumps(
                {"kek_version": version, "wrapped": base64.b64encode(wrapped).decode()}
            ).encode() + b"\n")
            write_new(partial / CHECKPOINT_PART, note.encode())
            parts = []
            for part in (db_part, CONFIG_PART, LEDGER_KEY_PART, CHECKPOINT_PART):
                sha, size = (db_digest if part == db_part and db_digest
                             else _digest(partial / part))
                parts.append({"name": part, "sha256": sha, "size": size})
            manifest = {
                "format": FORMAT,
                "instance_id": settings.instance_id,
                "tenant": settings.tenant,
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "backend": backend,
                "parts": parts,
                "resources": counts,
                "ledger": {"size": cp.size, "root": base64.b64encode(cp.root_hash).decode(),
                           "origin": rt.ledger.origin, "checkpoint": CHECKPOINT_PART},
                "kek_check_values": kek,
                "verifier_key": signer.verifier_key(),
            }
            body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
            write_new(partial / MANIFEST, sign_note(body, signer).encode())
            fsync_dir(partial)
            if final.exists():
                raise BackupError(f"{final} already exists; a backup is never overwritten")
            os.rename(partial, final)
            fsync_dir(target_dir)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    finally:
        rt.engine.dispose()
    total = sum(p.stat().st_size for p in final.iterdir())
    return BackupResult(final, total, sum(counts.values()), cp.size, manifest)


def _sqlite_snapshot(url: str, dest_path: Path, tenant: str, lock: WriteLock | None
                     ) -> tuple[dict[str, int], dict[str, str], tuple[str, int] | None]:
    """A consistent copy of the SQLite database while the server runs: counts, KEK check
    values and, on the fast path, the copy's SHA-256 and size.

    Fast path (one sequential read of the file, hashed as it is written): under Hygie's write
    lock the WAL is checkpointed to empty and a read transaction starts; the lock is then
    released. A reader that started on a fully checkpointed WAL reads the database file alone
    and holds SQLite's WAL read-lock 0, which keeps every checkpoint from writing into the file
    until it ends: writers go on (into the WAL) while the file is copied byte for byte, and
    the counts come from the same snapshot. If the WAL could not be emptied (a writer outside
    Hygie's lock), SQLite's online backup API copies page by page instead.
    """
    src_path = make_url(url).database
    if not src_path:
        raise BackupError("the SQLite database is not a file")
    src = sqlite3.connect(src_path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        with lock.held() if lock else contextlib.nullcontext():
            busy, frames, _ = src.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot
        wal = Path(src_path + "-wal")
        if busy == 0 and frames == 0 and (not wal.exists() or wal.stat().st_size == 0):
            with ThreadPoolExecutor(max_workers=1) as pool:
                counted = pool.submit(_sqlite_counts, src, tenant)
                digest = _copy_rollback_mode(Path(src_path), dest_path)
                counts, kek = counted.result()
            src.execute("COMMIT")
            return counts, kek, digest
        src.execute("COMMIT")
        dest = sqlite3.connect(dest_path)
        try:
            src.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            counts, kek = _sqlite_counts(dest, tenant)
        finally:
            dest.close()
    finally:
        src.close()
    for extra in dest_path.parent.glob(dest_path.name + "-*"):
        extra.unlink()
    return counts, kek, None


def _sqlite_counts(conn: sqlite3.Connection, tenant: str
                   ) -> tuple[dict[str, int], dict[str, str]]:
    # NOT INDEXED: one sequential scan; through an index, every row is a random lookup
    # (1,000,000 resources: 1-2 s instead of 3-20 s, bench/bench_backup.py).
    counts = {str(r[0]): int(r[1]) for r in conn.execute(
        COUNT_SQL.replace(":t", "?").replace("FROM resource", "FROM resource NOT INDEXED"),
        (tenant,))}
    kek = _kek_checks(conn.execute(
        "SELECT version, check_value FROM kek_version WHERE retired_at IS NULL"))
    return counts, kek


def _copy_rollback_mode(src: Path, dest: Path) -> tuple[str, int]:
    """Copy a SQLite file that nothing writes to (see :func:`_sqlite_snapshot`) into a new
    file, and hash the copy's bytes; the copy's header says rollback-journal mode (bytes 18-19
    = 1, as ``PRAGMA journal_mode=DELETE`` writes them), so it is one self-contained file that
    never looks for a WAL.

    The kernel copies (``copy_file_range``: no trip through Python) while a thread reads and
    hashes the same, unchanging, file: the two overlap on two cores."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashed = pool.submit(_hash_file, src, _ROLLBACK_HEADER)
        size = copy_new(src, dest, patch=_ROLLBACK_HEADER)
        digest = hashed.result()
    if digest[1] != size:
        raise BackupError("the SQLite database file changed while it was being copied")
    return digest


_ROLLBACK_HEADER = (18, b"\x01\x01")  # file format write/read versions: 1 = rollback journal


def _hash_file(path: Path, patch: tuple[int, bytes] | None = None) -> tuple[str, int]:
    """SHA-256 and size of a file as it would read with ``patch`` applied to its first chunk."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        first = True
        while chunk := f.read(8 << 20):
            if first:
                if len(chunk) < 100 or chunk[:16] != b"SQLite format 3\x00":
                    raise BackupError("the SQLite database file is damaged (no header)")
                if patch:
                    at, data = patch
                    chunk = chunk[:at] + data + chunk[at + len(data):]
                first = False
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _copy_then_hash(src: Path, dest: Path) -> tuple[str, int]:
    """Copy ``src`` into the new file ``dest`` (0600, fsynced), then hash ``dest``."""
    copy_new(src, dest)
    return _digest(dest)


def _pg_snapshot(engine: Engine, url: str, dest_path: Path, tenant: str
                 ) -> tuple[dict[str, int], dict[str, str]]:
    args, env = pg_args(url)
    conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    with conn, conn.begin():
        snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
        counts = {str(r[0]): int(r[1]) for r in conn.execute(text(COUNT_SQL), {"t": tenant})}
        kek = _kek_checks(conn.execute(select(kek_version.c.version, kek_version.c.check_value)
                                       .where(kek_version.c.retired_at.is_(None))))
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
              f"--snapshot={snapshot}", "--file", str(dest_path), *args], env, "pg_dump")
    return counts, kek


# -- verify -----------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    backup: Path
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def open_manifest(backup: Path | str, *, verifier_key: str | None = None
                  ) -> tuple[dict[str, Any] | None, str | None]:
    """The signed manifest of ``backup`` (its signature checked), or the problem with it.

    Cheap: the parts are not hashed (see :func:`verify_backup`)."""
    path = Path(backup)
    try:
        raw = (path / MANIFEST).read_bytes()
    except OSError:
        return None, f"{MANIFEST}: missing or unreadable ({path} is not a Hygie backup?)"
    try:
        split = raw.rfind(b"\n\n")
        manifest = json.loads(raw[: split + 1].decode())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError
        embedded = Verifier.from_verifier_key(str(manifest["verifier_key"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, NoteError):
        return None, f"{MANIFEST}: damaged (not a readable signed {FORMAT} manifest)"
    verifier = embedded
    if verifier_key is not None:
        try:
            verifier = Verifier.from_verifier_key(verifier_key)
        except (ValueError, NoteError):
            return None, "the pinned verifier key is not a valid verifier key"
    try:
        note = open_note(raw, verifier)
        if note.text.encode() != raw[: split + 1]:
            raise NoteError("signed text differs")
    except NoteError:
        return None, (f"{MANIFEST}: damaged or forged (its signature does not verify"
                      + (" with the pinned key)" if verifier_key else ")"))
    if verifier.name != origin_for(str(manifest.get("instance_id"))):
        return None, (f"{MANIFEST}: signed by {verifier.name}, not by instance "
                      f"{manifest.get('instance_id')}")
    return manifest, None


def created_at(manifest: dict[str, Any]) -> datetime:
    """The creation time a (signed) manifest states."""
    try:
        return datetime.strptime(str(manifest["created_at"]), "%Y-%m-%dT%H:%M:%S.%fZ"
                                 ).replace(tzinfo=UTC)
    except (KeyError, ValueError):
        raise BackupError(f"{MANIFEST}: its creation time is not readable") from None


def verify_backup(backup: Path | str, *, verifier_key: str | None = None,
                  deferred: tuple[str, ...] = ()) -> VerifyReport:
    """Check the manifest's signature and every part's size and SHA-256.

    ``deferred``: parts whose size is checked here but whose SHA-256 the caller checks itself
    on the copy it makes (restore: the database is hashed as restored, one read instead of
    two, and what is checked is what was written)."""
    path = Path(backup).expanduser().resolve()
    report = VerifyReport(path)
    manifest, problem = open_manifest(path, verifier_key=verifier_key)
    if manifest is None:
        report.fail(str(problem))
        return report
    verifier = Verifier.from_verifier_key(verifier_key or str(manifest["verifier_key"]))
    expected_origin = origin_for(str(manifest.get("instance_id")))
    report.manifest = manifest
    listed = {MANIFEST}
    for part in manifest.get("parts", []):
        name = str(part["name"])
        listed.add(name)
        file = path / name
        if "/" in name or not file.is_file():
            report.fail(f"{name}: missing")
            continue
        if name in deferred:
            sha, size = str(part["sha256"]), file.stat().st_size
        else:
            sha, size = _digest(file)
        if size != part["size"]:
            report.fail(f"{name}: damaged (size {size}, expected {part['size']})")
        elif sha != part["sha256"]:
            report.fail(f"{name}: damaged (SHA-256 mismatch)")
    for extra in sorted(p.name for p in path.iterdir() if p.name not in listed):
        report.fail(f"{extra}: not part of the backup (added after it was made)")
    if report.ok:
        try:
            cp = open_checkpoint((path / CHECKPOINT_PART).read_bytes(), verifier,
                                 expected_origin)
            if (cp.size != manifest["ledger"]["size"]
                    or base64.b64encode(cp.root_hash).decode() != manifest["ledger"]["root"]):
                report.fail(f"{CHECKPOINT_PART}: does not match the manifest's ledger head")
        except (NoteError, OSError, KeyError):
            report.fail(f"{CHECKPOINT_PART}: its signature does not verify")
    return report


# -- restore ----------------------------------------------------------------------------------
@dataclass
class RestoreResult:
    data_dir: Path
    database_url: str
    resources: int
    ledger_size: int
    replaced: Path | None


def _check_kek(keyring: Keyring, manifest: dict[str, Any]) -> None:
    from hygie.crypto import constant_time_equal

    checks = manifest.get("kek_check_values") or {}
    for version, value in checks.items():
        if not keyring.has_version(int(version)) or not constant_time_equal(
                keyring.check_value(int(version)), str(value)):
            raise KeyFailure("the key file does not open this backup (wrong key file?)")


def _db_is_empty(url: str) -> bool:
    engine = make_engine(url, pool=False)
    try:
        return not inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _drop_tables(url: str) -> None:
    engine = make_engine(url, pool=False)
    try:
        names = inspect(engine).get_table_names()
        with engine.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


def restore_backup(backup: Path | str, data_dir: Path | str, key_file: Path | str, *,
                   database_url: str | None = None, force: bool = False,
                   verifier_key: str | None = None) -> RestoreResult:
    """Restore ``backup`` into a new data dir; all or nothing (see module docstring)."""
    key_path = Path(key_file).expanduser().resolve()
    try:
        key_text = key_path.read_text()
    except OSError:
        raise KeyFailure(f"the key file {key_path} cannot be read") from None
    return restore_with_keyring(backup, data_dir, key_text, database_url=database_url,
                                force=force, verifier_key=verifier_key)


def restore_with_keyring(backup: Path | str, data_dir: Path | str, key_text: str, *,
                         database_url: str | None = None, force: bool = False,
                         verifier_key: str | None = None,
                         verified: VerifyReport | None = None) -> RestoreResult:
    """:func:`restore_backup` with the keyring's text (written as the new ``kek.json``).

    ``verified``: the caller's own :func:`verify_backup` report of ``backup`` (not redone)."""
    report = verified or verify_backup(backup, verifier_key=verifier_key,
                                       deferred=(SQLITE_PART,))
    if not report.ok:
        raise BackupError(f"the backup fails verification: {report.problems[0]}")
    manifest = report.manifest
    src = report.backup
    keyring = Keyring.parse(key_text)
    _check_kek(keyring, manifest)
    wrapped = json.loads((src / LEDGER_KEY_PART).read_text())
    signer = Signer.from_signing_key_string(keyring.unwrap(
        int(wrapped["kek_version"]), base64.b64decode(wrapped["wrapped"]),
        LEDGER_KEY_CONTEXT).decode())
    if signer.verifier_key() != manifest["verifier_key"]:
        raise KeyFailure("the backup's ledger key does not match its manifest")

    target = resolve_data_dir(data_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise DataDirError(f"{target} already exists and is not empty; pass --force to move it "
                           "aside and restore in its place")
    backend = manifest["backend"]
    if backend == "sqlite":
        url = f"sqlite:///{target / DB_FILE_NAME}"
    else:
        if not database_url:
            raise BackupError("a PostgreSQL backup needs --database-url naming an existing, "
                              "empty database")
        url = database_url
        if not _db_is_empty(url):
            raise BackupError("the database named by --database-url is not empty; Hygie "
                              "will not touch it")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.restoring-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    pg_restored = False
    try:
        parts = {p["name"] for p in manifest["parts"]}
        if backend == "sqlite":
            db_file = tmp / DB_FILE_NAME
            # The copy is hashed (kernel copy, then one read of the copy): what is restored
            # is what the manifest signed, even if the backup changed during the restore.
            copied = _copy_then_hash(src / SQLITE_PART, db_file)
            expected = next(p for p in manifest["parts"] if p["name"] == SQLITE_PART)
            if copied != (expected["sha256"], expected["size"]):
                raise BackupError(f"the backup fails verification: {SQLITE_PART}: damaged "
                                  "(SHA-256 mismatch)")
            check_url = f"sqlite:///{db_file}"
        else:
            if PG_PART not in parts:
                raise BackupError("the backup has no PostgreSQL dump")
            args, env = pg_args(url)
            pg_restored = True
            _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                  "--single-transaction", *args, str(src / PG_PART)], env, "pg_restore")
            check_url = url
        write_secret_file(tmp / KEY_FILE_NAME, key_text)
        write_secret_file(tmp / KEY_FILE, signer.signing_key_string() + "\n")
        config = restored_config((src / CONFIG_PART).read_text(), database_url=url,
                                 key_source=KeySource("file", str(target / KEY_FILE_NAME)))
        write_new(tmp / CONFIG_NAME, config.encode())
        ledger_size = _check_restored(check_url, keyring, signer, manifest)
        for tmp_file in tmp.glob(DB_FILE_NAME + "*"):
            os.chmod(tmp_file, 0o600)
        fsync_dir(tmp)
        replaced = None
        if target.exists():
            if any(target.iterdir()):
                replaced = target.with_name(f"{target.name}.replaced-{_stamp()}-"
                                            f"{secrets.token_hex(2)}")
                os.rename(target, replaced)
            else:
                target.rmdir()
        os.rename(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if pg_restored:
            _drop_tables(url)
        raise
    return RestoreResult(target, url, sum(int(v) for v in manifest["resources"].values()),
                         ledger_size, replaced)


def _check_restored(url: str, keyring: Keyring, signer: Signer, manifest: dict[str, Any]
                    ) -> int:
    """The restored database opens with the key, and its ledger extends the manifest's."""
    from hygie.ledger.verify import verify_instance

    engine = make_engine(url, pool=False)
    try:
        tenant = str(manifest.get("tenant", "default"))
        conn = engine.connect().execution_options(**{READONLY: True})
        with conn, conn.begin():
            KeyStore(keyring, tenant).verify_keyring(conn)
        ledger = Ledger(engine, tenant, signer)
        report = verify_instance(engine, signer.verifier(), ledger.origin)
        if not report.ok:
            raise IntegrityFailure(f"the restored ledger does not verify: {report.problems[0]}")
        levels = ledger.levels()
        size = int(manifest["ledger"]["size"])
        if levels.size < size:
            raise IntegrityFailure(f"the restored ledger has {levels.size} entries, fewer than "
                                   f"the {size} of the manifest's checkpoint")
        root = levels.root(size) if size else EMPTY_ROOT
        if base64.b64encode(root).decode() != manifest["ledger"]["root"]:
            raise IntegrityFailure("the restored ledger is not consistent with the manifest's "
                                   "checkpoint")
        audit.record_system_event(engine, tenant, "restore", actor="cli:restore",
                                  detail=str(manifest.get("instance_id", ""))[:64])
        return levels.size
    finally:
        engine.dispose()
