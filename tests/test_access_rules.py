"""Access rules end to end: IDOR, break-glass, consent and relationship revocation,
undisclosed results, enforcement inside bundles, no count leaks.

People are injected as the authenticated actor (authorisation tests; authentication has its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Request
from sqlalchemy import select, update

from hygie.access.actor import Actor
from hygie.api.deps import bearer_actor
from hygie.store.tables import audit_event, break_glass, security_alert

from .test_policy_table import body_for, consent_body, ref


class People:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.gate = api.gate
        self.current: dict[str, Actor] = {}
        self.system = Actor.system("test-setup")
        api.app.dependency_overrides[bearer_actor] = self._actor
        self.doc = self.make("Practitioner", {"resourceType": "Practitioner"})
        self.other_doc = self.make("Practitioner", {"resourceType": "Practitioner"})
        self.dr = Actor.user("u-dr", "practitioner", practitioner_id=self.doc)
        self.dr2 = Actor.user("u-dr2", "practitioner", practitioner_id=self.other_doc)

    def _actor(self, request: Request) -> Actor:
        return self.current["actor"]

    def make(self, rtype: str, body: dict[str, Any], actor: Actor | None = None) -> str:
        with self.gate.open(actor or self.system) as door:
            return str(door.create(rtype, body).rid)

    def put(self, rtype: str, rid: str, body: dict[str, Any]) -> None:
        with self.gate.open(self.system) as door:
            door.update(rtype, rid, {**body, "id": rid})

    def as_(self, actor: Actor) -> Any:
        self.current["actor"] = actor
        return self.api

    def patient_with(self, doc: str, canary: str = "Patient") -> tuple[str, str]:
        """A patient whose care team holds ``doc``; returns (patient, careteam)."""
        pid = self.make("Patient", body_for("Patient", "-", canary))
        team = self.make("CareTeam", {"resourceType": "CareTeam", "status": "active",
                                      "subject": ref("Patient", pid),
                                      "participant": [{"member": ref("Practitioner", doc)}]})
        return pid, team


@pytest.fixture
def people(api: Any) -> Iterator[People]:
    p = People(api)
    yield p
    api.app.dependency_overrides.clear()


def test_idor_guessing_other_ids_reveals_nothing(people: People) -> None:
    mine, _ = people.patient_with(people.doc)
    theirs, _ = people.patient_with(people.other_doc, "Voisin")
    obs = people.make("Observation", body_for("Observation", theirs, "SECRETOBS"))
    api = people.as_(people.dr)
    existing = api.get(f"/fhir/Observation/{obs}")
    missing = api.get("/fhir/Observation/00000000-0000-4000-8000-000000000000")
    assert existing.status_code == missing.status_code == 403
    assert existing.json() == missing.json()  # same answer: existence is not revealed
    assert "SECRETOBS" not in existing.text
    assert api.get(f"/fhir/Patient/{theirs}").status_code == 403
    assert api.get(f"/fhir/Patient/{mine}").status_code == 200
    # A patient guessing another patient's ids gets the same answer as for a missing one.
    patient = Actor.user("u-p", "patient", patient_id=mine)
    api = people.as_(patient)
    a = api.get(f"/fhir/Observation/{obs}")
    b = api.get("/fhir/Observation/11111111-0000-4000-8000-000000000000")
    assert a.status_code == b.status_code == 403 and a.json() == b.json()


def test_search_totals_do_not_leak(people: People) -> None:
    mine, _ = people.patient_with(people.doc)
    theirs, _ = people.patient_with(people.other_doc)
    for pid in (mine, theirs, theirs):
        people.make("Observation", body_for("Observation", pid, "x"))
    api = people.as_(people.dr)
    assert api.get("/fhir/Observation").json()["total"] == 1
    assert api.get(f"/fhir/Observation?patient={theirs}").json()["total"] == 0
    assert api.get("/fhir/Observation?_summary=count").json()["total"] == 1
    assert api.get("/fhir/Patient").json()["total"] == 1


def test_break_glass_grants_one_patient_for_a_limited_time(people: People) -> None:
    pid = people.make("Patient", body_for("Patient", "-", "Urgence"))
    other = people.make("Patient", body_for("Patient", "-", "Autre"))
    obs = people.make("Observation", body_for("Observation", pid, "BGCANARY"))
    api = people.as_(people.dr)
    denied = api.get(f"/fhir/Observation/{obs}")
    assert denied.status_code == 403
    assert "break-glass required" in denied.json()["issue"][0]["diagnostics"]
    short = api.get(f"/fhir/Observation/{obs}", headers={"X-Break-Glass": "x"})
    assert short.status_code == 400
    opened = api.get(f"/fhir/Observation/{obs}",
                     headers={"X-Break-Glass": "Patient%20inconscient%2C%20urgence%20vitale"})
    assert opened.status_code == 200 and "BGCANARY" in opened.text
    # The grant covers that patient (search, $everything) without the header, and no other.
    assert api.get(f"/fhir/Observation?patient={pid}").json()["total"] == 1
    assert api.get(f"/fhir/Patient/{pid}/$everything").status_code == 200
    assert api.get(f"/fhir/Patient/{other}").status_code == 403
    with people.api.engine.connect() as conn:
        grant = conn.execute(select(break_glass)).one()
        alert = conn.execute(select(security_alert)).one()
        entries = conn.execute(select(audit_event).where(
            audit_event.c.code == "break-glass")).all()
    assert grant.patient == pid and grant.practitioner == people.doc
    assert b"inconscient" not in grant.reason  # sealed with the patient's key
    hours = (grant.expires_at - grant.granted_at) / 3.6e9
    assert hours == pytest.approx(4)
    assert alert.kind == "break-glass" and alert.patient == pid and alert.ref == grant.id
    assert {e.action for e in entries} >= {"break-glass", "read"}
    # Security and DPO see the alert; others may not.
    for role in ("security", "dpo"):
        listed = people.as_(Actor.user(f"u-{role}", role)).get("/security/alerts").json()
        assert listed["alerts"][0]["patient"] == pid
    assert people.as_(people.dr).get("/security/alerts").status_code == 403
    # Once expired, the record closes again.
    with people.api.engine.begin() as conn:
        conn.execute(update(break_glass).values(expires_at=0))
    assert people.as_(people.dr).get(f"/fhir/Observation/{obs}").status_code == 403


def test_consent_and_its_revocation_take_effect_at_the_next_request(people: People) -> None:
    pid, _ = people.patient_with(people.doc)
    obs = people.make("Observation", body_for("Observation", pid, "x"))
    api = people.as_(people.dr)
    assert api.get(f"/fhir/Observation/{obs}").status_code == 200
    # The patient refuses this practitioner (written by the patient themself).
    patient = Actor.user("u-pat", "patient", patient_id=pid)
    resp = people.as_(patient).post("/fhir/Consent", content=json.dumps(
        consent_body(pid, people.doc, "deny")), headers={"Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text
    consent_id = resp.json()["id"]
    denied = people.as_(people.dr).get(f"/fhir/Observation/{obs}")
    assert denied.status_code == 403
    assert "refused" in denied.json()["issue"][0]["diagnostics"]
    # Withdrawing the refusal reopens at once.
    withdrawn = {**consent_body(pid, people.doc, "deny"), "status": "inactive"}
    resp = people.as_(patient).put(f"/fhir/Consent/{consent_id}",
                                   content=json.dumps({**withdrawn, "id": consent_id}),
                                   headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert people.as_(people.dr).get(f"/fhir/Observation/{obs}").status_code == 200


def test_revoking_a_care_relationship_takes_effect_at_once(people: People) -> None:
    pid, team = people.patient_with(people.doc)
    obs = people.make("Observation", body_for("Observation", pid, "x"))
    api = people.as_(people.dr)
    assert api.get(f"/fhir/Observation/{obs}").status_code == 200
    people.put("CareTeam", team, {"resourceType": "CareTeam", "status": "inactive",
                                  "subject": ref("Patient", pid),
                                  "participant": [{"member": ref("Practitioner", people.doc)}]})
    assert api.get(f"/fhir/Observation/{obs}").status_code == 403
    with people.gate.open(people.system) as door:
        door.delete("CareTeam", team)
    assert api.get(f"/fhir/Observation/{obs}").status_code == 403


def test_patient_does_not_see_undisclosed_results(people: People) -> None:
    pid, _ = people.patient_with(people.doc)
    pending = body_for("Observation", pid, "PENDINGRESULT")
    pending["meta"] = {"tag": [{"system": "https://hygie.health/fhir/CodeSystem/disclosure",
                                "code": "pending"}]}
    hidden = people.make("Observation", pending)
    people.make("Observation", body_for("Observation", pid, "SHOWN"))
    api = people.as_(Actor.user("u-pat", "patient", patient_id=pid))
    assert api.get(f"/fhir/Observation/{hidden}").status_code == 403
    search = api.get("/fhir/Observation")
    assert search.json()["total"] == 1 and "PENDINGRESULT" not in search.text
    every = api.get(f"/fhir/Patient/{pid}/$everything")
    assert "SHOWN" in every.text and "PENDINGRESULT" not in every.text
    # The care team sees it.
    assert people.as_(people.dr).get(f"/fhir/Observation/{hidden}").status_code == 200


def test_bundles_are_enforced_per_entry(people: People) -> None:
    mine, _ = people.patient_with(people.doc)
    theirs, _ = people.patient_with(people.other_doc)
    secret = people.make("Observation", body_for("Observation", theirs, "TXSECRET"))
    api = people.as_(people.dr)
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body_for("Observation", mine, "ok"),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": body_for("Observation", theirs, "intrus"),
         "request": {"method": "POST", "url": "Observation"}}]}
    resp = api.post("/fhir", json=tx)
    assert resp.status_code == 403
    assert api.get(f"/fhir/Observation?patient={mine}").json()["total"] == 0  # all or nothing
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{secret}"}},
        {"request": {"method": "GET", "url": "Observation"}}]}
    resp = api.post("/fhir", json=batch)
    assert resp.status_code == 200
    entries = resp.json()["entry"]
    assert entries[0]["response"]["status"] == "403"
    assert entries[1]["resource"]["total"] == 0
    assert "TXSECRET" not in resp.text


def test_admin_and_secretary_cannot_read_clinical_content(people: People) -> None:
    pid, _ = people.patient_with(people.doc)
    obs = people.make("Observation", body_for("Observation", pid, "CLINICAL"))
    for role in ("admin", "secretary", "dpo", "security"):
        api = people.as_(Actor.user(f"u-{role}", role))
        resp = api.get(f"/fhir/Observation/{obs}")
        assert resp.status_code == 403 and "CLINICAL" not in resp.text
        assert api.get(f"/fhir/Patient/{pid}/$everything").status_code == 403
    # The secretary manages identities of every patient of the practice.
    sec = people.as_(Actor.user("u-sec", "secretary"))
    assert sec.get(f"/fhir/Patient/{pid}").status_code == 200


def test_include_and_revinclude_are_filtered_by_policy(people: People) -> None:
    mine, _ = people.patient_with(people.doc, "Incluse")
    theirs, _ = people.patient_with(people.other_doc, "Exclue")
    obs_mine = people.make("Observation", body_for("Observation", mine, "OBSMINE"))
    people.make("Observation", body_for("Observation", theirs, "OBSTHEIRS"))
    system = people.as_(people.system)
    all_obs = system.get("/fhir/Observation?_include=Observation:subject").json()
    assert all_obs["total"] == 2
    assert sum(e["search"]["mode"] == "include" for e in all_obs["entry"]) == 2
    api = people.as_(people.dr)
    inc = api.get("/fhir/Observation?_include=Observation:patient")
    assert inc.status_code == 200, inc.text
    modes = {e["resource"]["id"]: e["search"]["mode"] for e in inc.json()["entry"]}
    assert modes == {obs_mine: "match", mine: "include"}
    rev = api.get("/fhir/Patient?_revinclude=Observation:subject")
    assert "OBSMINE" in rev.text and "OBSTHEIRS" not in rev.text and "Exclue" not in rev.text
    # A patient's own search: their own observations only.
    pat = people.as_(Actor.user("u-p2", "patient", patient_id=theirs))
    rev = pat.get(f"/fhir/Patient?_id={mine},{theirs}&_revinclude=Observation:subject")
    assert "OBSTHEIRS" in rev.text and "OBSMINE" not in rev.text
    assert api.get("/fhir/Observation?_include=Observation:code").status_code == 400
