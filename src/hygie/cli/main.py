"""``hygie`` — the command line. One error boundary: one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from hygie import __version__
from hygie.errors import HygieError

app = typer.Typer(
    name="hygie",
    help="Hygie — secure health-data platform: an encrypted FHIR R4 store with one audited "
         "door to patient data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
client_app = typer.Typer(help="API clients (OAuth2 client credentials).", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys: status, rotation, export, recovery shares.",
                       no_args_is_help=True)
patient_app = typer.Typer(help="Patient-level operations (crypto-shredding).",
                          no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(keys_app, name="keys")
app.add_typer(patient_app, name="patient")

err = Console(stderr=True)
out = Console()

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="HYGIE_DATA_DIR", show_envvar=True,
    help="Instance data directory (default: $HYGIE_DATA_DIR).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    err.print(f"hygie: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def boundary(fn: F) -> F:
    """Turn every error into one line on stderr and a non-zero exit (never a traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except HygieError as exc:
            fail(exc.message)
        except OSError as exc:
            fail(f"{exc.strerror or 'I/O error'}" + (f": {exc.filename}" if exc.filename else ""))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - the CLI's single error boundary
            fail(f"unexpected {type(exc).__name__}; nothing was left half-written", 70)

    return wrapper  # type: ignore[return-value]


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _runtime(data_dir: Path | None) -> Any:
    from hygie.runtime import open_runtime
    from hygie.settings import load_settings

    return open_runtime(load_settings(data_dir))


def _when(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False
          ) -> None:
    if version:
        out.print(f"hygie {__version__}")
        raise typer.Exit(0)


# -- init --------------------------------------------------------------------------------------
@app.command()
@boundary
def init(
    data_dir: DataDir = None,
    key_source: Annotated[str | None, typer.Option(
        "--key-source", help="Where the key-encryption keyring lives: env:VARIABLE (holding a "
        "keyring from 'hygie keys generate'). Default: a 0600 file kek.json in the data dir.")
    ] = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="HYGIE_DATABASE_URL", show_envvar=True,
        help="SQLAlchemy URL (default: SQLite in the data dir; "
             "postgresql+psycopg://user@host/db for PostgreSQL).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a new instance: data dir (0700), config, database, key-encryption key."""
    from hygie.instance import init_instance

    info = init_instance(data_dir, key_source=key_source, database_url=database_url)
    if json_out:
        emit_json(info)
    else:
        out.print(f"Initialised Hygie instance {info['instance_id']} in {info['data_dir']}")
        out.print(f"  database:   {info['database']}")
        out.print(f"  key source: {info['key_source']}")
        out.print("Next: hygie client add NAME --data-dir DIR, then hygie serve --data-dir DIR")


@app.command()
@boundary
def migrate(data_dir: DataDir = None, json_out: JsonOpt = False) -> None:
    """Upgrade a data dir made by an earlier Hygie to this version (stop the server and back
    it up first); recorded in the ledger."""
    from hygie.instance import migrate_instance

    info = migrate_instance(data_dir)
    if json_out:
        emit_json(info)
    elif info["migrated"]:
        out.print(f"Migrated {info['data_dir']} from schema {info['from']} to {info['to']}",
                  markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(f"{info['data_dir']} is up to date (schema {info['to']})", markup=False,
                  highlight=False, soft_wrap=True)


# -- serve -------------------------------------------------------------------------------------
@app.command()
@boundary
def serve(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
) -> None:
    """Serve the FHIR API (and the auth endpoints) over HTTP, after an integrity check.

    The database, the key file and the ledger are checked before the port is bound; on any
    failure nothing is served: exit 3, with the steps to restore the latest backup.
    """
    import uvicorn

    from hygie.cli.check import report_failure
    from hygie.resilience.integrity import check_instance
    from hygie.settings import resolve_data_dir

    path = resolve_data_dir(data_dir)
    report = check_instance(path)
    if not report.ok:
        report_failure(report)
    err.print(f"integrity check passed in {report.seconds:.2f} s", markup=False)
    rt = _runtime(path)  # fail fast with one clear line if anything is wrong
    rt.engine.dispose()
    os.environ["HYGIE_DATA_DIR"] = str(path)
    err.print(f"Hygie {__version__} serving {path} on http://{host}:{port}/fhir "
              f"({workers} worker{'s' if workers > 1 else ''})", markup=False)
    uvicorn.run("hygie.api.asgi:create_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False, server_header=False,
                proxy_headers=False)


# -- clients -----------------------------------------------------------------------------------
@client_app.command("add")
@boundary
def client_add(
    name: Annotated[str, typer.Argument(help="A name to recognise the client by.")],
    data_dir: DataDir = None,
    scope: Annotated[str, typer.Option(help="Space-separated SMART system scopes.")
                     ] = "system/*.*",
    json_out: JsonOpt = False,
) -> None:
    """Register an API client; prints its client_id and client_secret ONCE."""
    from hygie.access.clients import create_client
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    from hygie.ledger import audit

    with transaction(rt.engine) as conn:
        cid, secret = create_client(conn, tenant=rt.settings.tenant, name=name, scopes=scope)
        audit.append(conn, rt.settings.tenant, [audit.AuditEntry(
            actor="cli:client", actor_kind="system", action="client-add",
            outcome=audit.SUCCESS, rid=cid)])
    if json_out:
        emit_json({"client_id": cid, "client_secret": secret})
    else:
        out.print(f"client_id:     {cid}", markup=False)
        out.print(f"client_secret: {secret}", markup=False)
        out.print("Store the secret now: it is shown only once.")


@client_app.command("list")
@boundary
def client_list(data_dir: DataDir = None, json_out: JsonOpt = False) -> None:
    """List API clients (never their secrets)."""
    from hygie.access.clients import list_clients
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    with transaction(rt.engine) as conn:
        clients = list_clients(conn, tenant=rt.settings.tenant)
    rows = [{"client_id": c.client_id, "name": c.name, "scope": c.scopes,
             "created_at": _when(c.created_at), "revoked_at": _when(c.revoked_at)}
            for c in clients]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out.print("No API client. Add one with: hygie client add NAME")
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        out.print(f"{r['client_id']}  {r['name']}  [{r['scope']}]  {state}", markup=False)


@client_app.command("revoke")
@boundary
def client_revoke(
    client_id: Annotated[str, typer.Argument(help="The client_id to revoke.")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a client: its tokens stop working at once."""
    from hygie.access.clients import revoke_client
    from hygie.ledger import audit
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    with transaction(rt.engine) as conn:
        revoke_client(conn, tenant=rt.settings.tenant, client_id=client_id)
        audit.append(conn, rt.settings.tenant, [audit.AuditEntry(
            actor="cli:client", actor_kind="system", action="client-revoke",
            outcome=audit.SUCCESS, rid=client_id)])
    out.print(f"Revoked {client_id}.", markup=False)


# -- keys --------------------------------------------------------------------------------------
@keys_app.command("generate")
@boundary
def keys_generate() -> None:
    """Print a new keyring (for an env: key source). Treat the output as a secret."""
    from hygie.crypto import Keyring

    sys.stdout.write(Keyring.generate().serialize())


@keys_app.command("status")
@boundary
def keys_status(data_dir: DataDir = None, json_out: JsonOpt = False) -> None:
    """Key-encryption key versions, and how many data keys each one wraps."""
    from hygie.instance import key_status

    status = key_status(_runtime(data_dir))
    if json_out:
        emit_json(status)
        return
    out.print(f"key source:     {status['key_source']}", markup=False)
    out.print(f"active version: {status['active_version']}")
    for v in status["versions"]:
        out.print(f"  version {v['version']}: {v['data_keys']} data key(s) wrapped"
                  f"{' (active)' if v['active'] else ''}")
    out.print(f"data keys: {status['data_keys']} live, {status['destroyed_keys']} destroyed")


@keys_app.command("rotate")
@boundary
def keys_rotate(
    data_dir: DataDir = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="With an env: key source: write the new keyring to this file (0600).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """New key-encryption key version; re-wrap every data key; retire unused old versions."""
    from hygie.instance import rotate_keys

    result = rotate_keys(_runtime(data_dir), out_file=out_file)
    if json_out:
        emit_json(result)
    else:
        out.print(f"Active key-encryption key is now version {result['active_version']}; "
                  f"{result['rewrapped']} data key(s) re-wrapped; retired versions: "
                  f"{result['retired'] or 'none'}.")


# -- import / export --------------------------------------------------------------------------
@app.command("import")
@boundary
def import_(
    path: Annotated[Path, typer.Argument(help="A Bundle .json, an .ndjson file, or a folder.")],
    data_dir: DataDir = None,
    keep_going: Annotated[bool, typer.Option(help="Skip failing bundles instead of stopping."
                                             )] = False,
    json_out: JsonOpt = False,
) -> None:
    """Import FHIR data: one transaction per bundle; resumable (re-run to continue)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from hygie.records.importer import discover, run_import, units_of

    rt = _runtime(data_dir)
    files = discover(path)
    total = sum(u.size for f in files for u in units_of(f))
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  disable=json_out or not err.is_terminal) as bar:
        task = bar.add_task("import", total=total)
        report = run_import(rt.gate, path, page_max=rt.settings.page_size_max,
                            keep_going=keep_going,
                            progress=lambda done, skipped: bar.advance(task, done + skipped))
    doc = {"files": report.files, "bundles_imported": report.units,
           "bundles_skipped": report.skipped_units, "resources": report.resources,
           "failed": report.failed}
    if json_out:
        emit_json(doc)
    else:
        out.print(f"Imported {report.resources} resources from {report.units} bundle(s) "
                  f"({report.skipped_units} already imported, {len(report.failed)} failed).")
    if report.failed:
        raise typer.Exit(1)


@app.command()
@boundary
def export(
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the NDJSON files.")],
    data_dir: DataDir = None,
    json_out: JsonOpt = False,
) -> None:
    """Export every current resource as NDJSON, one file per type (decrypted: protect it)."""
    from hygie.records.exporter import run_export

    counts = run_export(_runtime(data_dir).gate, out_dir)
    if json_out:
        emit_json({"out": str(out_dir), "counts": counts})
    else:
        for rtype, n in counts.items():
            out.print(f"{rtype}.ndjson  {n}")
        out.print(f"Exported {sum(counts.values())} resources to {out_dir}", markup=False)


# -- patients ----------------------------------------------------------------------------------
@patient_app.command("erase")
@boundary
def patient_erase(
    patient_id: Annotated[str, typer.Argument(help="The Patient id.")],
    data_dir: DataDir = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
) -> None:
    """Crypto-shred a patient: destroy their data key; nothing of theirs can be read again."""
    from hygie.access.actor import Actor

    if not yes:
        fail("erasing a patient cannot be undone; add --yes to confirm")
    rt = _runtime(data_dir)
    with rt.gate.open(Actor.system("erase")) as door:
        n = door.erase_patient(patient_id)
    out.print(f"Erased: {n} resource(s) can no longer be decrypted.")


from hygie.cli import keys as _keys  # noqa: E402,F401  (registers on keys_app)
from hygie.cli.backup import backup_app, restore_cmd  # noqa: E402
from hygie.cli.check import check_cmd  # noqa: E402  (it uses the helpers above)
from hygie.cli.ledger import ledger_app  # noqa: E402  (it uses the helpers above)
from hygie.cli.users import user_app  # noqa: E402  (it uses the helpers above)

app.add_typer(user_app, name="user")
app.add_typer(ledger_app, name="ledger")
app.add_typer(backup_app, name="backup")
app.command("restore")(restore_cmd)
app.command("check")(check_cmd)


def main() -> None:
    os.umask(0o077)  # everything Hygie creates (database, WAL, exports) is private
    app()


