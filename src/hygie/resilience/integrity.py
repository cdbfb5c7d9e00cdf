"""Start-up integrity check: is this data dir still the instance it was? (docs/operations.md)

``check_instance(data_dir)`` runs, in order, one check per part of an instance, and says in
plain words what failed — never a secret, never health data:

1. ``config``: ``hygie.toml`` is there, is UTF-8 TOML, and names a database and a key source;
2. ``database``: SQLite — the file is there, starts with the SQLite header, its write-ahead log
   (if any) starts with a WAL header and was not renamed, ``PRAGMA quick_check`` passes (within
   a time budget); PostgreSQL — the server answers; both — the schema is at the Alembic head and
   the tables holding records, keys and the ledger are there;
3. ``key``: the key-encryption keyring is there, parses, its check values equal the ones the
   database stores, and it unwraps the tenant's data keys;
4. ``ledger-key``: ``ledger.key`` is there, parses, belongs to this instance, and is the key
   that signed the latest ledger checkpoint;
5. ``ledger``: the latest checkpoint's signature verifies, the stored leaf hashes are
   contiguous and give its root, and the newest entries (``REHASH_TAIL``) re-hash to their
   stored leaves. The full re-hash of every entry is ``hygie ledger verify`` (``--full`` here).

A check that cannot run because an earlier one failed is reported as not run (``ok`` None).
``hygie serve`` runs this before it binds its port and refuses to start on any failure (exit
code ``EXIT_CODE``), printing the restore steps (:func:`recovery_steps`).
"""

from __future__ import annotations

import os
import sqlite3
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, func, inspect, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from hygie.crypto import Keyring, KeySource
from hygie.errors import DataDirError, HygieError, KeyFailure
from hygie.ledger.checkpoint import Checkpoint, open_checkpoint
from hygie.ledger.log import KEY_FILE, leaf_bytes, load_key, origin_for
from hygie.ledger.merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes
from hygie.ledger.note import NoteError, Signer, UnverifiedNoteError
from hygie.settings import (
    CONFIG_NAME,
    DB_FILE_NAME,
    KEY_FILE_NAME,
    Settings,
    load_settings,
    resolve_data_dir,
)
from hygie.store.db import head_revision, make_engine, older_revisions, transaction
from hygie.store.keys import INDEX_OWNER, TENANT_OWNER, KeyStore
from hygie.store.tables import audit_event, data_key, ledger_checkpoint, ledger_leaf

EXIT_CODE = 3
EXIT_UPGRADE = 4  # not damage: an older schema, 'hygie migrate' upgrades it
"""Exit code of ``hygie serve`` and ``hygie check`` when the integrity check fails."""

REHASH_TAIL = 2_000
"""The newest ledger entries re-hashed from their audit rows at start-up."""

QUICK_CHECK_SECONDS = 30.0
"""Time budget of SQLite's ``PRAGMA quick_check`` at start-up (``--full``: none)."""

SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_MAGICS = (0x377F0682, 0x377F0683)
CORE_TABLES = ("instance_meta", "kek_version", "data_key", "resource", "audit_event",
               "ledger_leaf", "ledger_checkpoint")
BACKUP_PREFIX = "hygie-backup-"
NOT_RUN = "not run: an earlier check failed"


class CheckFailed(Exception):
    """One check's plain-words failure (internal: becomes a :class:`Check`)."""


class UpgradeNeeded(CheckFailed):
    """Not damage: the schema is an older revision this version of Hygie can migrate."""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not run
    message: str
    seconds: float = 0.0
    upgrade: bool = False  # an older schema to migrate, not damage

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "message": self.message,
                "seconds": round(self.seconds, 3), "upgrade_needed": self.upgrade}


@dataclass
class IntegrityReport:
    data_dir: Path
    checks: list[Check] = field(default_factory=list)
    backend: str | None = None
    backup_target: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def latest_backup(self) -> Path | None:
        return latest_backup(self.backup_target)

    def as_dict(self) -> dict[str, Any]:
        latest = self.latest_backup()
        return {"ok": self.ok, "data_dir": str(self.data_dir), "backend": self.backend,
                "checks": [c.as_dict() for c in self.checks],
                "backup_target": str(self.backup_target) if self.backup_target else None,
                "latest_backup": str(latest) if latest else None,
                "seconds": round(self.seconds, 3)}


# -- helpers -----------------------------------------------------------------------------------
def _show(path: Path, data_dir: Path) -> str:
    """A path as the operator knows it: relative to the data dir when inside it."""
    try:
        return str(path.relative_to(data_dir))
    except ValueError:
        return str(path)


def _renamed_hint(path: Path, ignore: tuple[str, ...] = ()) -> str:
    """' (X is there instead: renamed by ransomware?)' when a sibling extends the name."""
    try:
        siblings = sorted(p.name for p in path.parent.iterdir()
                          if p.name.startswith(path.name + ".") and p.name not in ignore)
    except OSError:
        return ""
    if not siblings:
        return ""
    return f" ({siblings[0]} is there instead: renamed by ransomware?)"


def _missing(what: str, path: Path, data_dir: Path, ignore: tuple[str, ...] = ()) -> str:
    return f"{what} {_show(path, data_dir)} is missing{_renamed_hint(path, ignore)}"


def latest_backup(target: Path | None) -> Path | None:
    """The newest ``hygie-backup-*`` directory under ``target`` (names sort by time)."""
    if target is None:
        return None
    try:
        found = [p for p in target.iterdir() if p.name.startswith(BACKUP_PREFIX) and p.is_dir()]
    except OSError:
        return None
    return max(found, key=lambda p: p.name) if found else None


def backup_target(settings: Settings | None) -> Path | None:
    """``[backup] target`` of the config, or ``$HYGIE_BACKUP_TARGET`` (config unreadable)."""
    if settings is not None and settings.backup_target is not None:
        return settings.backup_target
    env = os.environ.get("HYGIE_BACKUP_TARGET")
    return Path(env).expanduser() if env else None


# -- the checks --------------------------------------------------------------------------------
def _check_config(data_dir: Path) -> Settings:
    if not data_dir.is_dir():
        raise CheckFailed(f"the data directory {data_dir} does not exist")
    path = data_dir / CONFIG_NAME
    if not path.is_file():
        raise CheckFailed(_missing("the configuration file", path, data_dir))
    try:
        tomllib.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise CheckFailed(f"the configuration file {CONFIG_NAME} is not readable TOML "
                          "(encrypted, truncated or overwritten?)") from None
    except OSError as exc:
        raise CheckFailed(f"the configuration file {CONFIG_NAME} cannot be read "
                          f"({exc.strerror})") from None
    try:
        return load_settings(data_dir)
    except HygieError as exc:
        raise CheckFailed(exc.message) from None


def _sqlite_file_checks(db: Path, data_dir: Path) -> None:
    name = _show(db, data_dir)
    if not db.is_file():
        raise CheckFailed(_missing("the database file", db, data_dir, ignore=(db.name + ".lock",)))
    size = db.stat().st_size
    with db.open("rb") as f:
        header = f.read(100)
    if size == 0:
        raise CheckFailed(f"the database file {name} is empty (truncated or overwritten?)")
    if header[:16] != SQLITE_MAGIC:
        raise CheckFailed(f"the database file {name} is not a SQLite database "
                          "(encrypted or overwritten?)")
    if len(header) < 100:
        raise CheckFailed(f"the database file {name} is truncated ({size} bytes)")
    wal = db.with_name(db.name + "-wal")
    renamed = sorted(p.name for p in db.parent.glob(db.name + "-wal?*"))
    if renamed:
        raise CheckFailed(f"the database's write-ahead log was renamed to {renamed[0]} "
                          "(by ransomware?): its transactions would be lost")
    if wal.is_file() and wal.stat().st_size > 0:
        with wal.open("rb") as f:
            magic = int.from_bytes(f.read(4), "big")
        if magic not in WAL_MAGICS:
            raise CheckFailed(f"the database's write-ahead log {_show(wal, data_dir)} is not a "
                              "SQLite WAL (encrypted or overwritten?)")


def _expected_size(db: Path) -> int | None:
    """Bytes the SQLite header says the file holds (page size x page count), if it says."""
    with db.open("rb") as f:
        header = f.read(100)
    if len(header) < 100:
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] != header[92:96] or not pages:
        return None
    return page_size * pages


def _quick_check(db: Path, data_dir: Path, budget: float | None) -> str | None:
    """Run ``PRAGMA quick_check``; returns a note when it ran out of time."""
    name = _show(db, data_dir)
    # mode=rw: never create a missing file; the path quoted for the URI (#, ?, %).
    conn = sqlite3.connect(f"file:{quote(str(db))}?mode=rw", uri=True, timeout=30)
    stopped = False
    try:
        if budget is not None:
            deadline = time.monotonic() + budget

            def progress() -> int:
                nonlocal stopped
                stopped = time.monotonic() > deadline
                return 1 if stopped else 0

            conn.set_progress_handler(progress, 1_000)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.OperationalError:
            if stopped:
                return f"quick_check stopped after {budget:.0f} s"
            raise
        if rows != [("ok",)]:
            raise sqlite3.DatabaseError("quick_check")
        return None
    except sqlite3.DatabaseError as exc:
        expected = _expected_size(db)
        size = db.stat().st_size
        if expected is not None and size < expected:
            raise CheckFailed(f"the database file {name} is truncated ({size} of {expected} "
                              "bytes: cut short or damaged?)") from None
        if "not a database" in str(exc):
            raise CheckFailed(f"the database file {name} is not a SQLite database "
                              "(encrypted or overwritten?)") from None
        raise CheckFailed(f"the database file {name} is damaged (SQLite's integrity check "
                          "fails: encrypted in part, or corrupted?)") from None
    finally:
        conn.close()


def _schema_checks(engine: Engine, what: str) -> None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        tables = set(inspect(conn).get_table_names())
    if revision is None:
        raise CheckFailed(f"{what} holds no Hygie schema (emptied or replaced?)")
    if revision != head_revision():
        if revision in older_revisions():
            raise UpgradeNeeded(f"{what} schema is at revision {revision}, older than this "
                                f"version of Hygie ({head_revision()}): it needs "
                                "'hygie migrate'")
        raise CheckFailed(f"{what} schema is at revision {revision}, this version of Hygie "
                          f"expects {head_revision()}")
    missing = [t for t in CORE_TABLES if t not in tables]
    if missing:
        raise CheckFailed(f"{what} lacks the table(s) {', '.join(missing)} (dropped?)")


def _check_database(settings: Settings, budget: float | None) -> tuple[Engine, str]:
    url = settings.database_url
    if url.startswith("sqlite"):
        db_file = make_url(url).database
        if not db_file:
            raise CheckFailed("the SQLite database is not a file")
        db = Path(db_file)
        _sqlite_file_checks(db, settings.data_dir)
        note = _quick_check(db, settings.data_dir, budget)
        engine = make_engine(url, synchronous=settings.sqlite_synchronous)
        try:
            _schema_checks(engine, "the database")
        except BaseException:
            engine.dispose()
            raise
        return engine, f"SQLite file {_show(db, settings.data_dir)} sound" + (
            f" ({note})" if note else "") + ", schema at head"
    if url.startswith("postgresql"):
        u = make_url(url)
        where = f"the PostgreSQL database {u.database} on {u.host or 'localhost'}"
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
        try:
            _schema_checks(engine, where)
        except SQLAlchemyError as exc:
            engine.dispose()
            orig = getattr(exc, "orig", None) or exc
            raise CheckFailed(f"cannot use {where} ({type(orig).__name__}: is the server up, "
                              "the database there?)") from None
        except BaseException:
            engine.dispose()
            raise
        return engine, f"PostgreSQL database {u.database} answers, schema at head"
    raise CheckFailed("database_url must be sqlite:///PATH or postgresql+psycopg://...")


def _check_key(settings: Settings, engine: Engine) -> str:
    source: KeySource = settings.key_source
    data_dir = settings.data_dir
    if source.kind == "file":
        path = Path(source.location)
        what = f"the key file {_show(path, data_dir)}"
        if not path.is_file():
            raise CheckFailed(_missing("the key file", path, data_dir, ignore=(
                path.name + ".tmp",)) + ": restore it from its safe copy or recover it from "
                "the key shares ('hygie keys recover')")
    else:
        what = f"the keyring in the environment variable {source.location}"
    try:
        # Read the file here: an encrypted key file is not UTF-8, which KeySource.read
        # would raise as a decoding error rather than as a bad keyring.
        keyring = Keyring.parse(Path(source.location).read_bytes().decode("utf-8")
                                if source.kind == "file" else source.read())
    except (KeyFailure, UnicodeDecodeError):
        raise CheckFailed(f"{what} is not a valid Hygie keyring "
                          "(encrypted, truncated or overwritten?)") from None
    keys = KeyStore(keyring, settings.tenant)
    with transaction(engine, readonly=True) as conn:
        try:
            keys.verify_keyring(conn)
        except KeyFailure:
            raise CheckFailed(f"{what} does not open this database (another key, or "
                              "replaced?)") from None
        rows = conn.execute(select(data_key.c.id, data_key.c.owner, data_key.c.kek_version,
                                   data_key.c.wrapped)
                            .where(data_key.c.tenant == settings.tenant,
                                   data_key.c.owner.in_((INDEX_OWNER, TENANT_OWNER)))).all()
    if not any(r.owner == INDEX_OWNER for r in rows):
        raise CheckFailed("the database's key table has lost the search-index key")
    for r in rows:
        try:
            keys.open(r.id, r.kek_version, r.wrapped, r.owner)
        except KeyFailure:
            raise CheckFailed(f"{what} matches, but the database's key table is damaged (a "
                              "data key does not unwrap)") from None
    return f"{what} opens the database ({len(keyring.versions)} version(s))"


def _latest_checkpoint_row(engine: Engine) -> Any:
    with transaction(engine, readonly=True) as conn:
        return conn.execute(select(ledger_checkpoint).order_by(
            ledger_checkpoint.c.size.desc()).limit(1)).first()


def _check_ledger_key(settings: Settings, engine: Engine) -> tuple[Signer, Checkpoint | None]:
    path = settings.data_dir / KEY_FILE
    if not path.is_file():
        raise CheckFailed(_missing("the ledger signing key", path, settings.data_dir,
                                   ignore=(path.name + ".tmp",)))
    try:
        signer = load_key(settings.data_dir)
    except KeyFailure:
        raise CheckFailed(f"the ledger signing key {KEY_FILE} is not a valid signing key "
                          "(encrypted, truncated or overwritten?)") from None
    origin = origin_for(settings.instance_id)
    if signer.name != origin:
        raise CheckFailed(f"the ledger signing key {KEY_FILE} belongs to another instance "
                          "(replaced?)")
    row = _latest_checkpoint_row(engine)
    if row is None:
        return signer, None
    try:
        cp = open_checkpoint(str(row.note), signer.verifier(), origin)
    except UnverifiedNoteError:
        raise CheckFailed(f"the ledger signing key {KEY_FILE} is not the key that signed the "
                          "ledger's checkpoints (replaced?)") from None
    except NoteError:
        raise _LedgerDamage(f"the latest ledger checkpoint (size {row.size}) does not verify: "
                            "its signature or text was altered") from None
    if cp.size != row.size or cp.root_hash != bytes(row.root):
        raise _LedgerDamage(f"the latest ledger checkpoint (size {row.size}): its row does not "
                            "match its signed note (altered?)")
    return signer, cp


class _LedgerDamage(CheckFailed):
    """Found while checking the ledger key, but it is the ledger that is damaged."""


def _check_ledger(engine: Engine, cp: Checkpoint | None, *, full: bool) -> str:
    with transaction(engine, readonly=True) as conn:
        count, low, high = conn.execute(select(func.count(), func.min(ledger_leaf.c.idx),
                                               func.max(ledger_leaf.c.idx))).one()
        if count and (low != 0 or high != count - 1):  # idx is unique: no gap iff max = n-1
            first_gap = conn.execute(text(
                "SELECT min(idx) + 1 FROM ledger_leaf WHERE idx + 1 NOT IN "
                "(SELECT idx FROM ledger_leaf)")).scalar_one() if low == 0 else 0
            raise CheckFailed(f"ledger entry {first_gap} is missing (the leaf table has a gap)")
        size = int(count)
        if cp is not None and cp.size > size:
            raise CheckFailed(f"the ledger holds {size} entries, fewer than the {cp.size} of "
                              "its latest signed checkpoint (truncated)")
        upto = size if full else (cp.size if cp is not None else 0)
        hashes = [bytes(h) for h in conn.execute(select(ledger_leaf.c.hash).where(
            ledger_leaf.c.idx < upto).order_by(ledger_leaf.c.idx)).scalars()]
    if cp is not None:
        root = root_from_leaf_hashes(hashes[: cp.size]) if cp.size else EMPTY_ROOT
        if root != cp.root_hash:
            raise CheckFailed(f"the stored ledger entries no longer give the root of the latest "
                              f"signed checkpoint (size {cp.size}): history was rewritten")
    start = 0 if full else max(0, size - REHASH_TAIL)
    if start < size:
        with transaction(engine, readonly=True) as conn:
            leaves = conn.execute(select(ledger_leaf).where(ledger_leaf.c.idx >= start)
                                  .order_by(ledger_leaf.c.idx)).all()
            rows = {r.seq: r for r in conn.execute(
                select(audit_event).where(audit_event.c.seq >= leaves[0].seq))}
        for leaf in leaves:
            row = rows.get(leaf.seq)
            if row is None:
                raise CheckFailed(f"ledger entry {leaf.idx} (audit seq {leaf.seq}): the audit "
                                  "entry was deleted")
            if leaf_hash(leaf_bytes(row)) != bytes(leaf.hash):
                raise CheckFailed(f"ledger entry {leaf.idx} (audit seq {leaf.seq}): the audit "
                                  "entry was altered")
    checked = "every entry" if full else f"the last {size - start}"
    signed = f"checkpoint {cp.size} verified" if cp is not None else "no checkpoint yet"
    return f"{size} entries, {signed}, {checked} re-hashed"


def _looks_like_instance(path: Path) -> bool:
    """A data dir, whole or damaged: it holds one of an instance's files, even renamed.

    A directory that never was one (a mistyped --data-dir) is a plain error, not damage.
    """
    names = (CONFIG_NAME, KEY_FILE_NAME, KEY_FILE, DB_FILE_NAME)
    try:
        return any(p.name.startswith(names) for p in path.iterdir())
    except OSError:
        return False


# -- the whole check ---------------------------------------------------------------------------
def check_instance(data_dir: Path | str | None, *, full: bool = False,
                   quick_check_seconds: float | None = QUICK_CHECK_SECONDS) -> IntegrityReport:
    """Run every check; never raises for a damaged instance (the report says what failed).

    Raises :class:`DataDirError` for a directory that holds none of an instance's files.

    ``full``: re-hash every ledger entry and run ``quick_check`` without a time budget.
    """
    began = time.perf_counter()
    path = resolve_data_dir(data_dir)
    if not _looks_like_instance(path):
        raise DataDirError(f"{path} is not a Hygie data directory (no {CONFIG_NAME}); "
                           "create one with 'hygie init --data-dir DIR'")
    report = IntegrityReport(path)
    state: dict[str, Any] = {}
    budget = None if full else quick_check_seconds

    def run(name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> bool:
        if any(n not in state for n in needs):
            report.checks.append(Check(name, None, NOT_RUN))
            return False
        t = time.perf_counter()
        upgrade = False
        try:
            message = fn()
            ok: bool = True
        except CheckFailed as exc:
            message, ok, upgrade = str(exc), False, isinstance(exc, UpgradeNeeded)
        except HygieError as exc:
            message, ok = exc.message, False
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the check fails closed
            message, ok = f"unexpected {type(exc).__name__} while checking", False
        report.checks.append(Check(name, ok, message, time.perf_counter() - t, upgrade))
        if ok:
            state[name] = True
        return ok

    def config() -> str:
        settings = _check_config(path)
        state["settings"] = settings
        report.backend = "sqlite" if settings.database_url.startswith("sqlite") else "postgresql"
        return f"{CONFIG_NAME} readable"

    def database() -> str:
        engine, message = _check_database(state["settings"], budget)
        state["engine"] = engine
        return message

    def key() -> str:
        return _check_key(state["settings"], state["engine"])

    ledger_damage: list[str] = []

    def ledger_key() -> str:
        try:
            signer, cp = _check_ledger_key(state["settings"], state["engine"])
        except _LedgerDamage as exc:
            ledger_damage.append(str(exc))
            return f"{KEY_FILE} belongs to this instance"
        state["checkpoint"] = cp
        return (f"{KEY_FILE} belongs to this instance" + (
            " and signed the latest checkpoint" if cp is not None else ""))

    def ledger() -> str:
        if ledger_damage:
            raise CheckFailed(ledger_damage[0])
        return _check_ledger(state["engine"], state.get("checkpoint"), full=full)

    try:
        run("config", config)
        run("database", database, ("config",))
        run("key", key, ("database",))
        run("ledger-key", ledger_key, ("database",))
        run("ledger", ledger, ("database", "ledger-key"))
    finally:
        if "engine" in state:
            state["engine"].dispose()
    report.backup_target = backup_target(state.get("settings"))
    report.seconds = time.perf_counter() - began
    return report


def recovery_steps(report: IntegrityReport) -> list[str]:
    """What to do, in order, when the check fails (printed by ``hygie serve``/``check``)."""
    if all(c.upgrade for c in report.failures):
        return [
            "This data dir was made by an earlier version of Hygie. To upgrade it:",
            f"  1. back it up:  hygie backup create --data-dir {report.data_dir} --to TARGET",
            f"  2. migrate it:  hygie migrate --data-dir {report.data_dir}",
            "See docs/operations.md, 'Upgrading'.",
        ]
    latest = report.latest_backup()
    if latest is not None:
        backup = str(latest)
    elif report.backup_target is not None:
        backup = f"{report.backup_target}/hygie-backup-..."
    else:
        backup = "BACKUP"
    pg = " --database-url EMPTY_DATABASE_URL" if report.backend == "postgresql" else ""
    lines = [
        "Hygie will not start on damaged data. To recover:",
        f"  1. keep this data dir aside for investigation, do not repair or delete it: "
        f"{report.data_dir}",
        f"  2. check the latest backup:  hygie backup verify {backup}",
        "  3. restore it into a new data dir, with the key file kept apart from the backups "
        "(or 'hygie keys recover' from the key shares):",
        f"     hygie restore {backup} --data-dir NEWDIR --key-file KEYFILE{pg}",
        "  4. hygie ledger verify --data-dir NEWDIR, then hygie serve --data-dir NEWDIR",
        "See docs/operations.md, 'On the day of an attack'.",
    ]
    if latest is None and report.backup_target is None:
        lines.insert(3, "     (no backup location known: set [backup] target in hygie.toml "
                        "or HYGIE_BACKUP_TARGET)")
    return lines
