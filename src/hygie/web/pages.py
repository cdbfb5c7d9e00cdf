"""The web app's routes: sign-in, first-login activation, sign-out, home, search, record.

Adapters only: parse the form, call ``access.sessions`` / ``access.accounts`` or the gate,
render a template. Every state-changing route takes :data:`PublicForm` or :data:`SessionForm`
(CSRF checked); every ``/app`` page takes :data:`Signed` (a live session) and reads patient
data only through ``rt.gate.open(...)`` (policy decision + audit entry).
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Annotated, Any

import orjson
import segno
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from hygie.access import accounts, sessions
from hygie.access.accounts import Refused
from hygie.api.deps import runtime
from hygie.errors import (
    Forbidden,
    HygieError,
    InvalidRequest,
    TooManyAttempts,
    WeakPassword,
)
from hygie.fhir.identifiers import INS_NIR_SYSTEM, nir_key_is_valid
from hygie.fhir.search import SearchQuery, parse_search
from hygie.store.db import transaction
from hygie.web import auth, i18n, record
from hygie.web.security import CspReports
from hygie.web.templating import finish, render, translate

router = APIRouter(include_in_schema=False)
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
HOME_LIMIT = 50
RESULTS_LIMIT = 20
MAX_FORM_FIELDS = 20


def N_(message: str) -> str:  # noqa: N802 - gettext's marker name (extracted by pybabel)
    return message


class CsrfRefused(Exception):
    """A state-changing request without a valid CSRF token."""


# -- dependencies -----------------------------------------------------------------------------
def signed_in(request: Request) -> auth.WebSession:
    return auth.required(request)


Signed = Annotated[auth.WebSession, Depends(signed_in)]


async def _form(request: Request) -> FormData:
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=65536)
    presented = request.headers.get("x-csrf-token") or form.get("csrf_token")
    ok = await run_in_threadpool(auth.check, request,
                                 presented if isinstance(presented, str) else None)
    if not ok:
        raise CsrfRefused()
    return form


async def public_form(request: Request) -> FormData:
    """A form posted before sign-in: CSRF token bound to the pre-session cookie."""
    return await _form(request)


async def session_form(request: Request, ws: Signed) -> FormData:
    """A form posted by a signed-in person: CSRF token bound to the session."""
    return await _form(request)


PublicForm = Annotated[FormData, Depends(public_form)]
SessionForm = Annotated[FormData, Depends(session_form)]


def field(form: FormData, name: str, limit: int = 256) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def redirect(request: Request, url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    finish(request, response)
    return response


async def _delay(result: Any) -> Any:
    if isinstance(result, Refused) and result.delay:
        await asyncio.sleep(result.delay)
    return result


def _in_transaction(request: Request, work: Any) -> Any:
    rt = runtime(request)
    with transaction(rt.engine) as conn:
        return work(conn)


# -- sign-in ----------------------------------------------------------------------------------
_NOTICES = {
    "expired": N_("Votre session a expiré : reconnectez-vous."),
    "signed-out": N_("Vous êtes déconnecté."),
    "activated": N_("Votre compte est activé : connectez-vous avec votre mot de passe et un "
                    "code de votre application d'authentification."),
    "code": N_("Le code n'est pas valide ou la connexion a expiré : reconnectez-vous."),
}


@router.get("/")
def signin_page(request: Request) -> Response:
    if auth.current(request) is not None:
        return redirect(request, "/app")
    notice = _NOTICES.get(request.query_params.get("notice", ""))
    return render(request, "signin.html", notice=translate(request, notice) if notice else None,
                  error=None, username="")


@router.post("/signin")
async def signin(request: Request, form: PublicForm) -> Response:
    rt = runtime(request)
    username, password = field(form, "username", 256), field(form, "password", 4096)
    if not username or not password:
        return render(request, "signin.html", 400, notice=None, username=username,
                      error=translate(request, N_("Saisissez votre identifiant et votre mot de "
                                                  "passe.")))
    result = await _delay(await run_in_threadpool(_in_transaction, request, lambda conn:
                          sessions.login(conn=conn, tenant=rt.settings.tenant,
                                         limits=sessions.AuthLimits.from_settings(rt.settings),
                                         username=username, password=password,
                                         ctx=auth.context(request))))
    if isinstance(result, Refused):
        return render(request, "signin.html", result.error.status, notice=None,
                      username=username, error=_signin_error(request, result.error))
    response = redirect(request, "/signin/code")
    auth.set_cookie(response, request, rt, auth.MFA_COOKIE, result.token,
                    max_age=sessions.MFA_CHALLENGE_SECONDS)
    return response


def _signin_error(request: Request, error: HygieError) -> str:
    if isinstance(error, TooManyAttempts):
        minutes = max(1, -(-error.retry_after // 60))
        return translate(request, N_("Trop de tentatives échouées : le compte ou le poste est "
                                     "bloqué pendant {minutes} min.")).format(minutes=minutes)
    return translate(request, N_("Identifiant ou mot de passe incorrect."))


@router.get("/signin/code")
def code_page(request: Request) -> Response:
    if not request.cookies.get(auth.MFA_COOKIE):
        return redirect(request, "/")
    return render(request, "signin_code.html", error=None)


@router.post("/signin/code")
async def code(request: Request, form: PublicForm) -> Response:
    rt = runtime(request)
    challenge = request.cookies.get(auth.MFA_COOKIE, "")[:128]
    value = field(form, "code", 64)
    if not challenge:
        return redirect(request, "/?notice=code")
    if not value:
        return render(request, "signin_code.html", 400, error=translate(
            request, N_("Saisissez le code à 6 chiffres de votre application.")))
    result = await _delay(await run_in_threadpool(_in_transaction, request, lambda conn:
                          sessions.complete_mfa(conn=conn, keys=rt.gate.keys,
                                                limits=sessions.AuthLimits.from_settings(
                                                    rt.settings),
                                                challenge=challenge, code=value,
                                                ctx=auth.context(request))))
    if isinstance(result, Refused):
        if isinstance(result.error, TooManyAttempts):
            response = render(request, "signin.html", 429, notice=None, username="",
                              error=_signin_error(request, result.error))
        else:
            response = redirect(request, "/?notice=code")
        auth.clear_cookie(response, request, rt, auth.MFA_COOKIE)
        return response
    response = redirect(request, "/app")
    auth.clear_cookie(response, request, rt, auth.MFA_COOKIE)
    auth.set_tokens(response, request, rt, result)
    return response


@router.post("/app/signout")
async def signout(request: Request) -> Response:
    """End the session (the idle timer posts here too, possibly after the session ended)."""
    rt = runtime(request)
    ws = await run_in_threadpool(auth.current, request)
    expired = request.query_params.get("reason") == "idle"
    if ws is not None:
        request.state.web_session = ws
        await _form(request)
        await run_in_threadpool(_in_transaction, request, lambda conn: sessions.logout(
            conn=conn, tenant=rt.settings.tenant, actor=ws.actor, ctx=auth.context(request)))
    response = RedirectResponse("/?notice=" + ("expired" if expired else "signed-out"),
                                status_code=303)
    for name in auth.ALL_COOKIES:
        auth.clear_cookie(response, request, rt, name)
    return response


# -- first sign-in: activation ------------------------------------------------------------------
@router.get("/activation")
def activation_page(request: Request) -> Response:
    return render(request, "activation.html", error=None)


def _qr_svg(uri: str) -> str:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False,
                                    svgns=True, title=None, desc=None, dark="#000",
                                    light="#fff", nl=False)
    return out.getvalue().decode()


@router.post("/activation")
async def activation(request: Request, form: PublicForm) -> Response:
    rt = runtime(request)
    code_value = field(form, "activation_code", 128)
    password, again = field(form, "password", 4096), field(form, "password_again", 4096)
    if not code_value or not password:
        return render(request, "activation.html", 400, error=translate(
            request, N_("Saisissez le code d'activation et un mot de passe.")))
    if password != again:
        return render(request, "activation.html", 400, error=translate(
            request, N_("Les deux mots de passe ne sont pas identiques.")))
    result = await run_in_threadpool(_in_transaction, request, lambda conn:
                                     accounts.begin_activation(
                                         conn=conn, keys=rt.gate.keys,
                                         activation_code=code_value, password=password,
                                         ctx=auth.context(request)))
    if isinstance(result, Refused):
        return render(request, "activation.html", result.error.status,
                      error=_activation_error(request, result.error))
    response = render(request, "activation_totp.html", qr_svg=_qr_svg(result.totp_uri),
                      secret=_secret_of(result.totp_uri),
                      recovery_codes=list(result.recovery_codes), error=None)
    auth.set_cookie(response, request, rt, auth.ACTIVATION_COOKIE, code_value, max_age=3600)
    return response


def _secret_of(uri: str) -> str:
    match = re.search(r"[?&]secret=([A-Z2-7]+)", uri)
    text = match.group(1) if match else ""
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def _activation_error(request: Request, error: HygieError) -> str:
    if isinstance(error, WeakPassword):
        return translate(request, N_("Mot de passe refusé : au moins 12 caractères variés, "
                                     "sans votre identifiant, et absent des listes de mots de "
                                     "passe divulgués."))
    return translate(request, N_("Code d'activation invalide, déjà utilisé ou expiré."))


@router.post("/activation/confirm")
async def activation_confirm(request: Request, form: PublicForm) -> Response:
    rt = runtime(request)
    code_value = request.cookies.get(auth.ACTIVATION_COOKIE, "")[:128]
    totp = field(form, "code", 16)
    if not code_value:
        return render(request, "activation.html", 400, error=translate(
            request, N_("L'activation a expiré : recommencez avec votre code d'activation.")))
    result = await run_in_threadpool(_in_transaction, request, lambda conn:
                                     accounts.confirm_activation(
                                         conn=conn, keys=rt.gate.keys,
                                         activation_code=code_value, totp_code=totp,
                                         ctx=auth.context(request)))
    if isinstance(result, Refused):
        return render(request, "activation_totp.html", 400, qr_svg=None, secret=None,
                      recovery_codes=[], error=translate(
                          request, N_("Ce code n'est pas valide : vérifiez l'heure de "
                                      "l'appareil et saisissez le code suivant.")))
    response = redirect(request, "/?notice=activated")
    auth.clear_cookie(response, request, rt, auth.ACTIVATION_COOKIE)
    return response


# -- signed in ----------------------------------------------------------------------------------
@router.get("/app/keepalive")
def keepalive(request: Request, ws: Signed) -> Response:
    """Activity for the idle timeout ("Rester connecté"): the session was just touched."""
    response = Response(status_code=204)
    finish(request, response)
    return response


def _patient_rows(found: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for f in found:
        doc = orjson.loads(f.body or b"{}")
        ins, status = record.ins_of(doc)
        rows.append({"id": f.rid, "name": record.person_name(doc) or "?",
                     "birth_date": str(doc.get("birthDate") or ""), "ins_status": status})
    return rows


def _denied_message(request: Request, role: str | None) -> str:
    if role == "secretary":
        return translate(request, N_("Le secrétariat voit l'identité des patients, pas le "
                                     "contenu clinique de leur dossier."))
    if role == "practitioner":
        return translate(request, N_("Vous n'avez pas de relation de soins avec ce patient, ou "
                                     "il a refusé l'accès à son dossier. Seul un accès "
                                     "d'urgence motivé (bris de glace) peut l'ouvrir."))
    return translate(request, N_("Votre rôle ne donne pas accès aux dossiers des patients "
                                 "(séparation des tâches)."))


@router.get("/app")
def home(request: Request, ws: Signed) -> Response:
    if ws.actor.role == "patient":  # a patient's home is the list of accesses to their record
        return redirect(request, "/app/access-history")
    rt = runtime(request)
    patients: list[dict[str, Any]] = []
    denied = None
    try:
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            found, _ = door.search(SearchQuery(rtype="Patient", count=HOME_LIMIT,
                                               sort_desc=True, total="none"))
        patients = _patient_rows(found)
    except Forbidden:
        denied = _denied_message(request, ws.actor.role)
    return render(request, "home.html", patients=patients, denied=denied, results=None,
                  search={}, error=None)


@router.post("/app/patients/search")
async def search(request: Request, ws: Signed, form: SessionForm) -> Response:
    """Search by name, birth date or INS (POST: these values never appear in a URL)."""
    values = {"name": field(form, "name", 100), "birthdate": field(form, "birthdate", 10),
              "ins": field(form, "ins", 32).replace(" ", "").upper()[:20]}
    fragment = request.headers.get("hx-request") == "true"
    template = "_results.html" if fragment else "home.html"
    extra: dict[str, Any] = {} if fragment else {"patients": [], "denied": None}
    error = _search_error(request, values)
    if error:
        return render(request, template, 400 if not fragment else 200, results=None,
                      search=values, error=error, **extra)
    params = [(k, v) for k, v in (("name", values["name"]), ("birthdate", values["birthdate"]))
              if v]
    if values["ins"]:
        params.append(("identifier", f"{INS_NIR_SYSTEM}|{values['ins']}"))
    rt = runtime(request)

    def work() -> list[dict[str, Any]]:
        q = parse_search("Patient", params, lenient=False, page_default=RESULTS_LIMIT,
                         page_max=RESULTS_LIMIT)
        q.total = "none"
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            found, _ = door.search(q)
        return _patient_rows(found)

    try:
        results = await run_in_threadpool(work)
    except Forbidden:
        return render(request, template, 403 if not fragment else 200, results=None,
                      search=values, error=_denied_message(request, ws.actor.role), **extra)
    except InvalidRequest:
        return render(request, template, 400 if not fragment else 200, results=None,
                      search=values, error=translate(request, N_("Recherche invalide.")),
                      **extra)
    return render(request, template, results=results, search=values, error=None, **extra)


def _search_error(request: Request, values: dict[str, str]) -> str | None:
    if not any(values.values()):
        return translate(request, N_("Indiquez un nom, une date de naissance ou un INS."))
    if values["birthdate"] and not _DATE.fullmatch(values["birthdate"]):
        return translate(request, N_("Date de naissance invalide (format AAAA-MM-JJ)."))
    if values["ins"] and not nir_key_is_valid(values["ins"]):
        return translate(request, N_("INS invalide : 15 caractères dont une clé de contrôle "
                                     "de 2 chiffres."))
    return None


@router.get("/app/patients/{patient_id}")
def patient(request: Request, patient_id: str, ws: Signed) -> Response:
    return _record_page(request, ws, patient_id, start=0, end=record.TIMELINE_PAGE)


@router.post("/app/patients/{patient_id}/timeline")
async def timeline(request: Request, patient_id: str, ws: Signed,
                   form: SessionForm) -> Response:
    """"Voir plus": the next page of the timeline (POST: nothing of it appears in a URL).

    ``shown`` is how many items the page already shows. HTMX gets the next items as a
    fragment (appended to the list); without JavaScript the whole page comes back with the
    longer timeline.
    """
    shown_text = field(form, "shown", 6)
    shown = int(shown_text) if shown_text.isdigit() else 0
    if request.headers.get("hx-request") == "true":
        return await run_in_threadpool(_record_page, request, ws, patient_id, start=shown,
                                       end=shown + record.TIMELINE_PAGE, fragment=True)
    return await run_in_threadpool(_record_page, request, ws, patient_id, start=0,
                                   end=shown + record.TIMELINE_PAGE)


def _record_page(request: Request, ws: auth.WebSession, patient_id: str, *, start: int,
                 end: int, fragment: bool = False) -> Response:
    """The record: one gate access (``$everything`` restricted to the types the page shows,
    the Patient included: one audit entry per view); timeline items ``[start, end)``."""
    rt = runtime(request)
    if not _ID.fullmatch(patient_id):
        return render(request, "denied.html", 404, message=translate(
            request, N_("Ce dossier n'existe pas ou vous n'y avez pas accès.")))
    from hygie.web import clinical  # forms, break-glass, charts, documents (clinical.py)

    ctx = auth.context(request)
    _ = environment_gettext(request)
    try:
        with rt.gate.open(ws.actor, ctx, readonly=True) as door:
            resources, total = door.everything(patient_id, count=rt.settings.page_size_max,
                                               offset=0, types=record.SHOWN_TYPES)
            break_glass = any(e.code == "break-glass" for e in door.entries)
    except Forbidden:
        if ws.actor.role == "practitioner":
            # The policy answers a practitioner alike for a Patient and its compartment
            # (care relationship, consent, break-glass): the break-glass form.
            return clinical.denied(request, ws, patient_id)
        return _identity_only(request, ws, patient_id)
    found_patient = resources[0] if resources and resources[0].rtype == "Patient" else None
    if found_patient is None:
        return clinical.not_found(request)
    rec = record.build(found_patient, resources[1:], _, truncated=total > len(resources),
                       start=start, end=end)
    if fragment:
        return render(request, "_timeline.html", record=rec, patient_id=patient_id,
                      more_oob=True)
    return render(request, "patient.html", identity=rec.identity, record=rec,
                  clinical_denied=None, patient_id=patient_id,
                  clinical=clinical.record_extras(request, ws, patient_id, resources,
                                                  by_break_glass=break_glass))


def _identity_only(request: Request, ws: auth.WebSession, patient_id: str) -> Response:
    """Not the clinical record: the identity if the role may read it (front desk)."""
    from hygie.web import clinical

    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            found_patient = door.read("Patient", patient_id)
    except Forbidden:
        return clinical.denied(request, ws, patient_id)
    ident = record.identity(patient_id, orjson.loads(found_patient.body or b"{}"),
                            environment_gettext(request))
    return render(request, "patient.html", identity=ident, record=None, patient_id=patient_id,
                  clinical_denied=_denied_message(request, ws.actor.role),
                  clinical=clinical.record_extras(request, ws, patient_id, None))


def environment_gettext(request: Request) -> Any:
    """The request's gettext (its language chosen once: the record calls it per item)."""
    return i18n.translations(i18n.choose(request)[0]).gettext


# -- CSP reports --------------------------------------------------------------------------------
REPORTS = CspReports()


@router.post("/csp-report")
async def csp_report(request: Request) -> Response:
    """Violations reported by browsers (no CSRF token: browsers send these on their own)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > 32768:
            return Response(status_code=413)
    try:
        REPORTS.add(orjson.loads(body))
    except orjson.JSONDecodeError:
        return Response(status_code=400)
    return Response(status_code=204)
