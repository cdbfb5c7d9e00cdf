"""``hygie ledger``: checkpoint, verify, witness."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hygie.cli.main import DataDir, JsonOpt, _runtime, boundary, emit_json, fail, out

ledger_app: typer.Typer = typer.Typer(
    help="The tamper-evident audit ledger: checkpoints, verification, witnessing.",
    no_args_is_help=True)


@ledger_app.command("checkpoint")
@boundary
def checkpoint(data_dir: DataDir = None) -> None:
    """Sequence new audit entries and print the latest signed checkpoint."""
    rt = _runtime(data_dir)
    sys.stdout.write(rt.ledger.checkpoint())  # byte-exact: a signed note must not be wrapped


@ledger_app.command("verify")
@boundary
def verify(data_dir: DataDir = None, json_out: JsonOpt = False) -> None:
    """Recompute every entry, the tree and every checkpoint; name the first bad entry."""
    from hygie.errors import IntegrityFailure
    from hygie.ledger.verify import verify_instance

    rt = _runtime(data_dir)
    sequencing: str | None = None
    try:
        rt.ledger.integrate()  # so that entries not yet sequenced are verified too
    except IntegrityFailure as exc:  # tampered: verify names the first bad entry below
        sequencing = exc.message
    report = verify_instance(rt.engine, rt.ledger.signer.verifier(), rt.ledger.origin)
    if sequencing is not None and report.ok:
        report.fail(sequencing)
    if json_out:
        emit_json({"ok": report.ok, "entries": report.entries,
                   "checkpoints": report.checkpoints, "root": report.root,
                   "problems": report.problems})
    else:
        out.print(f"{report.entries} entries, {report.checkpoints} checkpoints, root "
                  f"{report.root}", markup=False)
    if not report.ok:
        fail(report.problems[0])
    if not json_out:
        out.print("ledger verified: no entry removed, altered, reordered or inserted")


@ledger_app.command("witness")
@boundary
def witness_cmd(
    url: Annotated[str, typer.Argument(help="Base URL of the Hygie server.")],
    state: Annotated[Path, typer.Option("--state", help="File keeping the last checkpoint.")],
    verifier_key: Annotated[str | None, typer.Option(
        "--verifier-key", help="Pin the ledger's verifier key (else trust on first use).")
    ] = None,
    client_id: Annotated[str | None, typer.Option(
        envvar="HYGIE_WITNESS_CLIENT_ID", help="API client with the ledger/*.read scope.")
    ] = None,
    client_secret: Annotated[str | None, typer.Option(
        envvar="HYGIE_WITNESS_CLIENT_SECRET", help="Its secret (prefer the variable).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the server's latest checkpoint against the last one seen, and keep it."""
    import httpx

    from hygie.ledger.verify import WitnessError, witness

    if not client_id or not client_secret:
        fail("a client id and secret with the ledger/*.read scope are needed "
             "(HYGIE_WITNESS_CLIENT_ID, HYGIE_WITNESS_CLIENT_SECRET)")
    try:
        resp = httpx.post(url.rstrip("/") + "/auth/token", auth=(client_id or "",
                                                                   client_secret or ""),
                          data={"grant_type": "client_credentials", "scope": "ledger/*.read"},
                          timeout=30)
        if resp.status_code != 200:
            fail(f"the server refused the witness's credentials ({resp.status_code})")
        result = witness(url, state, token=resp.json()["access_token"],
                         verifier_key=verifier_key)
    except WitnessError as exc:
        fail(str(exc))
        return
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url} ({type(exc).__name__})")
        return
    if json_out:
        emit_json(result)
    else:
        out.print(f"checkpoint {result['size']} verified and consistent with "
                  f"{result['previous_size']}; kept in {state}", markup=False)
