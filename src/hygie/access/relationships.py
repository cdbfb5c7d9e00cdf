"""Care relationships and consent rules, derived from the FHIR resources that state them.

- CareTeam (status proposed/active/suspended): every Practitioner in ``participant.member``
  is in the care team of ``subject`` → kind ``careteam``.
- ServiceRequest (a referral: status draft/active/on-hold/completed): every Practitioner in
  ``performer`` → kind ``referral``.
- Consent (status active) with ``provision.type = permit`` and Practitioner actors: the patient
  shares the record with them → kind ``share``; with ``provision.type = deny``: the named
  Practitioners are refused, or, when no actor is named, everyone but the care team.
- A practitioner who creates a Patient → kind ``creator`` (added by the gate).

They are kept in plain tables of ids (no content), rewritten whenever the stating resource is
written or deleted, so revoking a share or a care relationship takes effect at the next request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from hygie.fhir.searchparams import parse_reference
from hygie.store.db import now_us
from hygie.store.tables import care_relationship, consent_rule

SOURCES = frozenset({"CareTeam", "ServiceRequest", "Consent"})
_CARETEAM_LIVE = {"proposed", "active", "suspended", None}
_REFERRAL_LIVE = {"draft", "active", "on-hold", "completed"}


def _ref_id(ref: Any, rtype: str) -> str | None:
    if not isinstance(ref, dict):
        return None
    parsed = parse_reference(str(ref.get("reference") or ""))
    if parsed and parsed.startswith(rtype + "/"):
        return parsed.split("/", 1)[1]
    return None


def derive(rtype: str, body: dict[str, Any]) -> tuple[list[tuple[str, str, str]],
                                                       list[tuple[str, str]]]:
    """(relationships [(practitioner, patient, kind)], consent rules [(patient, actor)])."""
    rels: list[tuple[str, str, str]] = []
    rules: list[tuple[str, str]] = []
    if rtype == "CareTeam":
        patient = _ref_id(body.get("subject"), "Patient")
        if patient and body.get("status") in _CARETEAM_LIVE:
            for part in body.get("participant") or []:
                pract = _ref_id((part or {}).get("member"), "Practitioner")
                if pract:
                    rels.append((pract, patient, "careteam"))
    elif rtype == "ServiceRequest":
        patient = _ref_id(body.get("subject"), "Patient")
        if patient and body.get("status") in _REFERRAL_LIVE:
            for perf in body.get("performer") or []:
                pract = _ref_id(perf, "Practitioner")
                if pract:
                    rels.append((pract, patient, "referral"))
    elif rtype == "Consent":
        patient = _ref_id(body.get("patient"), "Patient")
        provision = body.get("provision") or {}
        if patient and body.get("status") == "active" and isinstance(provision, dict):
            actors = [_ref_id((a or {}).get("reference"), "Practitioner")
                      for a in provision.get("actor") or []]
            named = [a for a in actors if a]
            if provision.get("type") == "deny":
                rules.extend((patient, a) for a in named) if named else rules.append(
                    (patient, "*"))
            elif provision.get("type") == "permit":
                rels.extend((a, patient, "share") for a in named)
    return sorted(set(rels)), sorted(set(rules))


def sync(conn: Connection, *, tenant: str, rtype: str, rid: str,
         body: dict[str, Any] | None) -> None:
    """Rewrite what ``rtype/rid`` states (``body`` None: it was deleted)."""
    if rtype not in SOURCES:
        return
    source = f"{rtype}/{rid}"
    conn.execute(delete(care_relationship).where(care_relationship.c.tenant == tenant,
                                                 care_relationship.c.source == source))
    conn.execute(delete(consent_rule).where(consent_rule.c.tenant == tenant,
                                            consent_rule.c.source == source))
    if body is None:
        return
    rels, rules = derive(rtype, body)
    now = now_us()
    if rels:
        conn.execute(insert(care_relationship), [
            {"tenant": tenant, "practitioner": p, "patient": pat, "kind": k, "source": source,
             "created_at": now} for p, pat, k in rels])
    if rules:
        conn.execute(insert(consent_rule), [
            {"tenant": tenant, "patient": pat, "source": source, "actor": a}
            for pat, a in rules])


def add_creator(conn: Connection, *, tenant: str, practitioner: str, patient: str) -> None:
    conn.execute(insert(care_relationship).values(
        tenant=tenant, practitioner=practitioner, patient=patient, kind="creator",
        source=f"Patient/{patient}", created_at=now_us()))


def kinds(conn: Connection, *, tenant: str, practitioner: str, patient: str) -> frozenset[str]:
    rows = conn.execute(select(care_relationship.c.kind).distinct().where(
        care_relationship.c.tenant == tenant, care_relationship.c.practitioner == practitioner,
        care_relationship.c.patient == patient)).all()
    return frozenset(r[0] for r in rows)


def consent_denials(conn: Connection, *, tenant: str, practitioner: str, patient: str
                    ) -> tuple[bool, bool]:
    """(denies this practitioner by name, denies everyone but the care team)."""
    actors = {r[0] for r in conn.execute(select(consent_rule.c.actor).where(
        consent_rule.c.tenant == tenant, consent_rule.c.patient == patient,
        consent_rule.c.actor.in_([practitioner, "*"])))}
    return practitioner in actors, "*" in actors
