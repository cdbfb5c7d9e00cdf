"""End to end with real sign-ins: a practitioner opens a record through break-glass; the
patient signs in and sees who accessed their record, when, how, and the stated reason."""

from __future__ import annotations

from typing import Any

from hygie.access.actor import Actor

from .conftest import Instance
from .people import bearer, make_people
from .test_policy_table import body_for


def test_patient_sees_who_accessed_their_record(instance: Instance) -> None:
    people = make_people(instance)
    try:
        gate = people.app.state.runtime.gate
        system = Actor.system("test-setup")
        with gate.open(system) as door:
            pract = door.create("Practitioner", {
                "resourceType": "Practitioner",
                "name": [{"prefix": ["Dr"], "given": ["Marie"], "family": "Curie"}]}).rid
            pid = door.create("Patient", body_for("Patient", "-", "Lambert")).rid
            obs = door.create("Observation", body_for("Observation", pid, "HBA1C")).rid
        doc = people.person("mcurie", "practitioner", practitioner_id=pract)
        pat = people.person("jlambert", "patient", patient_id=pid)
        doc_headers = bearer(people.tokens(doc)["access_token"])
        client = people.client
        denied = client.get(f"/fhir/Observation/{obs}", headers=doc_headers)
        assert denied.status_code == 403 and "HBA1C" not in denied.text
        opened = client.get(f"/fhir/Observation/{obs}", headers={
            **doc_headers, "X-Break-Glass": "Patiente inconsciente aux urgences"})
        assert opened.status_code == 200 and "HBA1C" in opened.text
        pat_headers = bearer(people.tokens(pat)["access_token"])
        resp = client.get("/me/access-history", headers=pat_headers)
        assert resp.status_code == 200, resp.text
        accesses = resp.json()["accesses"]
        glass = [a for a in accesses if a["action"] == "break-glass"]
        assert glass and glass[0]["who"] == "Dr Marie Curie"
        assert glass[0]["role"] == "practitioner"
        assert glass[0]["break_glass_reason"] == "Patiente inconsciente aux urgences"
        reads = [a for a in accesses if a["action"] == "read" and a["who"] == "Dr Marie Curie"]
        assert any(a["outcome"] == "success" for a in reads)
        assert any(a["outcome"] == "denied" for a in reads)
        assert all(a["at"].endswith("Z") for a in accesses)
        # Only the patient whose record it is may see it.
        assert client.get("/me/access-history", headers=doc_headers).status_code == 403
        assert people.other_client().get("/me/access-history").status_code == 401
    finally:
        people.close()


def test_access_history_is_itself_audited(instance: Instance) -> None:
    people = make_people(instance)
    try:
        gate = people.app.state.runtime.gate
        with gate.open(Actor.system("test-setup")) as door:
            pid = door.create("Patient", body_for("Patient", "-", "X")).rid
        pat = people.person("pat2", "patient", patient_id=pid)
        headers: dict[str, Any] = bearer(people.tokens(pat)["access_token"])
        assert people.client.get("/me/access-history", headers=headers).status_code == 200
        assert people.audit(action="access-history", outcome="success")
    finally:
        people.close()
