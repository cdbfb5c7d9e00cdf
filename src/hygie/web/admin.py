"""The administrator's pages: accounts, API clients, keys and backups (role ``admin`` only).

- ``/app/admin/accounts``: list; add (the activation code is shown once); disable; reset the
  second factor (a new activation code, shown once). The same ``access.accounts`` functions as
  ``hygie user add|disable|reset-mfa``, recorded in the ledger with the admin as actor.
- ``/app/admin/clients``: list; add with scopes (the secret is shown once); revoke. The same
  ``access.clients`` functions and audit entries as ``hygie client add|revoke``.
- ``/app/admin/system``: key-encryption key versions, the active one, the last rotation (as
  ``hygie keys status``), and the last backup and restore drill recorded in the ledger
  (``backup`` and ``backup-drill`` system events).

An administrator runs the system but reads no clinical data: the policy refuses them every
patient record (separation of duties); these pages never touch patient data.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from hygie.access import accounts, clients
from hygie.access.actor import ROLES
from hygie.api.deps import runtime
from hygie.errors import HygieError
from hygie.ledger import audit
from hygie.store.db import transaction
from hygie.store.tables import audit_event, kek_version
from hygie.web import auth
from hygie.web.account import moment
from hygie.web.pages import N_, SessionForm, Signed, field, redirect
from hygie.web.templating import render, translate

router = APIRouter(include_in_schema=False)
SCOPE_CHOICES = ("system/*.read", "system/*.*", "system/Patient.read", "system/Patient.*",
                 "system/Appointment.*")
STATUS_LABELS = {"pending": N_("En attente d'activation"), "enrolling": N_("Activation en cours"),
                 "active": N_("Actif"), "disabled": N_("Désactivé")}


def _admin_only(request: Request, ws: Any) -> Response | None:
    if ws.actor.role == "admin":
        return None
    return render(request, "denied.html", 403, message=translate(
        request, N_("Cette page est réservée à l'administration.")))


def _record(conn: Any, request: Request, ws: Any, action: str, rid: str) -> None:
    """The ledger entry of an administrator's action on an API client (ids only)."""
    ctx = auth.context(request)
    audit.append(conn, runtime(request).settings.tenant, [audit.AuditEntry(
        actor=ws.actor.label, actor_kind="user", action=action, outcome=audit.SUCCESS,
        rid=rid, request_id=ctx.request_id, client_address=ctx.client_address,
        actor_role="admin")])


# -- accounts ---------------------------------------------------------------------------------
def _accounts_page(request: Request, status: int = 200, **extra: Any) -> Response:
    rt = runtime(request)
    with transaction(rt.engine, readonly=True) as conn:
        users = accounts.list_users(conn=conn, tenant=rt.settings.tenant)
    rows = [{"username": u.username, "role": u.role, "status": u.status,
             "status_label": translate(request, STATUS_LABELS.get(u.status, u.status)),
             "link": u.practitioner_id or u.patient_id or "",
             "created": moment(u.created_at, request)} for u in users]
    values: dict[str, Any] = {"users": rows, "roles": ROLES, "issued": None, "error": None,
                              "form": {}}
    values.update(extra)
    return render(request, "admin_accounts.html", status, **values)


@router.get("/app/admin/accounts")
def accounts_page(request: Request, ws: Signed) -> Response:
    return _admin_only(request, ws) or _accounts_page(request)


def _error_text(request: Request, exc: HygieError) -> str:
    messages = {
        "conflict": N_("Un compte porte déjà cet identifiant, ou l'opération est déjà faite."),
        "not-found": N_("Ce compte n'existe pas."),
    }
    text = messages.get(exc.code)
    if text is None:
        text = N_("Données invalides : un identifiant fait 3 à 64 caractères (a-z 0-9 . _ -) ; "
                  "un compte praticien demande l'identifiant de sa ressource Practitioner, un "
                  "compte patient celui de sa ressource Patient.")
    return translate(request, text)


@router.post("/app/admin/accounts")
def account_add(request: Request, ws: Signed, form: SessionForm) -> Response:
    denied = _admin_only(request, ws)
    if denied:
        return denied
    rt = runtime(request)
    values = {"username": field(form, "username", 64).lower(), "role": field(form, "role", 16),
              "link": field(form, "link", 64)}
    role = values["role"]

    def work() -> accounts.ActivationCode:
        with transaction(rt.engine) as conn:
            return accounts.add_user(
                conn=conn, tenant=rt.settings.tenant, username=values["username"], role=role,
                practitioner_id=(values["link"] or None) if role == "practitioner" else None,
                patient_id=(values["link"] or None) if role == "patient" else None,
                activation_days=rt.settings.activation_days, actor=ws.actor,
                ctx=auth.context(request))

    try:
        issued = work()
    except HygieError as exc:
        return _accounts_page(
            request, 400, error=_error_text(request, exc), form=values)
    return _accounts_page(request, issued={
        "username": issued.account.username, "code": issued.code,
        "expires": moment(issued.expires_at, request), "reset": False})


@router.post("/app/admin/accounts/{username}/disable")
def account_disable(request: Request, username: str, ws: Signed,
                          form: SessionForm) -> Response:
    denied = _admin_only(request, ws)
    if denied:
        return denied
    rt = runtime(request)
    if username == ws.actor.username:
        return _accounts_page(request, 400, error=translate(
            request, N_("Vous ne pouvez pas désactiver votre propre compte.")))

    def work() -> None:
        with transaction(rt.engine) as conn:
            accounts.disable_user(conn=conn, tenant=rt.settings.tenant, username=username[:64],
                                  actor=ws.actor, ctx=auth.context(request))

    try:
        work()
    except HygieError as exc:
        return _accounts_page(
            request, 400, error=_error_text(request, exc))
    return redirect(request, "/app/admin/accounts")


@router.post("/app/admin/accounts/{username}/reset-mfa")
def account_reset_mfa(request: Request, username: str, ws: Signed,
                            form: SessionForm) -> Response:
    denied = _admin_only(request, ws)
    if denied:
        return denied
    rt = runtime(request)

    def work() -> accounts.ActivationCode:
        with transaction(rt.engine) as conn:
            return accounts.reset_mfa(conn=conn, tenant=rt.settings.tenant,
                                      username=username[:64],
                                      activation_days=rt.settings.activation_days,
                                      actor=ws.actor, ctx=auth.context(request))

    try:
        issued = work()
    except HygieError as exc:
        return _accounts_page(
            request, 400, error=_error_text(request, exc))
    return _accounts_page(request, issued={
        "username": issued.account.username, "code": issued.code,
        "expires": moment(issued.expires_at, request), "reset": True})


# -- API clients ------------------------------------------------------------------------------
def _clients_page(request: Request, status: int = 200, **extra: Any) -> Response:
    rt = runtime(request)
    with transaction(rt.engine, readonly=True) as conn:
        found = clients.list_clients(conn, tenant=rt.settings.tenant)
    rows = [{"client_id": c.client_id, "name": c.name, "scopes": c.scopes,
             "created": moment(c.created_at, request), "revoked": moment(c.revoked_at, request)}
            for c in found]
    values: dict[str, Any] = {"clients": rows, "scope_choices": SCOPE_CHOICES, "issued": None,
                              "error": None, "form": {}}
    values.update(extra)
    return render(request, "admin_clients.html", status, **values)


@router.get("/app/admin/clients")
def clients_page(request: Request, ws: Signed) -> Response:
    return _admin_only(request, ws) or _clients_page(request)


@router.post("/app/admin/clients")
def client_add(request: Request, ws: Signed, form: SessionForm) -> Response:
    denied = _admin_only(request, ws)
    if denied:
        return denied
    rt = runtime(request)
    name = field(form, "name", 128)
    scopes = " ".join(v for v in form.getlist("scope") if isinstance(v, str))[:512]

    def work() -> tuple[str, str]:
        with transaction(rt.engine) as conn:
            cid, secret = clients.create_client(conn, tenant=rt.settings.tenant, name=name,
                                                scopes=scopes)
            _record(conn, request, ws, "client-add", cid)
            return cid, secret

    try:
        cid, secret = work()
    except HygieError:
        return _clients_page(
            request, 400, form={"name": name}, error=translate(
                request, N_("Indiquez un nom (1 à 128 caractères) et au moins une "
                            "autorisation.")))
    return _clients_page(
        request, issued={"client_id": cid, "secret": secret, "name": name})


@router.post("/app/admin/clients/{client_id}/revoke")
def client_revoke(request: Request, client_id: str, ws: Signed,
                  form: SessionForm) -> Response:
    denied = _admin_only(request, ws)
    if denied:
        return denied
    rt = runtime(request)

    def work() -> None:
        with transaction(rt.engine) as conn:
            clients.revoke_client(conn, tenant=rt.settings.tenant, client_id=client_id[:64])
            _record(conn, request, ws, "client-revoke", client_id[:64])

    try:
        work()
    except HygieError:
        return _clients_page(request, 400, error=translate(
            request, N_("Ce client n'existe pas ou est déjà révoqué.")))
    return redirect(request, "/app/admin/clients")


# -- keys and backups -------------------------------------------------------------------------
def _last_event(conn: Any, tenant: str, action: str) -> Any:
    return conn.execute(select(audit_event.c.at, audit_event.c.outcome, audit_event.c.detail)
                        .where(audit_event.c.tenant == tenant, audit_event.c.action == action)
                        .order_by(audit_event.c.seq.desc()).limit(1)).first()


def system_status(request: Request) -> dict[str, Any]:
    rt = runtime(request)
    keys = rt.gate.keys
    tenant = rt.settings.tenant
    with transaction(rt.engine, readonly=True) as conn:
        in_use = keys.versions_in_use(conn)
        versions = {r.version: r for r in conn.execute(select(kek_version))}
        backup = _last_event(conn, tenant, "backup")
        drill = _last_event(conn, tenant, "backup-drill")
    active = keys.keyring.active_version
    rows = [{"version": v, "active": v == active, "data_keys": in_use.get(v, 0),
             "created": moment(versions[v].created_at if v in versions else None, request)}
            for v in keys.keyring.versions]
    rotated = (moment(versions[active].created_at, request)
               if active in versions and len(versions) > 1 else "")
    return {
        "key_source": rt.settings.key_source.kind,
        "active_version": active, "versions": rows, "rotated": rotated,
        "backup": None if backup is None else {
            "when": moment(backup.at, request), "name": backup.detail or ""},
        "drill": None if drill is None else {
            "when": moment(drill.at, request), "ok": drill.outcome == audit.SUCCESS,
            "detail": drill.detail or ""},
    }


@router.get("/app/admin/system")
def system_page(request: Request, ws: Signed) -> Response:
    return _admin_only(request, ws) or render(request, "admin_system.html",
                                              **system_status(request))
