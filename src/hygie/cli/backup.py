"""``hygie backup create|verify|prune|drill`` and ``hygie restore``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hygie.cli.main import DataDir, JsonOpt, boundary, emit_json, err, fail, out

if TYPE_CHECKING:
    from hygie.resilience.retention import Policy, PruneReport

backup_app: typer.Typer = typer.Typer(
    help="Signed, verifiable backups (never holding the key-encryption key).",
    no_args_is_help=True)

VerifierKeyOpt = Annotated[str | None, typer.Option(
    "--verifier-key", help="Pin the ledger's verifier key (else the one in the backup).")]
KeepDaily = Annotated[int, typer.Option(
    "--keep-daily", min=0, help="Keep the newest backup of each of the last N days (UTC) "
    "that have one.")]
KeepWeekly = Annotated[int, typer.Option(
    "--keep-weekly", min=0, help="Keep the newest backup of each of the last N ISO weeks "
    "that have one.")]
KeepMonthly = Annotated[int, typer.Option(
    "--keep-monthly", min=0, help="Keep the newest backup of each of the last N months "
    "that have one.")]
KeepLast = Annotated[int, typer.Option(
    "--keep-last", min=0, help="Keep the N newest backups.")]


def say(line: str) -> None:
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def warn(line: str) -> None:
    err.print(f"hygie: warning: {line}", markup=False, highlight=False, soft_wrap=True)


def _policy(daily: int, weekly: int, monthly: int, last: int) -> Policy:
    from hygie.resilience.retention import Policy

    return Policy(daily=daily, weekly=weekly, monthly=monthly, last=last)


def _prune(target: Path, policy: Policy, *, dry_run: bool, data_dir: Path | None,
           verifier_key: str | None) -> PruneReport:
    """Prune ``target``; with the instance's data dir: its key pinned, the prune recorded."""
    from hygie.ledger import audit
    from hygie.ledger.log import load_key
    from hygie.resilience.retention import prune
    from hygie.settings import load_settings
    from hygie.store.db import make_engine

    settings = load_settings(data_dir) if data_dir is not None else None
    if settings is not None and verifier_key is None:
        verifier_key = load_key(settings.data_dir).verifier_key()

    def record(report: PruneReport) -> None:  # before deleting anything (fail closed)
        assert settings is not None
        engine = make_engine(settings.database_url, pool=False)
        try:
            audit.record_system_event(
                engine, settings.tenant, "backup-prune", actor="cli:backup",
                detail=f"pruned {len(report.pruned)} kept {len(report.kept)}")
        finally:
            engine.dispose()

    return prune(target, policy, dry_run=dry_run, verifier_key=verifier_key,
                 before_delete=record if settings is not None else None)


def _print_prune(report: PruneReport) -> None:
    for found, decision in report.decisions:
        verb = "keep " if decision.keep else ("would prune" if report.dry_run else "pruned")
        say(f"{verb:<11} {found.name}  {', '.join(decision.reasons)}")
    for name, why in report.left_alone:
        say(f"left alone  {name}  {why}")
    done = "would be pruned (dry run)" if report.dry_run else "pruned"
    say(f"{len(report.pruned)} backup(s) {done}, {len(report.kept)} kept"
        + (f"; last verified: {', '.join(report.verified)}" if report.verified else ""))


@backup_app.command("create")
@boundary
def create(
    data_dir: DataDir = None,
    to: Annotated[Path, typer.Option("--to", help="Directory receiving the new backup.")
                  ] = Path("."),
    keep_daily: KeepDaily = 0,
    keep_weekly: KeepWeekly = 0,
    keep_monthly: KeepMonthly = 0,
    keep_last: KeepLast = 0,
    json_out: JsonOpt = False,
) -> None:
    """Snapshot the instance (safe while it serves) into a new signed backup under --to.

    With --keep-* options, then prune --to as 'hygie backup prune' does."""
    from hygie.resilience.backup import create_backup
    from hygie.settings import resolve_data_dir

    policy = _policy(keep_daily, keep_weekly, keep_monthly, keep_last)
    result = create_backup(data_dir, to)
    pruned = None
    if not policy.empty:
        pruned = _prune(result.path.parent, policy, dry_run=False,
                        data_dir=resolve_data_dir(data_dir), verifier_key=None)
    if json_out:
        doc: dict[str, Any] = {"backup": str(result.path), "size": result.size,
                               "resources": result.resources, "ledger_size": result.ledger_size}
        if pruned is not None:
            doc["prune"] = pruned.as_json()
        emit_json(doc)
        return
    say(str(result.path))
    if pruned is not None:
        _print_prune(pruned)


@backup_app.command("verify")
@boundary
def verify(
    backup: Annotated[Path, typer.Argument(help="The backup directory.")],
    verifier_key: VerifierKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the manifest's signature and every part's size and SHA-256."""
    from hygie.resilience.backup import verify_backup

    report = verify_backup(backup, verifier_key=verifier_key)
    if json_out:
        manifest = report.manifest
        emit_json({"backup": str(report.backup), "ok": report.ok, "problems": report.problems,
                   "instance_id": manifest.get("instance_id"),
                   "created_at": manifest.get("created_at"),
                   "ledger_size": manifest.get("ledger", {}).get("size")})
    _journal(report.backup, ok=report.ok)
    if not report.ok:
        fail(f"backup {report.backup} is damaged: " + "; ".join(report.problems))
    if not json_out:
        out.print(f"backup verified: {report.backup} (instance {report.manifest['instance_id']}, "
                  f"{report.manifest['created_at']})", markup=False, highlight=False,
                  soft_wrap=True)


def _journal(backup: Path, *, ok: bool) -> None:
    """Note the result in the target's verification journal (retention reads it)."""
    from hygie.resilience.retention import NAME_RE, record_verification

    if not NAME_RE.match(backup.name) or not backup.is_dir():
        return
    try:
        record_verification(backup.parent, backup, check="verify", ok=ok)
    except OSError as exc:
        warn(f"the verification journal in {backup.parent} cannot be written "
             f"({exc.strerror or 'I/O error'})")


@backup_app.command("prune")
@boundary
def prune_cmd(
    from_: Annotated[Path, typer.Option("--from", help="The directory holding the backups.")],
    keep_daily: KeepDaily = 0,
    keep_weekly: KeepWeekly = 0,
    keep_monthly: KeepMonthly = 0,
    keep_last: KeepLast = 0,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be pruned; delete nothing.")] = False,
    data_dir: DataDir = None,
    verifier_key: VerifierKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete the backups the retention policy no longer keeps.

    Never the newest nor the last verified backup; never anything that is not a readable,
    signed Hygie backup. With --data-dir: only this instance's backups, recorded in its ledger."""
    policy = _policy(keep_daily, keep_weekly, keep_monthly, keep_last)
    if policy.empty:
        fail("no retention policy: pass at least one of --keep-daily, --keep-weekly, "
             "--keep-monthly, --keep-last")
    report = _prune(from_, policy, dry_run=dry_run, data_dir=data_dir,
                    verifier_key=verifier_key)
    if json_out:
        emit_json(report.as_json())
    else:
        _print_prune(report)


@backup_app.command("drill")
@boundary
def drill_cmd(
    from_: Annotated[Path, typer.Option("--from", help="The directory holding the backups.")],
    data_dir: DataDir = None,
    key_file: Annotated[Path | None, typer.Option(
        "--key-file", help="The keyring to restore with (default: the instance's key "
        "source).")] = None,
    max_age: Annotated[float | None, typer.Option(
        "--max-age", min=0, help="Fail if the latest backup is older than this many hours.")
    ] = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL: an existing, empty database to restore into "
        "(emptied afterwards). Default: a scratch database created and dropped on the "
        "instance's server.")] = None,
    work_dir: Annotated[Path | None, typer.Option(
        "--work-dir", help="Where to make the temporary restored copy (default: the "
        "system's temporary directory).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore the latest backup into a temporary place and check it end to end.

    Reports the restore time (RTO) and the backup's age (RPO), records the result in the
    ledger and the target's journal; non-zero exit if any check fails."""
    from hygie.resilience.drill import duration, run_drill

    report = run_drill(data_dir, from_, key_file=key_file, database_url=database_url,
                       max_age_hours=max_age, work_dir=work_dir)
    for warning in report.warnings:
        warn(warning)
    if json_out:
        emit_json(report.as_json())
    else:
        head = "drill ok" if report.ok else "drill FAILED"
        say(f"{head}: {report.backup or 'no backup'} in {report.target}")
        if report.rpo_seconds is not None and report.created_at is not None:
            say(f"  backup age (RPO):   {duration(report.rpo_seconds)} "
                f"(made {report.created_at.strftime('%Y-%m-%dT%H:%M:%SZ')})")
        if report.rto_seconds is not None:
            say(f"  restore time (RTO): {duration(report.rto_seconds)} "
                f"(restore {duration(report.restore_seconds or 0.0)}, then the checks)")
        for check in report.checks:
            say(f"  {'ok  ' if check.ok else 'FAIL'} {check.name:<9} {check.detail}")
    failed = report.failed
    if failed is not None:
        fail(f"backup drill failed: {failed.name}: {failed.detail}")


@boundary
def restore_cmd(
    backup: Annotated[Path, typer.Argument(help="The backup directory.")],
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="The new data directory to restore into.")],
    key_file: Annotated[Path, typer.Option(
        "--key-file", help="The key-encryption keyring (kek.json) kept apart from backups.")],
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL backups: an existing, empty database to restore "
        "into.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Restore over a non-empty data dir, moving it aside "
        "(<dir>.replaced-<time>).")] = False,
    verifier_key: VerifierKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a verified backup into a fresh data dir (all or nothing)."""
    from hygie.resilience.backup import restore_backup

    result = restore_backup(backup, data_dir, key_file, database_url=database_url,
                            force=force, verifier_key=verifier_key)
    if json_out:
        emit_json({"data_dir": str(result.data_dir), "resources": result.resources,
                   "ledger_size": result.ledger_size,
                   "replaced": str(result.replaced) if result.replaced else None})
        return
    out.print(f"restored {result.resources} resources and {result.ledger_size} ledger entries "
              f"into {result.data_dir}", markup=False, highlight=False, soft_wrap=True)
    if result.replaced:
        out.print(f"the previous data dir was kept as {result.replaced}", markup=False,
                  highlight=False, soft_wrap=True)
