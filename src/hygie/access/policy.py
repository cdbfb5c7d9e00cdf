"""The access policy: a pure function from (actor, action, target, facts) to a decision.

It decides and does nothing else (no I/O), so the whole matrix is testable as a table
(tests/fixtures/policy/decisions.txt). Deny by default: anything not explicitly permitted is
refused, with a stable reason code and a message saying what would be needed.

Rules (docs/security-model.md):

- practitioner: the compartment of patients they are in a care relationship with (they
  created the patient, are in the patient's CareTeam, received a referral, or the patient shared
  the record with them); nothing else but through break-glass. Resources outside any patient
  compartment (Organization, Practitioner, Medication, ...) are shared directory data.
- secretary: Patient demographics, Appointment, Schedule/Slot, Coverage, Invoice (and directory
  data), for the whole practice; never clinical resources.
- patient: reads their own compartment, minus what a practitioner marked as not yet disclosable;
  writes Communication and Consent for themselves.
- dpo, security, admin: no clinical content at all (their tools are the audit trail, alerts,
  accounts, keys, backups).
- API clients: their SMART system scopes. Operator commands (system): everything.
- A patient's Consent can deny one practitioner, or everyone but the care team. Break-glass
  (a stated reason) overrides the absence of a relationship and a consent denial, for a limited
  time, for that patient only; it is recorded and raises an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hygie.access.actor import Actor
from hygie.fhir.compartment import is_compartment_type

INTERACTIONS = frozenset(
    {"create", "read", "vread", "update", "delete", "search", "history", "everything",
     "export"})
READS = frozenset({"read", "vread", "search", "history", "everything", "export"})
WRITES = frozenset({"create", "update", "delete"})

SECRETARY_TYPES = frozenset({"Patient", "Appointment", "AppointmentResponse", "Schedule", "Slot",
                             "Coverage", "Invoice", "Account"})
PATIENT_WRITABLE = frozenset({"Communication", "Consent"})
NO_CLINICAL_ROLES = frozenset({"dpo", "security", "admin"})
# Kinds of care relationship. "careteam" and "creator" are the care team proper.
CARE_TEAM_KINDS = frozenset({"careteam", "creator"})


@dataclass(frozen=True)
class Target:
    rtype: str
    rid: str | None = None
    patient: str | None = None
    undisclosed: bool = False


@dataclass(frozen=True)
class Facts:
    """What the gate looked up about the actor and the target patient (no I/O here)."""

    relationships: frozenset[str] = frozenset()  # kinds linking the practitioner to the patient
    consent_denies_actor: bool = False  # a Consent denies this practitioner by name
    consent_denies_others: bool = False  # a Consent denies everyone but the care team
    break_glass: bool = False  # an active break-glass grant for this patient


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # stable code: docs/security-model.md
    detail: str = ""
    break_glass: bool = False  # permitted only through break-glass (so it is flagged)


@dataclass(frozen=True)
class RowFilter:
    """Which rows a search may return (applied in SQL, so totals are filtered too)."""

    all_rows: bool = False
    practitioner: str | None = None  # compartments reachable by this practitioner
    patient: str | None = None  # only this patient's compartment
    non_compartment: bool = False  # resources outside any patient compartment
    hide_undisclosed: bool = False
    types: frozenset[str] = field(default_factory=frozenset)


def _deny(reason: str, detail: str) -> Decision:
    return Decision(False, reason, detail)


def is_directory(rtype: str) -> bool:
    """Shared data outside any patient compartment (Organization, Practitioner, ...)."""
    return rtype != "Patient" and not is_compartment_type(rtype)


def decide(actor: Actor, action: str, target: Target, facts: Facts = Facts()) -> Decision:
    if action not in INTERACTIONS:
        return _deny("unknown-action", f"'{action}' is not an interaction")
    if actor.kind == "system":
        # Operator commands run on the host with the keyring: they already hold everything.
        return Decision(True, "system-operator")
    if actor.kind == "client":
        for scope in actor.scopes:
            if scope.permits(target.rtype, action):
                return Decision(True, "scope-permits", scope.raw)
        return _deny("scope-missing",
                     f"this client's scopes do not allow {action} on {target.rtype}")
    if actor.kind != "user":
        return _deny("unknown-actor", "unknown kind of caller")
    role = actor.role
    if action == "export":
        return _deny("role-excludes", "export is an operator command")
    if role in NO_CLINICAL_ROLES:
        return _deny("role-excludes-clinical",
                     f"the {role} role has no access to patient records")
    if role == "secretary":
        if target.rtype in SECRETARY_TYPES and action != "everything":
            return Decision(True, "secretary-administrative")
        if is_directory(target.rtype) and action in READS:
            return Decision(True, "directory")
        return _deny("role-excludes-clinical",
                     "the secretary role handles identities and appointments, "
                     "not clinical content")
    if role == "patient":
        return _patient(actor, action, target)
    if role == "practitioner":
        return _practitioner(actor, action, target, facts)
    return _deny("unknown-role", "unknown role")


def _patient(actor: Actor, action: str, target: Target) -> Decision:
    if is_directory(target.rtype):
        if action in READS:
            return Decision(True, "directory")
        return _deny("role-excludes", "patients cannot change directory data")
    own = actor.patient_id is not None and target.patient == actor.patient_id
    if action == "search" and target.patient is None:
        return Decision(True, "own-record")  # rows are filtered to the own compartment
    if not own:
        return _deny("not-own-record", "patients can only access their own record")
    if action in READS:
        if target.undisclosed:
            return _deny("not-yet-disclosed", "not available yet")
        return Decision(True, "own-record")
    if target.rtype in PATIENT_WRITABLE and action in ("create", "update"):
        return Decision(True, "own-record-write")
    return _deny("role-excludes", "patients can write only messages and consents")


def _practitioner(actor: Actor, action: str, target: Target, facts: Facts) -> Decision:
    if is_directory(target.rtype):
        return Decision(True, "directory")
    if action == "search" and target.patient is None:
        return Decision(True, "care-relationship")  # rows are filtered by relationship
    if action == "create" and target.rtype == "Patient":
        return Decision(True, "creator")
    if target.patient is None:
        # A compartment resource that names no patient: nobody's care relationship covers it.
        return _deny("no-patient", "this resource is not linked to a patient")
    rel = facts.relationships
    if facts.consent_denies_actor:
        refused = True
    elif facts.consent_denies_others:
        refused = not (rel & CARE_TEAM_KINDS)
    else:
        refused = False
    if rel and not refused:
        return Decision(True, "care-relationship")
    if facts.break_glass:
        return Decision(True, "break-glass", break_glass=True)
    if refused:
        return _deny("consent-denied", "the patient has refused access to their record; "
                     "only break-glass (X-Break-Glass: <reason>) can open it in an emergency")
    return _deny("break-glass-required", "no care relationship with this patient: "
                 "break-glass required (X-Break-Glass: <reason>)")


def row_filter(actor: Actor, rtype: str) -> RowFilter:
    """The rows a search by ``actor`` on ``rtype`` may see (after ``decide`` permitted it)."""
    if actor.kind in ("system", "client"):
        return RowFilter(all_rows=True)
    if actor.role == "secretary":
        return RowFilter(all_rows=True)
    if is_directory(rtype):
        return RowFilter(all_rows=True)
    if actor.role == "patient":
        return RowFilter(patient=actor.patient_id or "-", hide_undisclosed=True)
    if actor.role == "practitioner":
        return RowFilter(practitioner=actor.practitioner_id or "-")
    return RowFilter(patient="-")  # nothing
