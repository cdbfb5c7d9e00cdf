"""FHIR REST interactions: create, read, vread, update, delete, history, metadata."""

from __future__ import annotations

from typing import Any

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "name": [{"family": "Durand", "given": ["Camille"]}],
    "gender": "female",
    "birthDate": "1984-05-12",
    "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "295109912611193"}],
}


def create(api: Any, body: dict[str, Any] = PATIENT) -> Any:
    resp = api.post(f"/fhir/{body['resourceType']}", json=body)
    assert resp.status_code == 201, resp.text
    return resp


def test_create_answers_201_with_location_etag_and_meta(api: Any) -> None:
    resp = create(api)
    body = resp.json()
    rid = body["id"]
    assert resp.headers["etag"] == 'W/"1"'
    assert resp.headers["location"].endswith(f"/fhir/Patient/{rid}/_history/1")
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")


def test_create_ignores_client_id(api: Any) -> None:
    body = create(api, {**PATIENT, "id": "chosen-by-client"}).json()
    assert body["id"] != "chosen-by-client"


def test_read_and_vread(api: Any) -> None:
    rid = create(api).json()["id"]
    read = api.get(f"/fhir/Patient/{rid}")
    assert read.status_code == 200
    assert read.json()["name"][0]["family"] == "Durand"
    assert read.headers["etag"] == 'W/"1"'
    assert api.get(f"/fhir/Patient/{rid}/_history/1").json()["id"] == rid
    assert api.get(f"/fhir/Patient/{rid}/_history/2").status_code == 404
    assert api.get(f"/fhir/Patient/{rid}/_history/x").status_code == 400


def test_update_with_if_match(api: Any) -> None:
    rid = create(api).json()["id"]
    changed = {**PATIENT, "id": rid, "gender": "other"}
    ok = api.put(f"/fhir/Patient/{rid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == 'W/"2"'
    assert ok.json()["meta"]["versionId"] == "2"
    stale = api.put(f"/fhir/Patient/{rid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["details"]["coding"][0]["code"] == "version-conflict"
    assert api.get(f"/fhir/Patient/{rid}/_history/1").json()["gender"] == "female"
    assert api.get(f"/fhir/Patient/{rid}").json()["gender"] == "other"


def test_update_as_create(api: Any) -> None:
    resp = api.put("/fhir/Patient/client-chosen-1", json={**PATIENT, "id": "client-chosen-1"})
    assert resp.status_code == 201
    assert resp.headers["etag"] == 'W/"1"'
    assert api.get("/fhir/Patient/client-chosen-1").status_code == 200


def test_update_id_mismatch_is_400(api: Any) -> None:
    resp = api.put("/fhir/Patient/abc", json={**PATIENT, "id": "other"})
    assert resp.status_code == 400


def test_delete_then_read_is_410_and_history_keeps_versions(api: Any) -> None:
    rid = create(api).json()["id"]
    assert api.delete(f"/fhir/Patient/{rid}").status_code == 204
    gone = api.get(f"/fhir/Patient/{rid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    hist = api.get(f"/fhir/Patient/{rid}/_history").json()
    assert hist["type"] == "history"
    assert hist["total"] == 2
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert hist["entry"][1]["resource"]["meta"]["versionId"] == "1"
    # Re-creating after deletion continues the version sequence.
    again = api.put(f"/fhir/Patient/{rid}", json={**PATIENT, "id": rid})
    assert again.status_code == 201
    assert again.headers["etag"] == 'W/"3"'


def test_delete_unknown_is_idempotent(api: Any) -> None:
    assert api.delete("/fhir/Patient/does-not-exist").status_code == 204


def test_read_unknown_is_404(api: Any) -> None:
    resp = api.get("/fhir/Patient/does-not-exist")
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_history_of_updates(api: Any) -> None:
    rid = create(api).json()["id"]
    for g in ("male", "other", "unknown"):
        api.put(f"/fhir/Patient/{rid}", json={**PATIENT, "id": rid, "gender": g})
    hist = api.get(f"/fhir/Patient/{rid}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["4", "3", "2", "1"]


def test_metadata_is_public_and_truthful(api: Any) -> None:
    resp = api.client.get("/fhir/metadata")
    assert resp.status_code == 200
    cs = resp.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert {"Patient", "Observation", "Practitioner", "CareTeam", "Consent"} <= set(types)
    patient_params = {p["name"] for p in types["Patient"]["searchParam"]}
    assert {"identifier", "family", "given", "name", "birthdate", "gender", "_id",
            "_lastUpdated"} <= patient_params
    assert {i["code"] for i in rest["interaction"]} == {"batch", "transaction"}
    assert types["Patient"]["operation"][0]["name"] == "everything"


def test_all_resource_types_accepted(api: Any) -> None:
    for body in (
        {"resourceType": "Organization", "name": "Cabinet"},
        {"resourceType": "Basic", "code": {"text": "x"}},
        {"resourceType": "Appointment", "status": "booked",
         "participant": [{"status": "accepted", "actor": {"display": "x"}}]},
        {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
    ):
        resp = api.post(f"/fhir/{body['resourceType']}", json=body)
        assert resp.status_code == 201, (body["resourceType"], resp.text)


def test_concurrent_updates_of_one_resource_all_succeed(api: Any) -> None:
    """Regression: on PostgreSQL a writer that waited for the row lock used to answer 409."""
    from concurrent.futures import ThreadPoolExecutor

    from hygie.access.actor import Actor

    rid = create(api).json()["id"]
    actor = Actor.system("concurrency")

    def updates(n: int) -> int:
        for _ in range(5):
            with api.gate.open(actor) as door:
                door.update("Patient", rid, {**PATIENT, "id": rid, "gender": "other"})
        return 5

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(updates, range(8))) == 40
    hist = api.get(f"/fhir/Patient/{rid}/_history").json()
    assert hist["total"] == 41
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == [
        str(v) for v in range(41, 0, -1)]
