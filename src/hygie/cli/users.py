"""``hygie user``: people's accounts (add, list, disable, reset-mfa). Every change is audited."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hygie.access.actor import ROLES
from hygie.cli.main import DataDir, JsonOpt, _runtime, _when, boundary, emit_json, out

user_app = typer.Typer(help="People's accounts: add, list, disable, reset-mfa.",
                       no_args_is_help=True)

Username = Annotated[str, typer.Argument(help="The username (3-64 characters: a-z 0-9 . _ -).")]


def _show_code(username: str, code: str, expires_at: int, json_out: bool) -> None:
    if json_out:
        emit_json({"username": username, "activation_code": code})
        return
    out.print(f"username:        {username}", markup=False)
    out.print(f"activation code: {code}", markup=False)
    out.print(f"Hand the code to its owner, and only to them: it is shown once and expires "
              f"{_when(expires_at)}. They activate the account with it (password and "
              "authenticator app).", markup=False)


@user_app.command("add")
@boundary
def user_add(
    username: Username,
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    data_dir: DataDir = None,
    practitioner_id: Annotated[str | None, typer.Option(
        "--practitioner-id", help="The Practitioner resource id (practitioner role only).")
    ] = None,
    patient_id: Annotated[str | None, typer.Option(
        "--patient-id", help="The Patient resource id (patient role only).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an inactive account; prints its one-time activation code."""
    from hygie.access.accounts import add_user
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    with transaction(rt.engine) as conn:
        issued = add_user(conn=conn, tenant=rt.settings.tenant, username=username, role=role,
                          practitioner_id=practitioner_id, patient_id=patient_id,
                          activation_days=rt.settings.activation_days)
    _show_code(issued.account.username, issued.code, issued.expires_at, json_out)


@user_app.command("list")
@boundary
def user_list(data_dir: DataDir = None, json_out: JsonOpt = False) -> None:
    """List accounts (never a password, secret or code)."""
    from hygie.access.accounts import list_users
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    with transaction(rt.engine, readonly=True) as conn:
        users = list_users(conn=conn, tenant=rt.settings.tenant)
    rows: list[dict[str, Any]] = [
        {"username": u.username, "role": u.role, "status": u.status,
         "practitioner_id": u.practitioner_id, "patient_id": u.patient_id,
         "created_at": _when(u.created_at), "activated_at": _when(u.activated_at),
         "disabled_at": _when(u.disabled_at)} for u in users]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out.print("No account. Add one with: hygie user add USERNAME --role ROLE")
    for r in rows:
        link = r["practitioner_id"] or r["patient_id"]
        out.print(f"{r['username']}  {r['role']}  {r['status']}"
                  f"{f'  ({link})' if link else ''}", markup=False)


@user_app.command("disable")
@boundary
def user_disable(username: Username, data_dir: DataDir = None) -> None:
    """Disable an account: its sessions end at once and it cannot sign in again."""
    from hygie.access.accounts import disable_user
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    with transaction(rt.engine) as conn:
        disable_user(conn=conn, tenant=rt.settings.tenant, username=username)
    out.print(f"Disabled {username}; its sessions were ended.", markup=False)


@user_app.command("reset-mfa")
@boundary
def user_reset_mfa(username: Username, data_dir: DataDir = None,
                   json_out: JsonOpt = False) -> None:
    """Lost authenticator: end the sessions, forget password and TOTP, print a new code."""
    from hygie.access.accounts import reset_mfa
    from hygie.store.db import transaction

    rt = _runtime(data_dir)
    with transaction(rt.engine) as conn:
        issued = reset_mfa(conn=conn, tenant=rt.settings.tenant, username=username,
                           activation_days=rt.settings.activation_days)
    _show_code(issued.account.username, issued.code, issued.expires_at, json_out)
