"""``hygie backup create|verify`` and ``hygie restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hygie.cli.main import DataDir, JsonOpt, boundary, emit_json, fail, out

backup_app: typer.Typer = typer.Typer(
    help="Signed, verifiable backups (never holding the key-encryption key).",
    no_args_is_help=True)

VerifierKeyOpt = Annotated[str | None, typer.Option(
    "--verifier-key", help="Pin the ledger's verifier key (else the one in the backup).")]


@backup_app.command("create")
@boundary
def create(
    data_dir: DataDir = None,
    to: Annotated[Path, typer.Option("--to", help="Directory receiving the new backup.")
                  ] = Path("."),
    json_out: JsonOpt = False,
) -> None:
    """Snapshot the instance (safe while it serves) into a new signed backup under --to."""
    from hygie.resilience.backup import create_backup

    result = create_backup(data_dir, to)
    if json_out:
        emit_json({"backup": str(result.path), "size": result.size,
                   "resources": result.resources, "ledger_size": result.ledger_size})
    else:
        out.print(str(result.path), markup=False, highlight=False, soft_wrap=True)


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
    if not report.ok:
        fail(f"backup {report.backup} is damaged: " + "; ".join(report.problems))
    if not json_out:
        out.print(f"backup verified: {report.backup} (instance {report.manifest['instance_id']}, "
                  f"{report.manifest['created_at']})", markup=False, highlight=False,
                  soft_wrap=True)


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
