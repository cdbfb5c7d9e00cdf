"""The restore drill: prove that the latest backup restores, and measure how long it takes.

``hygie backup drill --data-dir DIR --from TARGET`` (docs/operations.md, "Restore drill"):

1. ``find``: the latest backup of this instance in TARGET, by the time its signed manifest
   states (a damaged backup newer than it fails the drill: the last backup job is broken);
2. ``age``: its age is the recovery point (RPO), at most ``--max-age`` hours;
3. ``manifest``: signature (pinned to the live instance's ledger key) and every part's hash;
4. ``restore``: a real restore into a temporary directory (PostgreSQL: a scratch database
   created on the same server and dropped afterwards) with the live instance's keyring, which
   checks the keyring against the restored data, verifies the whole restored ledger and its
   consistency with the manifest's checkpoint (``keyring`` and ``ledger`` name those failures);
5. ``counts``: resources per type in the restored database equal the manifest's;
6. ``sample``: up to 20 resources of up to 5 randomly chosen patients (and a few outside any
   patient compartment) are read through the restored instance's gate: they decrypt, and are
   the resources they claim to be.

The recovery time (RTO) is the wall time of steps 3 to 6. The result (never health data: the
backup's name, RTO, RPO, counts, the failed check) is recorded as a system event in the live
instance's ledger, and appended to TARGET's verification journal (see retention.py). The
restored copy is deleted whatever happens.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from hygie.errors import HygieError, IntegrityFailure, KeyFailure
from hygie.ledger import audit
from hygie.resilience.backup import (
    COUNT_SQL,
    BackupError,
    _db_is_empty,
    _drop_tables,
    restore_with_keyring,
    verify_backup,
)
from hygie.resilience.retention import NAME_RE, Found, newest, record_verification, scan
from hygie.settings import load_settings

ACTOR = "cli:drill"
ACTION = "backup-drill"
SAMPLE_PATIENTS = 5
SAMPLE_RESOURCES = 20
SAMPLE_SHARED = 5  # resources outside any patient compartment (the tenant key)


class DrillFailure(HygieError):
    """A check of the drill failed (the message names it)."""

    code = "drill-failed"
    status = 500
    issue_code = "exception"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DrillReport:
    target: Path
    backup: str | None = None
    instance_id: str | None = None
    backend: str | None = None
    created_at: datetime | None = None
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    restore_seconds: float | None = None
    max_age_hours: float | None = None
    scratch_database: str | None = None  # PostgreSQL: where it was restored (then emptied)
    resources: dict[str, int] = field(default_factory=dict)
    ledger_size: int | None = None
    sampled_resources: int = 0  # of patients
    sampled_patients: int = 0
    sampled_shared: int = 0  # outside any patient compartment
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def passed(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, True, detail))

    def fail(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, False, detail))

    def as_json(self) -> dict[str, Any]:
        failed = self.failed
        return {
            "ok": self.ok,
            "target": str(self.target),
            "backup": self.backup,
            "instance_id": self.instance_id,
            "backend": self.backend,
            "created_at": (self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                           if self.created_at else None),
            "rpo_seconds": _round(self.rpo_seconds),
            "rto_seconds": _round(self.rto_seconds),
            "restore_seconds": _round(self.restore_seconds),
            "max_age_hours": self.max_age_hours,
            "scratch_database": self.scratch_database,
            "resources": self.resources,
            "resources_total": sum(self.resources.values()),
            "ledger_size": self.ledger_size,
            "sampled_resources": self.sampled_resources,
            "sampled_patients": self.sampled_patients,
            "sampled_shared": self.sampled_shared,
            "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "failed_check": failed.name if failed else None,
            "warnings": self.warnings,
        }

    def ledger_detail(self) -> str:
        """What the ledger records (at most 64 characters, no health data)."""
        name = (self.backup or "none").removeprefix("hygie-backup-")
        parts = [name]
        if self.rto_seconds is not None:
            parts.append(f"rto={self.rto_seconds:.1f}s")
        if self.rpo_seconds is not None:
            parts.append(f"rpo={self.rpo_seconds:.0f}s")
        if self.resources:
            parts.append(f"n={sum(self.resources.values())}")
        return " ".join(parts)[:64]


def duration(seconds: float) -> str:
    """A duration for people: 4.2 s, 12 min, 3 h 05 min, 8 d 2 h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _stamp_of(name: str) -> datetime:
    m = NAME_RE.match(name)
    if not m:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _latest(target: Path, instance_id: str, verifier_key: str, report: DrillReport
            ) -> Found | None:
    """The latest backup of this instance, or None (the ``find`` check failed)."""
    try:
        found = scan(target, verifier_key=verifier_key)
    except BackupError as exc:
        report.fail("find", exc.message)
        return None
    mine = [f for f in found.backups if f.instance_id == instance_id]
    latest = newest(mine)
    if latest is None:
        report.fail("find", f"no backup of this instance in {target}")
        return None
    assert latest.created_at is not None
    suspects = found.damaged + [f for f in found.foreign if f.instance_id == instance_id]
    # A name's time has whole seconds, taken when that backup began: within the second of
    # the latest good backup, the unusable one may be newer (and the drill says so).
    for f in sorted(suspects, key=lambda f: f.name, reverse=True):
        if _stamp_of(f.name) >= latest.created_at.replace(microsecond=0):
            report.fail("find", f"the newest backup {f.name} is unusable: {f.problem}")
            return None
    report.passed("find", f"{latest.name} (latest of {len(mine)})")
    return latest


# -- scratch PostgreSQL database --------------------------------------------------------------
def _create_scratch_db(live_url: str) -> str:
    from hygie.store.db import make_engine

    name = f"hygie_drill_{secrets.token_hex(6)}"
    engine = make_engine(live_url, pool=False)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError:
        raise BackupError("cannot create a scratch database for the drill (the database "
                          "user needs CREATEDB, or pass --database-url naming an empty "
                          "database)") from None
    finally:
        engine.dispose()
    return make_url(live_url).set(database=name).render_as_string(hide_password=False)


def _drop_scratch_db(live_url: str, scratch_url: str) -> None:
    from hygie.store.db import make_engine

    name = make_url(scratch_url).database
    if not name or not name.startswith("hygie_drill_"):  # only what the drill created
        return
    engine = make_engine(live_url, pool=False)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


# -- the checks on the restored copy ----------------------------------------------------------
def _check_counts(engine: Any, tenant: str, manifest: dict[str, Any], report: DrillReport
                  ) -> bool:
    with engine.connect() as conn:
        restored = {str(r[0]): int(r[1]) for r in conn.execute(text(COUNT_SQL), {"t": tenant})}
    expected = {str(k): int(v) for k, v in (manifest.get("resources") or {}).items()}
    for rtype in sorted(set(restored) | set(expected)):
        if restored.get(rtype, 0) != expected.get(rtype, 0):
            report.fail("counts", f"{rtype}: {restored.get(rtype, 0)} restored, "
                                  f"{expected.get(rtype, 0)} in the manifest")
            return False
    report.passed("counts", f"{sum(restored.values())} resources in {len(restored)} types, "
                            "equal to the manifest")
    return True


def _pick_sample(conn: Any, tenant: str, patients: int, resources: int
                 ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
    """Random resources of random patients, a few shared ones, and the patients' number."""
    from hygie.store.tables import data_key, resource

    live = and_(resource.c.tenant == tenant, resource.c.current.is_(True),
                resource.c.deleted.is_(False), data_key.c.wrapped.is_not(None))
    joined = resource.join(data_key, data_key.c.id == resource.c.dek_id)
    distinct = (select(resource.c.patient).select_from(joined)
                .where(live, resource.c.patient.is_not(None)).distinct().subquery())
    chosen = [str(r[0]) for r in conn.execute(
        select(distinct.c.patient).order_by(func.random()).limit(patients))]
    picks: list[tuple[str, str]] = []
    per_patient = max(1, resources // max(1, len(chosen)))
    for patient in chosen:
        picks += [(str(r[0]), str(r[1])) for r in conn.execute(
            select(resource.c.rtype, resource.c.rid).select_from(joined)
            .where(live, resource.c.patient == patient)
            .order_by(func.random()).limit(per_patient))]
    shared = [(str(r[0]), str(r[1])) for r in conn.execute(
        select(resource.c.rtype, resource.c.rid).select_from(joined)
        .where(live, resource.c.patient.is_(None))
        .order_by(func.random()).limit(SAMPLE_SHARED))]
    return picks, shared, len(chosen)


def _check_sample(data_dir: Path, report: DrillReport) -> bool:
    """Read a sample through the restored instance's gate (its reads go to its own ledger)."""
    from hygie.access.actor import Actor
    from hygie.runtime import open_runtime

    rt = open_runtime(load_settings(data_dir))
    try:
        with rt.engine.connect() as conn:
            picks, shared, patients = _pick_sample(conn, rt.settings.tenant, SAMPLE_PATIENTS,
                                                   SAMPLE_RESOURCES)
        current = ""
        try:
            # A failed read leaves the gate as an exception, so that the gate records it.
            with rt.gate.open(Actor.system("drill"), readonly=True) as door:
                for rtype, rid in picks + shared:
                    current = f"{rtype}/{rid}"
                    found = door.read(rtype, rid)
                    try:
                        doc = json.loads(found.body or b"")
                    except ValueError:
                        doc = None
                    if not (isinstance(doc, dict) and doc.get("resourceType") == rtype
                            and doc.get("id") == rid):
                        report.fail("sample", f"{current} does not decrypt to itself")
                        return False
        except HygieError as exc:
            report.fail("sample", f"{current} cannot be read ({exc.code})")
            return False
    finally:
        rt.engine.dispose()
    report.sampled_resources = len(picks)
    report.sampled_patients = patients
    report.sampled_shared = len(shared)
    report.passed("sample", f"{len(picks)} resources of {patients} patients and {len(shared)} "
                            "outside any patient decrypted")
    return True


# -- the drill --------------------------------------------------------------------------------
def run_drill(data_dir: Path | str | None, target: Path | str, *,
              key_file: Path | str | None = None, database_url: str | None = None,
              max_age_hours: float | None = None, work_dir: Path | str | None = None
              ) -> DrillReport:
    """Restore the latest backup of ``target`` into a scratch place and check it end to end.

    Raises only when the live instance cannot be opened or its ledger cannot record the
    result; every failed check is in the report (``report.ok`` is False)."""
    from hygie.ledger.log import load_key
    from hygie.store.db import make_engine

    settings = load_settings(data_dir)
    verifier_key = load_key(settings.data_dir).verifier_key()  # pins the backups' signatures
    engine = make_engine(settings.database_url, pool=False)
    try:
        report = DrillReport(Path(target).expanduser().resolve(), max_age_hours=max_age_hours)
        try:
            _drill(report, settings, verifier_key, key_file, database_url, work_dir)
        except Exception as exc:  # noqa: BLE001 - record every outcome, then say what failed
            report.fail("drill", f"unexpected {type(exc).__name__}")
        _record(engine, settings.tenant, report)
    finally:
        engine.dispose()
    return report


def _key_text(settings: Any, key_file: Path | str | None) -> str:
    """The keyring to restore with: --key-file, else the live instance's key source."""
    if key_file is None:
        return str(settings.key_source.read())
    path = Path(key_file).expanduser().resolve()
    try:
        return path.read_text()
    except OSError:
        raise KeyFailure(f"the key file {path} cannot be read") from None


def _drill(report: DrillReport, settings: Any, verifier_key: str, key_file: Path | str | None,
           database_url: str | None, work_dir: Path | str | None) -> None:
    started = datetime.now(UTC)
    latest = _latest(report.target, settings.instance_id, verifier_key, report)
    if latest is None or latest.created_at is None:
        return
    report.backup = latest.name
    report.instance_id = latest.instance_id
    report.created_at = latest.created_at
    report.rpo_seconds = max(0.0, (started - latest.created_at).total_seconds())
    max_age_hours = report.max_age_hours
    if max_age_hours is not None:
        if report.rpo_seconds > max_age_hours * 3600:
            report.fail("age", f"the latest backup is {duration(report.rpo_seconds)} old, "
                               f"more than --max-age {max_age_hours:g} h")
        else:
            report.passed("age", f"{duration(report.rpo_seconds)} old "
                                 f"(at most {max_age_hours:g} h)")
    t0 = time.monotonic()
    verified = verify_backup(latest.path, verifier_key=verifier_key)
    if not verified.ok:
        report.fail("manifest", "; ".join(verified.problems))
        return
    manifest = verified.manifest
    try:
        key_text = _key_text(settings, key_file)
    except KeyFailure as exc:
        report.fail("keyring", exc.message)
        return
    report.backend = str(manifest.get("backend"))
    report.passed("manifest", f"signature and {len(manifest.get('parts', []))} parts verified")
    if report.backend == "postgresql" and database_url and not _db_is_empty(database_url):
        report.fail("restore", "the database named by --database-url is not empty; Hygie "
                               "will not touch it")
        return
    scratch_dir = Path(tempfile.mkdtemp(prefix="hygie-drill-", dir=work_dir))
    scratch_url: str | None = None
    try:
        if report.backend == "postgresql":
            scratch_url = database_url or _create_scratch_db(settings.database_url)
            report.scratch_database = make_url(scratch_url).database
        restored_dir = scratch_dir / "restored"
        t_restore = time.monotonic()
        try:
            result = restore_with_keyring(latest.path, restored_dir, key_text,
                                          database_url=scratch_url, verifier_key=verifier_key,
                                          verified=verified)
        except KeyFailure as exc:
            report.fail("keyring", exc.message)
            return
        except IntegrityFailure as exc:
            report.fail("ledger", exc.message)
            return
        except (HygieError, OSError) as exc:
            message = exc.message if isinstance(exc, HygieError) else (exc.strerror or "I/O")
            report.fail("restore", message)
            return
        report.restore_seconds = time.monotonic() - t_restore
        report.ledger_size = result.ledger_size
        report.passed("restore", f"restored in {report.restore_seconds:.1f} s")
        report.passed("ledger", f"{result.ledger_size} entries verified, consistent with the "
                                f"checkpoint ({manifest['ledger']['size']})")
        from hygie.store.db import make_engine

        engine = make_engine(result.database_url, pool=False)
        try:
            counts_ok = _check_counts(engine, str(manifest.get("tenant", "default")), manifest,
                                      report)
        finally:
            engine.dispose()
        report.resources = {str(k): int(v) for k, v in manifest["resources"].items()}
        if counts_ok and _check_sample(restored_dir, report):
            report.rto_seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
        if scratch_url and database_url:
            _drop_tables(scratch_url)  # the operator's database: emptied, not dropped
        elif scratch_url:
            _drop_scratch_db(settings.database_url, scratch_url)


def _record(engine: Any, tenant: str, report: DrillReport) -> None:
    """The live ledger first (fail closed: raises), then the target's journal (warns)."""
    from hygie.store.db import transaction

    failed = report.failed
    entry = audit.AuditEntry(actor=ACTOR, actor_kind="system", action=ACTION,
                             outcome=audit.SUCCESS if report.ok else audit.ERROR,
                             code=f"drill-{failed.name}" if failed else None,
                             detail=report.ledger_detail())
    try:
        with transaction(engine) as conn:
            audit.append(conn, tenant, [entry])
    except SQLAlchemyError:
        raise DrillFailure("the drill's result cannot be recorded in the ledger") from None
    if report.backup is None:
        return
    try:
        record_verification(report.target, report.target / report.backup, check="drill",
                            ok=report.ok)
    except OSError as exc:
        report.warnings.append(f"the verification journal cannot be written "
                               f"({exc.strerror or 'I/O error'})")
