"""The "Sécurité" panel of every signed-in person: sessions, recent sign-ins, second factor.

- ``GET /app/security``: the person's live sessions (this one marked), their recent sign-ins
  (successes, refusals and lockouts, from the audit trail), the second factor's status;
- ``POST /app/security/sessions/{id}/end``: end one other session (its tokens stop at once);
- ``POST /app/security/sessions/end-others``: end every session but this one;
- ``POST /app/security/recovery-codes``: new recovery codes, shown once, after
  re-authentication with a TOTP code (a wrong code counts as a failed sign-in).

Adapters only: ``access.sessions`` does the work and writes the audit entries. Also holds the
small display helpers the admin and secretary pages share (times in Europe/Paris).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hygie.access import sessions
from hygie.access.accounts import Refused
from hygie.api.deps import runtime
from hygie.errors import TooManyAttempts
from hygie.store.db import transaction
from hygie.web import auth, i18n
from hygie.web.pages import (
    N_,
    SessionForm,
    Signed,
    _delay,
    _in_transaction,
    field,
    redirect,
)
from hygie.web.templating import render, translate

router = APIRouter(include_in_schema=False)
PARIS = ZoneInfo("Europe/Paris")
_SESSION_ID = re.compile(r"[0-9a-f]{32}")


# -- display helpers (shared with admin.py and secretary.py) ------------------------------------
def moment(us: int | None, request: Request) -> str:
    """Epoch microseconds as a local date and time (Europe/Paris), or an empty string."""
    if not us:
        return ""
    t = datetime.fromtimestamp(us / 1e6, tz=UTC).astimezone(PARIS)
    lang, _ = i18n.choose(request)
    return t.strftime("%d/%m/%Y %H:%M") if lang == "fr" else t.strftime("%Y-%m-%d %H:%M")


def limits(request: Request) -> sessions.AuthLimits:
    return sessions.AuthLimits.from_settings(runtime(request).settings)


_EVENTS = {
    ("mfa", "success"): N_("Connexion réussie"),
    ("login", "denied"): N_("Mot de passe refusé"),
    ("mfa", "denied"): N_("Code refusé"),
    ("lockout", "denied"): N_("Compte bloqué après des échecs répétés"),
}


def _panel(request: Request, ws: sessions.Authenticated | auth.WebSession) -> dict[str, Any]:
    rt = runtime(request)
    actor = ws.actor
    with transaction(rt.engine, readonly=True) as conn:
        live = sessions.list_sessions(conn=conn, tenant=rt.settings.tenant, user_id=actor.id,
                                      limits=limits(request))
        history = sessions.sign_in_history(conn=conn, tenant=rt.settings.tenant,
                                           user_id=actor.id, limit=15)
        mfa = sessions.mfa_status(conn=conn, user_id=actor.id)
    address = {e.session_id: e.client_address for e in history if e.session_id}
    rows = [{"id": s.id, "current": s.id == ws.session_id, "started": moment(s.created_at,
                                                                              request),
             "last_seen": moment(s.last_seen_at, request),
             "address": address.get(s.id) or ""} for s in live]
    events = [{"when": moment(e.at, request), "ok": e.outcome == "success",
               "what": translate(request, _EVENTS.get((e.action, e.outcome),
                                                      N_("Connexion refusée"))),
               "address": e.client_address or ""} for e in history]
    return {"sessions": rows, "events": events, "mfa": mfa,
            "activated": moment(mfa.activated_at, request), "codes": None, "error": None,
            "notice": None}


@router.get("/app/security")
def security_page(request: Request, ws: Signed) -> Response:
    values = _panel(request, ws)
    notice = {"ended": N_("La session a été fermée."),
              "ended-others": N_("Les autres sessions ont été fermées.")}.get(
        request.query_params.get("notice", ""))
    values["notice"] = translate(request, notice) if notice else None
    return render(request, "security.html", **values)


@router.post("/app/security/sessions/end-others")
async def end_others(request: Request, ws: Signed, form: SessionForm) -> Response:
    rt = runtime(request)
    await run_in_threadpool(_in_transaction, request, lambda conn: sessions.end_other_sessions(
        conn=conn, tenant=rt.settings.tenant, actor=ws.actor, ctx=auth.context(request)))
    return redirect(request, "/app/security?notice=ended-others")


@router.post("/app/security/sessions/{session_id}/end")
async def end_one(request: Request, session_id: str, ws: Signed, form: SessionForm) -> Response:
    rt = runtime(request)
    if not _SESSION_ID.fullmatch(session_id) or session_id == ws.session_id:
        # This session ends with "Se déconnecter"; anything else is not one of ours.
        return redirect(request, "/app/security")
    await run_in_threadpool(_in_transaction, request, lambda conn: sessions.end_session(
        conn=conn, tenant=rt.settings.tenant, actor=ws.actor, session_id=session_id,
        ctx=auth.context(request)))
    return redirect(request, "/app/security?notice=ended")


@router.post("/app/security/recovery-codes")
async def recovery_codes(request: Request, ws: Signed, form: SessionForm) -> Response:
    rt = runtime(request)
    code = field(form, "code", 16)
    result = await _delay(await run_in_threadpool(_in_transaction, request, lambda conn:
                                     sessions.regenerate_recovery_codes(
                                         conn=conn, keys=rt.gate.keys, limits=limits(request),
                                         actor=ws.actor, totp_code=code,
                                         ctx=auth.context(request))))
    values = await run_in_threadpool(_panel, request, ws)
    if isinstance(result, Refused):
        if isinstance(result.error, TooManyAttempts):
            message = N_("Trop de tentatives échouées : réessayez plus tard.")
        else:
            message = N_("Ce code n'est pas valide : saisissez le code actuel de votre "
                         "application d'authentification.")
        values["error"] = translate(request, message)
        return render(request, "security.html", 400, **values)
    values["codes"] = list(result)
    return render(request, "security.html", **values)
