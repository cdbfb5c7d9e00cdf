"""What the pages show of FHIR resources: small, display-only summaries (no business rule).

Everything here works on resources that already passed the gate. Labels go through the
caller's ``_`` (gettext) so they follow the page's language.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hygie.fhir.identifiers import INS_NIA_SYSTEM, INS_NIR_SYSTEM, nir_key_is_valid
from hygie.gate import Found

Tr = Callable[[str], str]
RELIABILITY_EXT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
NOTE_CHARS = 4000
TIMELINE_PAGE = 30  # timeline items per page ("Voir plus" loads the next ones)
# The resource types the record page shows: the gate reads only these (``$everything`` with a
# type filter), never the rest of the compartment (Claim, ExplanationOfBenefit, Immunization,
# Procedure, ...: about 60 % of a Synthea record's bytes).
SHOWN_TYPES = ("Patient", "AllergyIntolerance", "Condition", "DiagnosticReport",
               "DocumentReference", "Encounter", "MedicationRequest", "MedicationStatement",
               "Observation")


@dataclass
class Identity:
    id: str
    name: str
    birth_date: str
    gender: str
    ins: str | None
    ins_status: str  # "qualified" | "provisional"
    city: str


@dataclass
class Item:
    date: str  # ISO, for sorting
    kind: str  # encounter, note, observation, condition, allergy, medication, document
    title: str
    detail: str = ""
    text: str = ""  # a note's text (shown folded)


@dataclass
class Record:
    identity: Identity
    timeline: list[Item] = field(default_factory=list)  # one page, from timeline_start
    timeline_total: int = 0
    timeline_start: int = 0
    page_size: int = TIMELINE_PAGE
    conditions: list[Item] = field(default_factory=list)
    allergies: list[Item] = field(default_factory=list)
    medications: list[Item] = field(default_factory=list)
    truncated: bool = False


def _text(concept: Any) -> str:
    if isinstance(concept, list):
        concept = concept[0] if concept else None
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def person_name(doc: dict[str, Any]) -> str:
    names = [n for n in doc.get("name") or [] if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")
    for n in names:
        if n.get("text"):
            return str(n["text"])
        given = " ".join(str(g) for g in n.get("given") or [])
        family = str(n.get("family") or "").upper()
        text = f"{given} {family}".strip()
        if text:
            return text
    return ""


def ins_of(doc: dict[str, Any]) -> tuple[str | None, str]:
    """(INS value, "qualified" | "provisional").

    The INS is qualified when an INS-NIR/INS-NIA identifier passes its key check
    (``fhir.identifiers``) and the FR Core identity-reliability extension, when present, does
    not say otherwise (``PROV``/``RECUP``/``VALI`` mean the identity was not qualified).
    """
    value = None
    for ident in doc.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") in (INS_NIR_SYSTEM, INS_NIA_SYSTEM):
            value = str(ident.get("value") or "")
            break
    if not value or not nir_key_is_valid(value):
        return value, "provisional"
    for ext in doc.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == RELIABILITY_EXT:
            codes = [e.get("valueCoding", {}).get("code") for e in ext.get("extension") or []
                     if isinstance(e, dict)] + [ext.get("valueCoding", {}).get("code")]
            if "QUAL" not in codes:
                return value, "provisional"
    return value, "qualified"


def identity(rid: str, doc: dict[str, Any], _: Tr) -> Identity:
    genders = {"female": _("Femme"), "male": _("Homme"), "other": _("Autre"),
               "unknown": _("Inconnu")}
    ins, status = ins_of(doc)
    city = ""
    for addr in doc.get("address") or []:
        if isinstance(addr, dict) and addr.get("city"):
            city = str(addr["city"])
            break
    return Identity(rid, person_name(doc) or _("(sans nom)"), str(doc.get("birthDate") or ""),
                    genders.get(str(doc.get("gender")), _("Non renseigné")), ins, status, city)


def _code(concept: Any) -> str:
    for coding in (concept or {}).get("coding") or [] if isinstance(concept, dict) else []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return _text(concept)


def _quantity(obs: dict[str, Any]) -> str:
    if isinstance(obs.get("valueQuantity"), dict):
        q = obs["valueQuantity"]
        value = q.get("value")
        if isinstance(value, float):
            value = round(value, 2)
        return f"{value} {q.get('unit') or q.get('code') or ''}".strip()
    if "valueCodeableConcept" in obs:
        return _text(obs["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in obs:
            return str(obs[key])
    parts = [f"{_text(c.get('code'))} {_quantity(c)}".strip()
             for c in obs.get("component") or [] if isinstance(c, dict)]
    return " · ".join(p for p in parts if p)


def _note_text(doc: dict[str, Any]) -> str:
    for content in doc.get("content") or []:
        att = (content or {}).get("attachment") or {}
        if str(att.get("contentType", "")).startswith("text/plain") and att.get("data"):
            try:
                return base64.b64decode(att["data"]).decode("utf-8", "replace")[:NOTE_CHARS]
            except (binascii.Error, ValueError):
                return ""
    return ""


def _date(doc: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        if isinstance(value, str) and value:
            return value
    return ""


def status_label(code: str, _: Tr) -> str:
    """French (or English) label of a FHIR status code; unknown codes are shown as they are."""
    label = _STATUS_LABELS.get(code)
    return _(label) if label else code


def N_(message: str) -> str:  # noqa: N802 - gettext's marker name (extracted by pybabel)
    return message


_STATUS_LABELS = {
    "active": N_("actif"), "inactive": N_("inactif"), "resolved": N_("résolu"),
    "remission": N_("en rémission"), "recurrence": N_("récidive"), "relapse": N_("rechute"),
    "stopped": N_("arrêté"), "completed": N_("terminé"), "on-hold": N_("suspendu"),
    "cancelled": N_("annulé"), "entered-in-error": N_("saisi par erreur"),
    "high": N_("criticité élevée"), "low": N_("criticité faible"),
    "unable-to-assess": N_("criticité inconnue")}


def item(found: Found, _: Tr) -> Item | None:
    """A timeline entry for a resource, or None for the kinds the record does not show."""
    if found.body is None:
        return None
    doc = orjson.loads(found.body)
    t = found.rtype
    if t == "Encounter":
        title = _text(doc.get("type")) or _text(doc.get("serviceType")) or _("Consultation")
        reason = _text(doc.get("reasonCode"))
        return Item(_date(doc, "period"), "encounter", title, reason)
    if t == "DocumentReference":
        text = _note_text(doc)
        title = _text(doc.get("type")) or str(doc.get("description") or "") or _("Document")
        return Item(_date(doc, "date"), "note" if text else "document", title,
                    str(doc.get("description") or ""), text)
    if t == "Observation":
        return Item(_date(doc, "effectiveDateTime", "effectivePeriod", "issued"),
                    "observation", _text(doc.get("code")) or _("Observation"), _quantity(doc))
    if t == "Condition":
        return Item(_date(doc, "onsetDateTime", "recordedDate", "onsetPeriod"), "condition",
                    _text(doc.get("code")) or _("Problème"),
                    status_label(_code(doc.get("clinicalStatus")), _))
    if t == "AllergyIntolerance":
        return Item(_date(doc, "recordedDate", "onsetDateTime"), "allergy",
                    _text(doc.get("code")) or _("Allergie"),
                    status_label(str(doc.get("criticality") or ""), _))
    if t in ("MedicationRequest", "MedicationStatement"):
        return Item(_date(doc, "authoredOn", "effectiveDateTime", "effectivePeriod"),
                    "medication", _text(doc.get("medicationCodeableConcept"))
                    or _("Médicament"), status_label(str(doc.get("status") or ""), _))
    if t == "DiagnosticReport" and doc.get("presentedForm"):
        return Item(_date(doc, "effectiveDateTime", "issued"), "document",
                    _text(doc.get("code")) or _("Compte rendu"))
    return None


def build(patient: Found, resources: list[Found], _: Tr, *, truncated: bool, start: int = 0,
          end: int = TIMELINE_PAGE) -> Record:
    """The summary lists (allergies, problems, treatments) and the timeline items
    ``[start, end)``, newest first (only those are rendered)."""
    doc = orjson.loads(patient.body or b"{}")
    record = Record(identity(patient.rid, doc, _), truncated=truncated)
    timeline: list[Item] = []
    for found in resources:
        if found.rtype == "Patient":
            continue
        it = item(found, _)
        if it is None:
            continue
        if it.kind == "condition":
            record.conditions.append(it)
        elif it.kind == "allergy":
            record.allergies.append(it)
        elif it.kind == "medication":
            record.medications.append(it)
        else:
            timeline.append(it)
    for items in (record.conditions, record.allergies, record.medications, timeline):
        items.sort(key=lambda i: i.date, reverse=True)
    record.timeline_total = len(timeline)
    record.timeline_start = max(0, min(start, len(timeline)))
    record.timeline = timeline[record.timeline_start:max(record.timeline_start, end)]
    return record


def display_date(value: str, lang: str) -> str:
    """``2021-03-04...`` as 04/03/2021 (French) or 2021-03-04 (English)."""
    day = value[:10]
    if len(day) == 10 and lang == "fr":
        return f"{day[8:10]}/{day[5:7]}/{day[0:4]}"
    return day
