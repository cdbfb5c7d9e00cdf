"""Audit entries as FHIR R4 AuditEvent resources (vocabulary as named constants, with sources).

- Event types: DICOM (http://dicom.nema.org/resources/ontology/DCM) 110110 Patient Record,
  110114 User Authentication, 110113 Security Alert, 110100 Application Activity.
- Subtypes of data access: FHIR restful-interaction codes (http://hl7.org/fhir/restful-interaction).
- Action: FHIR audit-event-action C R U D E. Outcome: FHIR audit-event-outcome 0 4 8 12.
- Break-glass purpose: HL7 v3 ActReason BTG ("break the glass").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"

PATIENT_RECORD = {"system": DCM, "code": "110110", "display": "Patient Record"}
USER_AUTHENTICATION = {"system": DCM, "code": "110114", "display": "User Authentication"}
SECURITY_ALERT = {"system": DCM, "code": "110113", "display": "Security Alert"}
APPLICATION_ACTIVITY = {"system": DCM, "code": "110100", "display": "Application Activity"}
BREAK_THE_GLASS = {"system": ACT_REASON, "code": "BTG", "display": "break the glass"}

# Hygie action -> (event type, restful-interaction subtype or None, AuditEvent.action)
_DATA = {"read": ("read", "R"), "vread": ("vread", "R"), "history": ("history-instance", "R"),
         "search": ("search-type", "E"), "everything": ("operation", "E"),
         "create": ("create", "C"), "update": ("update", "U"), "delete": ("delete", "D"),
         "erase": ("delete", "D"), "request": (None, "E")}
_AUTH = frozenset({"login", "mfa", "token", "logout", "activate", "refresh", "token-reuse"})
_ALERT = frozenset({"break-glass", "lockout"})

OUTCOMES = {"success": "0", "denied": "4", "error": "8"}
ACTIONS = frozenset({"C", "R", "U", "D", "E"})


def classify(action: str, code: str | None) -> tuple[dict[str, str], str | None, str]:
    """(event type coding, subtype code, C/R/U/D/E) for an audit entry."""
    if action in _ALERT or code == "integrity-failure":
        return SECURITY_ALERT, None, "E"
    if action in _AUTH:
        return USER_AUTHENTICATION, None, "E"
    if action in _DATA:
        sub, act = _DATA[action]
        return PATIENT_RECORD, sub, act
    return APPLICATION_ACTIVITY, None, "E"


def action_code(action: str, code: str | None) -> str:
    return classify(action, code)[2]


def to_audit_event(row: Any) -> dict[str, Any]:
    """One audit_event row as a FHIR AuditEvent (ids, roles, actions: never content)."""
    etype, subtype, act = classify(row.action, row.code)
    outcome = "12" if row.code == "integrity-failure" else OUTCOMES.get(row.outcome, "8")
    agent: dict[str, Any] = {
        "type": {"text": row.actor_kind},
        "who": {"identifier": {"system": "https://hygie.health/actor", "value": row.actor}},
        "requestor": True,
    }
    if row.client_address:
        agent["network"] = {"address": row.client_address, "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.seq),
        "type": etype,
        "action": act,
        "recorded": datetime.fromtimestamp(row.at / 1e6, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"),
        "outcome": outcome,
        "agent": [agent],
        "source": {"observer": {"display": "Hygie"}},
    }
    if subtype:
        event["subtype"] = [{"system": RESTFUL, "code": subtype}]
    if row.outcome != "success" or row.code:
        event["outcomeDesc"] = f"{row.action}: {row.outcome}" + (
            f" ({row.code})" if row.code else "")
    if row.code == "break-glass" or row.action == "break-glass":
        event["purposeOfEvent"] = [{"coding": [BREAK_THE_GLASS]}]
    entities: list[dict[str, Any]] = []
    if row.rtype and row.rid and row.rtype != "Patient":
        entities.append({"what": {"reference": f"{row.rtype}/{row.rid}"}})
    elif row.rtype and not row.rid:
        entities.append({"what": {"display": row.rtype}})
    if row.patient:
        entities.append({"what": {"reference": f"Patient/{row.patient}"},
                         "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}})
    if row.request_id:
        entities.append({"what": {"identifier": {"system": "https://hygie.health/request",
                                                 "value": row.request_id}}})
    if entities:
        event["entity"] = entities
    return event
