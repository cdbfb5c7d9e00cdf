"""Clinical forms of the web app: a patient's identity (create, edit), consultation notes, vital
signs, and break-glass (emergency access). Documents are in ``web/documents.py``, the vitals
chart in ``web/charts.py``.

Adapters only, like ``pages.py``: parse the form, check it (French messages next to the
fields), build the FHIR resource, write it through ``rt.gate.open(...)`` (policy decision +
audit entry), redirect to the record. Every POST takes :data:`pages.SessionForm` (CSRF).
A practitioner without a care relationship gets the break-glass form instead of the page.

The resources written are the ones the API and the record page already use:

- identity: ``Patient`` (official name, birth date, sex, INS-NIR identifier checked with
  ``fhir.identifiers``, home address, phone);
- consultation note: ``DocumentReference`` (LOINC 11506-3 "Progress note") whose attachment is
  the note as ``text/plain`` (what ``record.item`` shows as a note);
- vital signs: one LOINC-coded ``Observation`` per measure (category ``vital-signs``; blood
  pressure as the 85354-9 panel with systolic/diastolic components), in UCUM units.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Request
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from hygie.access.actor import RequestContext
from hygie.api.deps import runtime
from hygie.errors import Forbidden, HygieError, InvalidIdentifier, InvalidRequest
from hygie.fhir.identifiers import INS_NIR_SYSTEM, nir_key_is_valid
from hygie.gate import Found
from hygie.store.db import now_us, transaction
from hygie.store.tables import break_glass
from hygie.web import auth, charts, i18n, record
from hygie.web.pages import N_, SessionForm, Signed, field, redirect
from hygie.web.record import display_date
from hygie.web.templating import render, translate

router = APIRouter(include_in_schema=False)
# The practice's wall clock: measurement times typed in the forms and the end of a break-glass
# grant are read and shown in this time zone (stored as UTC instants).
DISPLAY_TZ = ZoneInfo("Europe/Paris")
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NIR13 = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}")
POSTAL = re.compile(r"[0-9]{5}")
PHONE = re.compile(r"\+?[0-9 .()\-]{6,20}")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = {"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs", "display": "Vital Signs"}]}
NOTE_TYPE = {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}],
             "text": "Note de consultation"}
NOTE_MAX = 20000
GENDERS = ("female", "male", "other", "unknown")
IDENTITY_ROLES = ("practitioner", "secretary")


@dataclass(frozen=True)
class Vital:
    name: str  # form field
    code: str  # LOINC
    display: str
    text: str  # French label stored in code.text
    unit: str  # UCUM
    low: float
    high: float


VITALS = (
    Vital("weight", charts.WEIGHT, "Body weight", "Poids", "kg", 0.2, 500),
    Vital("height", charts.HEIGHT, "Body height", "Taille", "cm", 20, 260),
    Vital("temperature", charts.TEMPERATURE, "Body temperature", "Température", "Cel", 25, 45),
    Vital("heart_rate", charts.HEART_RATE, "Heart rate", "Fréquence cardiaque", "/min", 20, 300),
)
SYSTOLIC = Vital("systolic", charts.SYSTOLIC, "Systolic blood pressure", "Systolique",
                 "mm[Hg]", 40, 300)
DIASTOLIC = Vital("diastolic", charts.DIASTOLIC, "Diastolic blood pressure", "Diastolique",
                  "mm[Hg]", 20, 200)
UNIT_LABELS = {"kg": "kg", "cm": "cm", "Cel": "°C", "/min": "/min", "mm[Hg]": "mmHg"}


# -- shared helpers (documents.py and pages.py use them too) -------------------------------------
def gettext(request: Request) -> Any:
    def _(message: str) -> str:
        return translate(request, message)

    return _


def denied(request: Request, ws: auth.WebSession, patient_id: str) -> Response:
    """A record the person may not open: the break-glass form for a practitioner."""
    from hygie.web.pages import _denied_message

    if ws.actor.role == "practitioner" and ID.fullmatch(patient_id):
        return break_glass_page(request, patient_id, 403, reason="", error=None)
    return render(request, "denied.html", 403, message=_denied_message(request, ws.actor.role))


def not_found(request: Request) -> Response:
    return render(request, "denied.html", 404, message=translate(
        request, N_("Ce dossier n'existe pas ou vous n'y avez pas accès.")))


def read_patient(request: Request, ws: auth.WebSession, patient_id: str) -> Found | Response:
    """The patient (through the gate, audited), or the page to show instead."""
    if not ID.fullmatch(patient_id):
        return not_found(request)
    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            return door.read("Patient", patient_id)
    except Forbidden:
        return denied(request, ws, patient_id)


def patient_name(found: Found, request: Request) -> str:
    return record.person_name(orjson.loads(found.body or b"{}")) or translate(
        request, N_("(sans nom)"))


def now_instant() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def practitioner_ref(ws: auth.WebSession) -> list[dict[str, str]]:
    pid = ws.actor.practitioner_id
    return [{"reference": f"Practitioner/{pid}"}] if pid else []


def break_glass_until(request: Request, ws: auth.WebSession, patient_id: str) -> str | None:
    """The end of this practitioner's live break-glass grant on this patient, for display.

    Reads the grant's ids and times only (the reason stays encrypted), like the gate's facts.
    """
    pract = ws.actor.practitioner_id
    if ws.actor.role != "practitioner" or not pract:
        return None
    rt = runtime(request)
    with transaction(rt.engine, readonly=True) as conn:
        until = conn.execute(select(func.max(break_glass.c.expires_at)).where(
            break_glass.c.tenant == rt.settings.tenant, break_glass.c.practitioner == pract,
            break_glass.c.patient == patient_id, break_glass.c.expires_at > now_us())).scalar()
    if not until:
        return None
    local = datetime.fromtimestamp(until / 1e6, UTC).astimezone(DISPLAY_TZ)
    lang, _remember = i18n.choose(request)
    return translate(request, N_("{day} à {time}")).format(
        day=display_date(local.date().isoformat(), lang), time=local.strftime("%H:%M"))


def record_extras(request: Request, ws: auth.WebSession, patient_id: str,
                  resources: list[Found] | None, *, by_break_glass: bool = True
                  ) -> dict[str, Any]:
    """What the record page shows beyond the foundation's summary: the actions, the
    break-glass banner, the vitals charts and the documents (``None``: no clinical access).

    ``by_break_glass``: whether the gate opened the record by a break-glass grant (its audit
    entry says so); only then is the grant's end looked up for the banner.
    """
    from hygie.web import documents

    role = ws.actor.role
    lang, _remember = i18n.choose(request)
    _ = gettext(request)
    observations = [r for r in resources or () if r.rtype == "Observation"]
    references = [r for r in resources or () if r.rtype == "DocumentReference"]
    return {
        "patient_id": patient_id,
        "can_edit_identity": role in IDENTITY_ROLES,
        "can_write_clinical": role == "practitioner" and resources is not None,
        "break_glass_until": break_glass_until(request, ws, patient_id) if by_break_glass
        else None,
        "charts": charts.build(observations, _, lang) if resources is not None else [],
        "documents": documents.listing(references, _, lang) if resources is not None else [],
    }


# -- patient identity ---------------------------------------------------------------------------
IDENTITY_FIELDS = ("family", "given", "birth_date", "gender", "ins_nir", "ins_key",
                   "address_line", "postal_code", "city", "phone")


def _identity_values(form: FormData) -> dict[str, str]:
    v = {name: field(form, name, 200) for name in IDENTITY_FIELDS}
    v["ins_nir"] = re.sub(r"\s+", "", v["ins_nir"]).upper()[:20]
    v["ins_key"] = re.sub(r"\s+", "", v["ins_key"])[:4]
    if len(v["ins_nir"]) == 15 and not v["ins_key"]:  # the whole INS typed in the first field
        v["ins_nir"], v["ins_key"] = v["ins_nir"][:13], v["ins_nir"][13:]
    return v


def _identity_errors(request: Request, v: dict[str, str]) -> dict[str, str]:
    def t(message: str) -> str:
        return translate(request, message)

    errors: dict[str, str] = {}
    if not v["family"] or len(v["family"]) > 100:
        errors["family"] = t(N_("Indiquez le nom de naissance (100 caractères au plus)."))
    if not v["given"] or len(v["given"]) > 100:
        errors["given"] = t(N_("Indiquez le ou les prénoms (100 caractères au plus)."))
    if not _valid_birth_date(v["birth_date"]):
        errors["birth_date"] = t(N_("Date de naissance invalide : une date passée, au format "
                                    "JJ/MM/AAAA."))
    if v["gender"] not in GENDERS:
        errors["gender"] = t(N_("Choisissez le sexe."))
    if v["ins_nir"] or v["ins_key"]:
        if not NIR13.fullmatch(v["ins_nir"]):
            errors["ins_nir"] = t(N_("Le matricule INS compte 13 caractères : des chiffres, "
                                     "et 2A ou 2B pour un département de Corse."))
        elif not re.fullmatch(r"[0-9]{2}", v["ins_key"]) or not nir_key_is_valid(
                v["ins_nir"] + v["ins_key"]):
            errors["ins_key"] = t(N_("La clé INS ne correspond pas au matricule : vérifiez la "
                                     "saisie (carte Vitale ou attestation de droits)."))
    if v["postal_code"] and not POSTAL.fullmatch(v["postal_code"]):
        errors["postal_code"] = t(N_("Code postal invalide (5 chiffres)."))
    if v["phone"] and (not PHONE.fullmatch(v["phone"])
                       or sum(c.isdigit() for c in v["phone"]) < 6):
        errors["phone"] = t(N_("Numéro de téléphone invalide."))
    for name in ("address_line", "city"):
        if len(v[name]) > 150:
            errors[name] = t(N_("150 caractères au plus."))
    return errors


def _valid_birth_date(value: str) -> bool:
    if not DATE.fullmatch(value):
        return False
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return False
    return datetime(1880, 1, 1).date() <= day <= datetime.now(DISPLAY_TZ).date()


def _identity_of(doc: dict[str, Any]) -> dict[str, str]:
    """The form's values for an existing Patient."""
    names = [n for n in doc.get("name") or [] if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")
    name = names[0] if names else {}
    ins = next((str(i.get("value") or "") for i in doc.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == INS_NIR_SYSTEM), "")
    addr = next((a for a in doc.get("address") or [] if isinstance(a, dict)), {})
    phone = next((str(t.get("value") or "") for t in doc.get("telecom") or []
                  if isinstance(t, dict) and t.get("system") == "phone"), "")
    return {"family": str(name.get("family") or ""),
            "given": " ".join(str(g) for g in name.get("given") or []),
            "birth_date": str(doc.get("birthDate") or ""),
            "gender": str(doc.get("gender") or ""),
            "ins_nir": ins[:13], "ins_key": ins[13:15],
            "address_line": " ".join(str(x) for x in addr.get("line") or []),
            "postal_code": str(addr.get("postalCode") or ""), "city": str(addr.get("city") or ""),
            "phone": phone}


def _patient_body(v: dict[str, str], existing: dict[str, Any] | None) -> dict[str, Any]:
    """The Patient resource: the form's fields replace theirs, everything else is kept."""
    doc: dict[str, Any] = dict(existing) if existing else {"resourceType": "Patient"}
    names = [dict(n) for n in doc.get("name") or [] if isinstance(n, dict)]
    index = next((i for i, n in enumerate(names) if n.get("use") == "official"),
                 0 if names else None)
    official = {**(names[index] if index is not None else {}), "use": "official",
                "family": v["family"], "given": v["given"].split()}
    official.pop("text", None)
    if index is None:
        names.append(official)
    else:
        names[index] = official
    doc["name"] = names
    doc["birthDate"] = v["birth_date"]
    doc["gender"] = v["gender"]
    identifiers = [i for i in doc.get("identifier") or []
                   if not (isinstance(i, dict) and i.get("system") == INS_NIR_SYSTEM)]
    if v["ins_nir"]:
        identifiers.append({"use": "official", "system": INS_NIR_SYSTEM,
                            "value": v["ins_nir"] + v["ins_key"]})
    if identifiers:
        doc["identifier"] = identifiers
    else:
        doc.pop("identifier", None)
    addresses = [a for a in doc.get("address") or [] if isinstance(a, dict)]
    rest = addresses[1:]
    if v["address_line"] or v["postal_code"] or v["city"]:
        home: dict[str, Any] = {"use": "home", "country": "FR"}
        if v["address_line"]:
            home["line"] = [v["address_line"]]
        if v["postal_code"]:
            home["postalCode"] = v["postal_code"]
        if v["city"]:
            home["city"] = v["city"]
        rest = [home, *rest]
    if rest:
        doc["address"] = rest
    else:
        doc.pop("address", None)
    telecom = [t for t in doc.get("telecom") or []
               if not (isinstance(t, dict) and t.get("system") == "phone")]
    if v["phone"]:
        telecom.insert(0, {"system": "phone", "value": v["phone"], "use": "home"})
    if telecom:
        doc["telecom"] = telecom
    else:
        doc.pop("telecom", None)
    meta = {k: m for k, m in (doc.get("meta") or {}).items() if k in ("tag", "security")}
    if meta:
        doc["meta"] = meta
    else:
        doc.pop("meta", None)
    return doc


def _identity_page(request: Request, status: int, *, values: dict[str, str],
                   errors: dict[str, str], patient_id: str | None, version: str = "",
                   error: str | None = None) -> Response:
    return render(request, "patient_form.html", status, values=values, errors=errors,
                  patient_id=patient_id, version=version, error=error,
                  today=datetime.now(DISPLAY_TZ).date().isoformat())


def _identity_roles_only(request: Request, ws: auth.WebSession) -> Response | None:
    if ws.actor.role in IDENTITY_ROLES:
        return None
    from hygie.web.pages import _denied_message

    return render(request, "denied.html", 403, message=_denied_message(request, ws.actor.role))


@router.get("/app/patients/new")
def new_patient_page(request: Request, ws: Signed) -> Response:
    refused = _identity_roles_only(request, ws)
    if refused:
        return refused
    return _identity_page(request, 200, values={}, errors={}, patient_id=None)


@router.post("/app/patients/new")
async def new_patient(request: Request, ws: Signed, form: SessionForm) -> Response:
    refused = _identity_roles_only(request, ws)
    if refused:
        return refused
    values = _identity_values(form)
    errors = _identity_errors(request, values)
    if errors:
        return _identity_page(request, 400, values=values, errors=errors, patient_id=None,
                              error=_fix_fields(request))
    rt = runtime(request)

    def work() -> str:
        with rt.gate.open(ws.actor, auth.context(request)) as door:
            return door.create("Patient", _patient_body(values, None)).rid

    try:
        rid = await run_in_threadpool(work)
    except HygieError as exc:
        return _identity_page(request, _status(exc), values=values, errors={}, patient_id=None,
                              error=_write_error(request, exc))
    return redirect(request, f"/app/patients/{rid}")


@router.get("/app/patients/{patient_id}/edit")
def edit_patient_page(request: Request, patient_id: str, ws: Signed) -> Response:
    refused = _identity_roles_only(request, ws)
    if refused:
        return refused
    found = read_patient(request, ws, patient_id)
    if isinstance(found, Response):
        return found
    return _identity_page(request, 200, values=_identity_of(orjson.loads(found.body or b"{}")),
                          errors={}, patient_id=patient_id, version=str(found.version))


@router.post("/app/patients/{patient_id}/edit")
async def edit_patient(request: Request, patient_id: str, ws: Signed,
                       form: SessionForm) -> Response:
    refused = _identity_roles_only(request, ws)
    if refused:
        return refused
    if not ID.fullmatch(patient_id):
        return not_found(request)
    values = _identity_values(form)
    version = field(form, "version", 12)
    errors = _identity_errors(request, values)
    if errors or not version.isdigit():
        return _identity_page(request, 400, values=values, errors=errors,
                              patient_id=patient_id, version=version,
                              error=_fix_fields(request))
    rt = runtime(request)

    def work() -> None:
        with rt.gate.open(ws.actor, auth.context(request)) as door:
            current = door.read("Patient", patient_id)
            body = _patient_body(values, orjson.loads(current.body or b"{}"))
            door.update("Patient", patient_id, body, if_match=int(version))

    try:
        await run_in_threadpool(work)
    except Forbidden:
        return denied(request, ws, patient_id)
    except HygieError as exc:
        return _identity_page(request, _status(exc), values=values, errors={},
                              patient_id=patient_id, version=version,
                              error=_write_error(request, exc))
    return redirect(request, f"/app/patients/{patient_id}")


def _fix_fields(request: Request) -> str:
    return translate(request, N_("Le formulaire contient des erreurs : corrigez les champs "
                                 "signalés."))


def _status(exc: HygieError) -> int:
    return exc.status if 400 <= exc.status < 500 else 503


def _write_error(request: Request, exc: HygieError) -> str:
    """A French sentence for a refused write (never the exception's English detail)."""
    if exc.code in ("conflict", "version-conflict"):
        return translate(request, N_("Ce dossier a été modifié entre-temps par quelqu'un "
                                     "d'autre : rechargez la page et recommencez."))
    if isinstance(exc, InvalidIdentifier):
        return translate(request, N_("L'INS est invalide : vérifiez le matricule et la clé."))
    if isinstance(exc, Forbidden):
        return translate(request, N_("Vous n'avez pas le droit d'enregistrer ces données."))
    if exc.status < 500:
        return translate(request, N_("Ces données n'ont pas pu être enregistrées : vérifiez "
                                     "la saisie."))
    return translate(request, N_("Le service est momentanément indisponible : réessayez dans "
                                 "un instant."))


# -- consultation note --------------------------------------------------------------------------
def clinical_only(request: Request, ws: auth.WebSession) -> Response | None:
    """Clinical content is written by practitioners only (the policy would refuse others)."""
    if ws.actor.role == "practitioner":
        return None
    from hygie.web.pages import _denied_message

    return render(request, "denied.html", 403, message=_denied_message(request, ws.actor.role))


def _clinical_page(request: Request, ws: auth.WebSession, patient_id: str, template: str,
                   status: int = 200, **values: Any) -> Response:
    """A clinical form, after checking the person may open this record (audited read)."""
    refused = clinical_only(request, ws)
    if refused:
        return refused
    found = read_patient(request, ws, patient_id)
    if isinstance(found, Response):
        return found
    return render(request, template, status, patient_id=patient_id,
                  patient=patient_name(found, request), **values)


def _write(request: Request, ws: auth.WebSession, patient_id: str,
           bodies: list[tuple[str, dict[str, Any]]]) -> None:
    rt = runtime(request)
    with rt.gate.open(ws.actor, auth.context(request)) as door:
        for rtype, body in bodies:
            door.create(rtype, body)


@router.get("/app/patients/{patient_id}/notes/new")
def note_page(request: Request, patient_id: str, ws: Signed) -> Response:
    return _clinical_page(request, ws, patient_id, "note_form.html", values={}, errors={},
                          error=None)


@router.post("/app/patients/{patient_id}/notes/new")
async def add_note(request: Request, patient_id: str, ws: Signed,
                   form: SessionForm) -> Response:
    refused = clinical_only(request, ws)
    if refused:
        return refused
    if not ID.fullmatch(patient_id):
        return not_found(request)
    values = {"reason": field(form, "reason", 300), "text": field(form, "text", NOTE_MAX + 1)}
    errors: dict[str, str] = {}
    if len(values["reason"]) > 200:
        errors["reason"] = translate(request, N_("200 caractères au plus."))
    if not values["text"] or len(values["text"]) > NOTE_MAX:
        errors["text"] = translate(request, N_("Écrivez la note (20 000 caractères au plus)."))
    if errors:
        return _clinical_page(request, ws, patient_id, "note_form.html", 400, values=values,
                              errors=errors, error=_fix_fields(request))
    now = now_instant()
    body: dict[str, Any] = {
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": NOTE_TYPE, "subject": {"reference": f"Patient/{patient_id}"}, "date": now,
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8", "language": "fr", "creation": now,
            "data": base64.b64encode(values["text"].encode()).decode()}}]}
    if values["reason"]:
        body["description"] = values["reason"]
    if ws.actor.practitioner_id:
        body["author"] = practitioner_ref(ws)
    return await _finish_write(request, ws, patient_id, [("DocumentReference", body)],
                               "note_form.html", values=values, errors={})


async def _finish_write(request: Request, ws: auth.WebSession, patient_id: str,
                        bodies: list[tuple[str, dict[str, Any]]], template: str,
                        **values: Any) -> Response:
    try:
        await run_in_threadpool(_write, request, ws, patient_id, bodies)
    except Forbidden:
        return denied(request, ws, patient_id)
    except HygieError as exc:
        return _clinical_page(request, ws, patient_id, template, _status(exc),
                              error=_write_error(request, exc), **values)
    return redirect(request, f"/app/patients/{patient_id}")


# -- vital signs --------------------------------------------------------------------------------
def _number(text: str) -> float | None:
    text = text.replace(",", ".").replace(" ", "")
    if not re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,2})?", text):
        return None
    return float(text)


def _observation(patient_id: str, ws: auth.WebSession, when: str, vital: Vital,
                 value: float | None = None,
                 components: list[tuple[Vital, float]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation", "status": "final", "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": LOINC, "code": vital.code, "display": vital.display}],
                 "text": vital.text},
        "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": when,
        "issued": now_instant()}
    if ws.actor.practitioner_id:
        body["performer"] = practitioner_ref(ws)
    if value is not None:
        body["valueQuantity"] = _quantity(vital, value)
    for part, v in components or []:
        body.setdefault("component", []).append({
            "code": {"coding": [{"system": LOINC, "code": part.code, "display": part.display}],
                     "text": part.text},
            "valueQuantity": _quantity(part, v)})
    return body


def _quantity(vital: Vital, value: float) -> dict[str, Any]:
    return {"value": int(value) if value == int(value) else value,
            "unit": UNIT_LABELS[vital.unit], "system": UCUM, "code": vital.unit}


def _now_local() -> str:
    return datetime.now(DISPLAY_TZ).strftime("%Y-%m-%dT%H:%M")


@router.get("/app/patients/{patient_id}/observations/new")
def observation_page(request: Request, patient_id: str, ws: Signed) -> Response:
    return _clinical_page(request, ws, patient_id, "observation_form.html",
                          values={"effective": _now_local()}, errors={}, error=None,
                          max_when=_now_local())


@router.post("/app/patients/{patient_id}/observations/new")
async def add_observations(request: Request, patient_id: str, ws: Signed,
                           form: SessionForm) -> Response:
    refused = clinical_only(request, ws)
    if refused:
        return refused
    if not ID.fullmatch(patient_id):
        return not_found(request)
    names = [v.name for v in VITALS] + ["systolic", "diastolic"]
    values = {name: field(form, name, 12) for name in names}
    values["effective"] = field(form, "effective", 20)
    errors: dict[str, str] = {}
    numbers: dict[str, float] = {}
    for vital in (*VITALS, SYSTOLIC, DIASTOLIC):
        text = values[vital.name]
        if not text:
            continue
        n = _number(text)
        if n is None or not vital.low <= n <= vital.high:
            errors[vital.name] = translate(request, N_(
                "Valeur invalide : un nombre entre {low} et {high}.")).format(
                    low=charts.number(vital.low, "fr"), high=charts.number(vital.high, "fr"))
        else:
            numbers[vital.name] = n
    pair = ("systolic" in numbers, "diastolic" in numbers)
    if pair in ((True, False), (False, True)):
        missing = "diastolic" if pair[0] else "systolic"
        errors.setdefault(missing, translate(
            request, N_("Saisissez la pression systolique et la diastolique.")))
    elif all(pair) and numbers["systolic"] <= numbers["diastolic"]:
        errors["diastolic"] = translate(request, N_("La diastolique doit être inférieure à la "
                                                    "systolique."))
    when = _effective(values["effective"])
    if when is None:
        errors["effective"] = translate(request, N_("Date et heure invalides (pas dans le "
                                                    "futur)."))
    if not numbers and not errors:
        errors["weight"] = translate(request, N_("Saisissez au moins une mesure."))
    extra = {"max_when": _now_local()}
    if errors or when is None:
        return _clinical_page(request, ws, patient_id, "observation_form.html", 400,
                              values=values, errors=errors, error=_fix_fields(request), **extra)
    bodies = [("Observation", _observation(patient_id, ws, when, vital, numbers[vital.name]))
              for vital in VITALS if vital.name in numbers]
    if "systolic" in numbers:
        panel = Vital("bp", charts.BP_PANEL, "Blood pressure panel with all children optional",
                      "Pression artérielle", "mm[Hg]", 0, 0)
        bodies.append(("Observation", _observation(
            patient_id, ws, when, panel, components=[(SYSTOLIC, numbers["systolic"]),
                                                     (DIASTOLIC, numbers["diastolic"])])))
    return await _finish_write(request, ws, patient_id, bodies, "observation_form.html",
                               values=values, errors={}, **extra)


def _effective(text: str) -> str | None:
    """A ``datetime-local`` value (the practice's time zone) as a FHIR instant in UTC."""
    try:
        local = datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=DISPLAY_TZ)
    except ValueError:
        return None
    moment = local.astimezone(UTC)
    if moment > datetime.now(UTC) + timedelta(minutes=5) or moment.year < 1900:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- break-glass ------------------------------------------------------------------------------
def break_glass_page(request: Request, patient_id: str, status: int, *, reason: str,
                     error: str | None) -> Response:
    rt = runtime(request)
    hours = charts.number(rt.settings.break_glass_seconds / 3600, "fr")
    return render(request, "break_glass.html", status, patient_id=patient_id, reason=reason,
                  error=error, hours=hours)


@router.post("/app/patients/{patient_id}/break-glass")
async def open_break_glass(request: Request, patient_id: str, ws: Signed,
                           form: SessionForm) -> Response:
    """Emergency access: the stated reason opens the record for the configured time."""
    if ws.actor.role != "practitioner":
        return denied(request, ws, patient_id)
    if not ID.fullmatch(patient_id):
        return not_found(request)
    reason = field(form, "reason", 600)
    if not 5 <= len(reason) <= 500:
        return break_glass_page(request, patient_id, 400, reason=reason, error=translate(
            request, N_("Le motif est obligatoire : de 5 à 500 caractères.")))
    rt = runtime(request)
    base = auth.context(request)
    ctx = RequestContext(request_id=base.request_id, client_address=base.client_address,
                         extra={"break_glass": reason})

    def work() -> None:
        with rt.gate.open(ws.actor, ctx, readonly=True) as door:
            door.read("Patient", patient_id)

    try:
        await run_in_threadpool(work)
    except InvalidRequest:
        return break_glass_page(request, patient_id, 400, reason=reason, error=translate(
            request, N_("Le motif est obligatoire : de 5 à 500 caractères.")))
    except Forbidden:
        return render(request, "denied.html", 403, message=translate(
            request, N_("Ce dossier n'existe pas ou ne peut pas être ouvert.")))
    return redirect(request, f"/app/patients/{patient_id}")
