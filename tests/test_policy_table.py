"""The access decision table, run case by case against a real instance over HTTP.

tests/fixtures/policy/decisions.txt is the readable source: each row expands to one case per
(type, interaction). For every case the world is built with real FHIR resources (the patient,
a CareTeam / referral / sharing Consent for the relationship, a refusing Consent for the consent
state), then the request is made through the API as that person. Every case asserts the HTTP
outcome, the reason code recorded in the audit trail, and that a canary string held only by the
target data never appears in a response to a denied request.

People are injected as the authenticated actor with FastAPI's dependency override: this test is
about authorisation; authentication (password, TOTP, sessions) has its own tests.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from sqlalchemy import select

from hygie.access.actor import Actor
from hygie.api.app import create_app
from hygie.api.deps import bearer_actor
from hygie.store.tables import audit_event

from .conftest import BACKENDS, Instance, _make_instance

TABLE = Path(__file__).parent / "fixtures" / "policy" / "decisions.txt"
CLINICAL = ["Observation", "Condition", "Encounter", "AllergyIntolerance", "MedicationRequest",
            "DocumentReference", "DiagnosticReport", "Immunization", "Procedure"]
REASON = "urgence vitale, patient inconscient au SAU"


@dataclass(frozen=True)
class Case:
    line: int
    role: str
    relationship: str
    rtype: str
    interaction: str
    consent: str
    break_glass: bool
    expect: str

    @property
    def id(self) -> str:
        bg = "+bg" if self.break_glass else ""
        return (f"L{self.line}-{self.role}-{self.relationship}-{self.rtype}-{self.interaction}"
                f"-{self.consent}{bg}")


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for n, raw in enumerate(TABLE.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        role, rel, types, inters, consent, bg, expect = (c.strip() for c in line.split("|"))
        type_list = [t for group in types.split() for t in
                     (CLINICAL if group == "@clinical" else [group])]
        for rtype, inter in itertools.product(type_list, inters.split()):
            cases.append(Case(n, role, rel, rtype, inter, consent, bg == "yes", expect))
    return cases


CASES = load_cases()


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 300
    assert len({c.id for c in CASES}) == len(CASES)


# -- world building -------------------------------------------------------------------------
def ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def body_for(rtype: str, patient: str, canary: str) -> dict[str, Any]:
    subj = ref("Patient", patient)
    text = {"text": canary}
    data = base64.b64encode(canary.encode()).decode()
    bodies: dict[str, dict[str, Any]] = {
        "Observation": {"status": "final", "code": text, "subject": subj},
        "Condition": {"code": text, "subject": subj},
        "Encounter": {"status": "finished", "subject": subj, "serviceType": text,
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB"}},
        "AllergyIntolerance": {"patient": subj, "code": text},
        "MedicationRequest": {"status": "active", "intent": "order", "subject": subj,
                              "medicationCodeableConcept": text},
        "DocumentReference": {"status": "current", "subject": subj, "description": canary,
                              "content": [{"attachment": {"contentType": "text/plain",
                                                          "data": data}}]},
        "DiagnosticReport": {"status": "final", "code": text, "subject": subj},
        "Immunization": {"status": "completed", "vaccineCode": text, "patient": subj,
                         "occurrenceDateTime": "2024-01-02"},
        "Procedure": {"status": "completed", "code": text, "subject": subj},
        "Communication": {"status": "completed", "subject": subj,
                          "payload": [{"contentString": canary}]},
        "Consent": consent_body(patient, None, "permit"),
        "Appointment": {"status": "booked", "description": canary, "participant": [
            {"actor": subj, "status": "accepted"}]},
        "Patient": {"name": [{"family": canary}], "gender": "unknown"},
    }
    return {"resourceType": rtype, **bodies[rtype]}


def consent_body(patient: str, practitioner: str | None, kind: str) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": kind}
    if practitioner:
        provision["actor"] = [{"role": {"text": "care"},
                               "reference": ref("Practitioner", practitioner)}]
    return {"resourceType": "Consent", "status": "active", "patient": ref("Patient", patient),
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "provision": provision}


class World:
    def __init__(self, app: Any, client: TestClient) -> None:
        self.app = app
        self.client = client
        self.gate = app.state.runtime.gate
        self.system = Actor.system("test-setup")
        self.pract = self.make("Practitioner", {"resourceType": "Practitioner",
                                                "name": [{"family": "Moi"}]})

    def make(self, rtype: str, body: dict[str, Any], actor: Actor | None = None) -> str:
        with self.gate.open(actor or self.system) as door:
            return str(door.create(rtype, body).rid)

    def practitioner_actor(self) -> Actor:
        return Actor.user("u-pract", "practitioner", practitioner_id=self.pract)

    def build(self, case: Case) -> tuple[Actor, str, str, str]:
        """(actor, target patient id, target resource id, canary)."""
        canary = f"CANARY{uuid.uuid4().hex[:16]}"
        me = self.practitioner_actor()
        creator = me if case.relationship == "creator" else None
        pbody = body_for("Patient", "-", canary if case.rtype == "Patient" else "Xpatient")
        patient = self.make("Patient", pbody, creator)
        rel = case.relationship
        if rel == "careteam":
            self.make("CareTeam", {"resourceType": "CareTeam", "status": "active",
                                   "subject": ref("Patient", patient),
                                   "participant": [{"member": ref("Practitioner", self.pract)}]})
        elif rel == "referral":
            self.make("ServiceRequest", {"resourceType": "ServiceRequest", "status": "active",
                                         "intent": "order", "subject": ref("Patient", patient),
                                         "code": {"text": "avis"},
                                         "performer": [ref("Practitioner", self.pract)]})
        elif rel == "share":
            self.make("Consent", consent_body(patient, self.pract, "permit"))
        if case.consent == "deny-actor":
            self.make("Consent", consent_body(patient, self.pract, "deny"))
        elif case.consent == "deny-others":
            self.make("Consent", consent_body(patient, None, "deny"))
        target = patient if case.rtype == "Patient" else self.make(
            case.rtype, body_for(case.rtype, patient, canary))
        if case.role == "practitioner":
            actor = me
        elif case.role == "patient":
            own = patient if rel == "own" else self.make("Patient", body_for("Patient", "-",
                                                                             "Autre"))
            actor = Actor.user(f"u-pat-{own[:8]}", "patient", patient_id=own)
        else:
            actor = Actor.user(f"u-{case.role}", case.role)
        return actor, patient, target, canary


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, templates: dict[str, Any],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    inst: Instance
    with _make_instance(request.param, templates, tmp_path_factory.mktemp("policy")) as inst:
        app = create_app(inst.settings)
        current: dict[str, Actor] = {}

        def as_actor(request: Request) -> Actor:
            return current["actor"]

        app.dependency_overrides[bearer_actor] = as_actor
        client = TestClient(app, raise_server_exceptions=False)
        w = World(app, client)
        w.current = current  # type: ignore[attr-defined]
        yield w
        client.close()
        app.state.runtime.engine.dispose()


def request_for(w: World, case: Case, patient: str, target: str, canary: str) -> Any:
    headers = {"Content-Type": "application/fhir+json"}
    if case.break_glass:
        headers["X-Break-Glass"] = REASON
    t = case.rtype
    import json

    if case.interaction == "read":
        return w.client.get(f"/fhir/{t}/{target}", headers=headers)
    if case.interaction == "vread":
        return w.client.get(f"/fhir/{t}/{target}/_history/1", headers=headers)
    if case.interaction == "history":
        return w.client.get(f"/fhir/{t}/{target}/_history", headers=headers)
    if case.interaction == "search":
        return w.client.get(f"/fhir/{t}?_id={target}", headers=headers)
    if case.interaction == "everything":
        return w.client.get(f"/fhir/Patient/{patient}/$everything", headers=headers)
    if case.interaction == "create":
        body = body_for(t, patient, canary + "new")
        return w.client.post(f"/fhir/{t}", content=json.dumps(body), headers=headers)
    if case.interaction == "update":
        body = {**body_for(t, patient, canary + "upd"), "id": target}
        return w.client.put(f"/fhir/{t}/{target}", content=json.dumps(body), headers=headers)
    if case.interaction == "delete":
        return w.client.delete(f"/fhir/{t}/{target}", headers=headers)
    raise AssertionError(case.interaction)


def last_denial(w: World, actor: Actor) -> Any:
    with w.gate.engine.connect() as conn:
        return conn.execute(select(audit_event).where(
            audit_event.c.actor == actor.label, audit_event.c.outcome == "denied")
            .order_by(audit_event.c.seq.desc()).limit(1)).first()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_decision(world: World, case: Case) -> None:
    actor, patient, target, canary = world.build(case)
    world.current["actor"] = actor  # type: ignore[attr-defined]
    before = last_denial(world, actor)
    resp = request_for(world, case, patient, target, canary)
    assert resp.status_code < 500, resp.text[:300]
    if case.expect == "permit":
        assert resp.status_code in (200, 201, 204), (case.id, resp.status_code, resp.text[:300])
        if case.interaction in ("read", "vread", "history", "search", "everything"):
            assert canary in resp.text, "permitted data is missing from the answer"
            if case.interaction == "search":
                assert resp.json()["total"] == 1
        return
    reason = case.expect.split(":", 1)[1]
    assert canary not in resp.text, "denied data leaked into the response"
    if resp.status_code == 200 and case.interaction == "search":
        # Searches are filtered rather than refused: nothing, not even a count, leaks.
        assert resp.json()["total"] == 0 and not resp.json().get("entry")
        return
    assert resp.status_code == 403, (case.id, resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == "forbidden"
    denial = last_denial(world, actor)
    assert denial is not None and denial != before
    assert denial.code == reason, (case.id, denial.code)
