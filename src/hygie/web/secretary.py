"""The secretary's pages: patients' administrative identity, and the appointments calendar.

- ``/app/identities``: the practice's patients (search by name, birth date or INS, POST as on
  the home page); ``/app/identities/{id}``: edit the administrative fields (telephone, e-mail,
  postal address). Identity traits checked under the INS rules (names, birth date, INS) and
  every clinical resource stay out of reach: the form touches nothing else, and the policy
  (``access/policy.py``) refuses a secretary any clinical resource whatever the page.
- ``/app/calendar?week=YYYY-MM-DD``: a week of FHIR ``Appointment`` resources (Monday to
  Sunday, times in Europe/Paris), read through the gate; HTMX swaps the week when moving
  between weeks (the page also works without JavaScript). ``/app/calendar/new?patient=ID``:
  book an appointment for a patient with a practitioner (the practice's practitioner
  accounts); ``POST /app/calendar/{id}/cancel``: cancel it (status ``cancelled``).

Everything goes through ``rt.gate.open(...)``: the policy decides and the ledger records.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hygie.access import accounts
from hygie.api.deps import runtime
from hygie.errors import Forbidden, HygieError, InvalidRequest, NotFound
from hygie.fhir.identifiers import INS_NIR_SYSTEM
from hygie.fhir.search import SearchQuery, parse_search
from hygie.store.db import transaction
from hygie.web import auth, i18n, record
from hygie.web.account import PARIS
from hygie.web.pages import (
    _ID,
    HOME_LIMIT,
    N_,
    SessionForm,
    Signed,
    _denied_message,
    _patient_rows,
    _search_error,
    field,
    redirect,
)
from hygie.web.templating import render, translate

router = APIRouter(include_in_schema=False)
WEEK_MAX = 500  # appointments shown in one week
DURATIONS = (15, 20, 30, 45, 60, 90)
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
PHONE = re.compile(r"[0-9+ .()-]{4,30}")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")
POSTCODE = re.compile(r"[0-9A-Za-z -]{2,10}")
DAY_NAMES = (N_("Lundi"), N_("Mardi"), N_("Mercredi"), N_("Jeudi"), N_("Vendredi"),
             N_("Samedi"), N_("Dimanche"))


def _denied(request: Request, ws: Any, status: int = 403) -> Response:
    return render(request, "denied.html", status, message=_denied_message(request,
                                                                          ws.actor.role))


# -- identities -------------------------------------------------------------------------------
@router.get("/app/identities")
def identities(request: Request, ws: Signed) -> Response:
    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            found, _ = door.search(SearchQuery(rtype="Patient", count=HOME_LIMIT,
                                               sort_desc=True, total="none"))
    except Forbidden:
        return _denied(request, ws)
    return render(request, "identities.html", patients=_patient_rows(found), results=None,
                  search={}, error=None)


@router.post("/app/identities/search")
def identities_search(request: Request, ws: Signed, form: SessionForm) -> Response:
    """Search by name, birth date or INS (POST: these values never appear in a URL)."""
    values = {"name": field(form, "name", 100), "birthdate": field(form, "birthdate", 10),
              "ins": field(form, "ins", 32).replace(" ", "").upper()[:20]}
    fragment = request.headers.get("hx-request") == "true"
    template = "_identity_results.html" if fragment else "identities.html"
    extra: dict[str, Any] = {} if fragment else {"patients": []}
    error = _search_error(request, values)
    if error:
        return render(request, template, 200 if fragment else 400, results=None,
                      search=values, error=error, **extra)
    params = [(k, v) for k, v in (("name", values["name"]), ("birthdate", values["birthdate"]))
              if v]
    if values["ins"]:
        params.append(("identifier", f"{INS_NIR_SYSTEM}|{values['ins']}"))
    rt = runtime(request)
    try:
        q = parse_search("Patient", params, lenient=False, page_default=20, page_max=20)
        q.total = "none"
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            found, _ = door.search(q)
    except Forbidden:
        return _denied(request, ws)
    except InvalidRequest:
        return render(request, template, 200 if fragment else 400, results=None,
                      search=values, error=translate(request, N_("Recherche invalide.")),
                      **extra)
    return render(request, template, results=_patient_rows(found), search=values, error=None,
                  **extra)


def _contact(doc: dict[str, Any]) -> dict[str, str]:
    telecom = [t for t in doc.get("telecom") or [] if isinstance(t, dict)]
    phone = next((t.get("value", "") for t in telecom if t.get("system") == "phone"), "")
    email = next((t.get("value", "") for t in telecom if t.get("system") == "email"), "")
    addr = next((a for a in doc.get("address") or [] if isinstance(a, dict)), {})
    return {"phone": str(phone), "email": str(email),
            "line": ", ".join(str(x) for x in addr.get("line") or []),
            "postal_code": str(addr.get("postalCode") or ""), "city": str(addr.get("city") or "")}


def _read_patient(request: Request, ws: Any, patient_id: str) -> Any:
    rt = runtime(request)
    with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
        return door.read("Patient", patient_id)


def _identity_page(request: Request, ws: Any, patient_id: str, status: int = 200,
                   values: dict[str, str] | None = None, error: str | None = None,
                   saved: bool = False) -> Response:
    if not _ID.fullmatch(patient_id):
        return render(request, "denied.html", 404, message=translate(
            request, N_("Ce dossier n'existe pas ou vous n'y avez pas accès.")))
    try:
        found = _read_patient(request, ws, patient_id)
    except (Forbidden, NotFound):
        return _denied(request, ws)
    doc = orjson.loads(found.body or b"{}")
    ident = record.identity(patient_id, doc, lambda m: translate(request, m))
    return render(request, "identity_edit.html", status, identity=ident,
                  contact=values or _contact(doc), version=found.version, error=error,
                  saved=saved)


@router.get("/app/identities/{patient_id}")
def identity_page(request: Request, patient_id: str, ws: Signed) -> Response:
    return _identity_page(request, ws, patient_id,
                          saved=request.query_params.get("notice") == "saved")


def _contact_error(values: dict[str, str]) -> str | None:
    if values["phone"] and not PHONE.fullmatch(values["phone"]):
        return N_("Numéro de téléphone invalide.")
    if values["email"] and not EMAIL.fullmatch(values["email"]):
        return N_("Adresse électronique invalide.")
    if values["postal_code"] and not POSTCODE.fullmatch(values["postal_code"]):
        return N_("Code postal invalide.")
    return None


def _with_contact(doc: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The Patient with new administrative fields; everything else kept as it was."""
    telecom = [t for t in doc.get("telecom") or []
               if not (isinstance(t, dict) and t.get("system") in ("phone", "email"))]
    if values["phone"]:
        telecom.append({"system": "phone", "value": values["phone"]})
    if values["email"]:
        telecom.append({"system": "email", "value": values["email"]})
    out = {k: v for k, v in doc.items() if k not in ("telecom", "meta", "text")}
    if telecom:
        out["telecom"] = telecom
    addresses = [a for a in doc.get("address") or [] if isinstance(a, dict)]
    first = dict(addresses[0]) if addresses else {}
    lines = [x.strip() for x in values["line"].split(",") if x.strip()]
    for key, value in (("line", lines), ("postalCode", values["postal_code"]),
                       ("city", values["city"])):
        if value:
            first[key] = value
        else:
            first.pop(key, None)
    first.pop("text", None)
    rest = addresses[1:]
    new_addresses = ([first] if any(k in first for k in ("line", "postalCode", "city"))
                     else []) + rest
    if new_addresses:
        out["address"] = new_addresses
    else:
        out.pop("address", None)
    return out


@router.post("/app/identities/{patient_id}")
def identity_save(request: Request, patient_id: str, ws: Signed, form: SessionForm) -> Response:
    if not _ID.fullmatch(patient_id):
        return render(request, "denied.html", 404, message=translate(
            request, N_("Ce dossier n'existe pas ou vous n'y avez pas accès.")))
    values = {"phone": field(form, "phone", 30), "email": field(form, "email", 254),
              "line": field(form, "line", 200), "postal_code": field(form, "postal_code", 10),
              "city": field(form, "city", 100)}
    version = field(form, "version", 12)
    error = _contact_error(values)
    if error or not version.isdigit():
        return _identity_page(request, ws, patient_id, 400, values,
                              translate(request, error or N_("Requête invalide.")))
    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request)) as door:
            found = door.read("Patient", patient_id)
            doc = orjson.loads(found.body or b"{}")
            door.update("Patient", patient_id, _with_contact(doc, values),
                        if_match=int(version))
    except (Forbidden, NotFound):
        return _denied(request, ws)
    except HygieError as exc:
        message = (N_("Cette fiche a été modifiée entre-temps : vérifiez-la puis "
                      "recommencez.") if exc.code == "version-conflict" else
                   N_("Ces données n'ont pas pu être enregistrées."))
        return _identity_page(request, ws, patient_id, 409 if exc.status == 409 else 400,
                              values, translate(request, message))
    return redirect(request, f"/app/identities/{patient_id}?notice=saved")


# -- calendar ---------------------------------------------------------------------------------
def _monday(text: str | None) -> date:
    today = datetime.now(PARIS).date()
    day = today
    if text and _DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            day = today
    return day - timedelta(days=day.weekday())


def _local_iso(day: date, hh: int = 0, mm: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=PARIS).isoformat()


def _practitioners(request: Request) -> dict[str, str]:
    """Practitioner resource id -> username, of the practice's active practitioner accounts."""
    rt = runtime(request)
    with transaction(rt.engine, readonly=True) as conn:
        users = accounts.list_users(conn=conn, tenant=rt.settings.tenant)
    return {u.practitioner_id: u.username for u in users
            if u.role == "practitioner" and u.status == "active" and u.practitioner_id}


def _ref_id(doc: dict[str, Any], rtype: str) -> tuple[str, str]:
    for p in doc.get("participant") or []:
        actor = p.get("actor") if isinstance(p, dict) else None
        ref = actor.get("reference", "") if isinstance(actor, dict) else ""
        if isinstance(ref, str) and ref.startswith(rtype + "/"):
            return ref.split("/", 1)[1], str(actor.get("display") or "")
    return "", ""


def _parse_local(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)).astimezone(PARIS)
    except (TypeError, ValueError):
        return None


def _week(request: Request, ws: Any, monday: date) -> dict[str, Any]:
    """The week's appointments, every display string computed here once (the template only
    loops): two searches through the gate, the week's Appointments (one ``date=ge…&date=lt…``
    range, read through ``search_date``'s ``hi`` index) and their patients' names (one
    ``Patient?_id=…``)."""
    rt = runtime(request)
    lang, _remember = i18n.choose(request)

    def tr(message: str) -> str:
        return i18n.gettext_for(lang, message)

    end = monday + timedelta(days=7)
    q = parse_search("Appointment", [("date", "ge" + _local_iso(monday)),
                                     ("date", "lt" + _local_iso(end))],
                     lenient=False, page_default=WEEK_MAX, page_max=WEEK_MAX)
    q.total = "none"
    with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
        found, _ = door.search(q)
        docs = [(f.rid, orjson.loads(f.body or b"{}")) for f in found]
        refs = [(rid, doc, _ref_id(doc, "Patient")[0], _ref_id(doc, "Practitioner")[1])
                for rid, doc in docs]
        patient_ids = sorted({pid for _, _, pid, _ in refs if pid})
        names: dict[str, str] = {}
        if patient_ids:
            pq = parse_search("Patient", [("_id", ",".join(patient_ids))], lenient=False,
                              page_default=len(patient_ids), page_max=WEEK_MAX)
            pq.total = "none"
            patients, _ = door.search(pq)
            names = {p.rid: record.person_name(orjson.loads(p.body or b"{}")) for p in patients}
    restricted = tr(N_("Patient (accès restreint)"))
    per_day: list[list[tuple[datetime, dict[str, Any]]]] = [[] for _ in range(7)]
    for rid, doc, pid, practitioner in refs:
        start = _parse_local(doc.get("start"))
        if start is None:
            continue
        index = (start.date() - monday).days
        if not 0 <= index < 7:
            continue
        stop = _parse_local(doc["end"]) if doc.get("end") else None
        time = start.strftime("%H:%M")
        patient = names.get(pid, restricted)
        per_day[index].append((start, {
            "id": rid, "when": f"{time}–{stop.strftime('%H:%M')}" if stop else time,
            "patient": patient, "practitioner": practitioner,
            "hint": f" — {time}, {patient}",
            "cancelled": doc.get("status") in ("cancelled", "noshow", "entered-in-error")}))
    days: list[dict[str, Any]] = []
    for i, items in enumerate(per_day):
        day = monday + timedelta(days=i)
        items.sort(key=lambda it: it[0])
        days.append({"name": tr(DAY_NAMES[i]), "date": day.isoformat(),
                     "label": day.strftime("%d/%m"), "appointments": [a for _, a in items]})
    return {"days": days, "monday": monday.isoformat(),
            "previous": (monday - timedelta(days=7)).isoformat(),
            "next": (monday + timedelta(days=7)).isoformat(),
            "range": f"{monday.strftime('%d/%m/%Y')} – "
                     f"{(monday + timedelta(days=6)).strftime('%d/%m/%Y')}",
            "labels": {"with": tr(N_("avec")), "cancelled": tr(N_("Annulé")),
                       "cancel": tr(N_("Annuler")), "none": tr(N_("Aucun rendez-vous"))}}


@router.get("/app/calendar")
def calendar(request: Request, ws: Signed) -> Response:
    monday = _monday(request.query_params.get("week"))
    try:
        week = _week(request, ws, monday)
    except Forbidden:
        return _denied(request, ws)
    notice = {"booked": N_("Le rendez-vous est enregistré."),
              "cancelled": N_("Le rendez-vous est annulé.")}.get(
        request.query_params.get("notice", ""))
    if request.headers.get("hx-request") == "true":
        return render(request, "_week.html", **week)
    return render(request, "calendar.html", notice=translate(request, notice) if notice
                  else None, **week)


def _booking_page(request: Request, ws: Any, patient_id: str, status: int = 200,
                  values: dict[str, str] | None = None, error: str | None = None) -> Response:
    if not _ID.fullmatch(patient_id):
        return render(request, "denied.html", 404, message=translate(
            request, N_("Ce dossier n'existe pas ou vous n'y avez pas accès.")))
    try:
        found = _read_patient(request, ws, patient_id)
    except (Forbidden, NotFound):
        return _denied(request, ws)
    doc = orjson.loads(found.body or b"{}")
    default = {"practitioner": "", "day": datetime.now(PARIS).date().isoformat(),
               "time": "09:00", "duration": "30"}
    return render(request, "appointment_new.html", status, patient_id=patient_id,
                  patient_name=record.person_name(doc) or "?",
                  practitioners=sorted(_practitioners(request).items(), key=lambda kv: kv[1]),
                  durations=DURATIONS, form=values or default, error=error)


@router.get("/app/calendar/new")
def booking_page(request: Request, ws: Signed) -> Response:
    return _booking_page(request, ws, request.query_params.get("patient", "")[:64])


@router.post("/app/calendar")
def book(request: Request, ws: Signed, form: SessionForm) -> Response:
    patient_id = field(form, "patient", 64)
    values = {"practitioner": field(form, "practitioner", 64), "day": field(form, "day", 10),
              "time": field(form, "time", 5), "duration": field(form, "duration", 3)}
    practitioners = _practitioners(request)
    when: datetime | None = None
    if _DAY.fullmatch(values["day"]) and _TIME.fullmatch(values["time"]):
        try:
            d = date.fromisoformat(values["day"])
            hh, mm = (int(x) for x in values["time"].split(":"))
            when = datetime(d.year, d.month, d.day, hh, mm, tzinfo=PARIS)
        except ValueError:
            when = None
    minutes = int(values["duration"]) if values["duration"].isdigit() else 0
    if when is None or minutes not in DURATIONS or values["practitioner"] not in practitioners:
        return _booking_page(request, ws, patient_id, 400, values, translate(
            request, N_("Choisissez un praticien, une date, une heure et une durée.")))
    if not _ID.fullmatch(patient_id):
        return _denied(request, ws, 404)
    start = when.astimezone(UTC)
    end = start + timedelta(minutes=minutes)
    body = {
        "resourceType": "Appointment", "status": "booked",
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "minutesDuration": minutes,
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{values['practitioner']}",
                       "display": practitioners[values["practitioner"]]},
             "status": "accepted"}]}
    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request)) as door:
            door.read("Patient", patient_id)  # it exists and this person may see it
            door.create("Appointment", body)
    except (Forbidden, NotFound):
        return _denied(request, ws)
    except HygieError:
        return _booking_page(request, ws, patient_id, 400, values, translate(
            request, N_("Ce rendez-vous n'a pas pu être enregistré.")))
    monday = when.date() - timedelta(days=when.weekday())
    return redirect(request, f"/app/calendar?week={monday.isoformat()}&notice=booked")


@router.post("/app/calendar/{appointment_id}/cancel")
def cancel(request: Request, appointment_id: str, ws: Signed, form: SessionForm) -> Response:
    if not _ID.fullmatch(appointment_id):
        return _denied(request, ws, 404)
    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request)) as door:
            found = door.read("Appointment", appointment_id)
            doc = orjson.loads(found.body or b"{}")
            doc = {k: v for k, v in doc.items() if k not in ("meta", "text")}
            doc["status"] = "cancelled"
            door.update("Appointment", appointment_id, doc, if_match=found.version)
    except (Forbidden, NotFound):
        return _denied(request, ws)
    start = str(doc.get("start") or "")
    try:
        day = datetime.fromisoformat(start).astimezone(PARIS).date()
    except ValueError:
        day = datetime.now(PARIS).date()
    monday = day - timedelta(days=day.weekday())
    return redirect(request, f"/app/calendar?week={monday.isoformat()}&notice=cancelled")
