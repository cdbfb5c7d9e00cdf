"""Batch and transaction Bundles, and Patient/$everything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hygie.store.tables import resource


def count_rows(api: Any) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(resource)).scalar_one())


def test_transaction_rewrites_urn_uuid_references(api: Any) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c9a5c6e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "weight"},
                      "subject": {"reference": "urn:uuid:0c9a5c6e-0000-4000-8000-000000000002"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:0c9a5c6e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Patient", "name": [{"family": "Petit"}]},
         "request": {"method": "POST", "url": "Patient"}},
    ]}
    resp = api.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_loc = body["entry"][0]["response"]["location"]
    pat_loc = body["entry"][1]["response"]["location"]
    assert obs_loc.startswith("Observation/") and pat_loc.startswith("Patient/")
    pat_id = pat_loc.split("/")[1]
    obs = api.get("/fhir/" + obs_loc.split("/_history")[0]).json()
    assert obs["subject"]["reference"] == f"Patient/{pat_id}"
    # The observation is in the patient's compartment (searchable and in $everything).
    assert api.get(f"/fhir/Observation?patient={pat_id}").json()["total"] == 1


def test_transaction_is_all_or_nothing(api: Any) -> None:
    before = count_rows(api)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "birthDate": "not-a-date"},
         "request": {"method": "POST", "url": "Patient"}},
    ]}
    resp = api.post("/fhir", json=bundle)
    assert resp.status_code == 400
    assert "entry 1" in resp.json()["issue"][0]["diagnostics"]
    assert count_rows(api) == before
    assert api.get("/fhir/Patient?family=ok").json()["total"] == 0


def test_batch_reports_each_entry(api: Any) -> None:
    rid = api.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Batch"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "birthDate": "nope"},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": f"Patient/{rid}"}},
        {"request": {"method": "GET", "url": "Patient?family=batch"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "DELETE", "url": f"Patient/{rid}"}},
    ]}
    resp = api.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.text
    entries = resp.json()["entry"]
    assert resp.json()["type"] == "batch-response"
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    # DELETE runs before GET (FHIR processing order), so the read finds it deleted.
    assert entries[2]["response"]["status"] == "410"
    assert entries[3]["resource"]["type"] == "searchset"
    assert entries[3]["resource"]["total"] == 1
    assert entries[4]["response"]["status"] == "404"
    assert entries[5]["response"]["status"] == "204 No Content"


def test_transaction_put_and_if_match(api: Any) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "tx-1"},
         "request": {"method": "PUT", "url": "Patient/tx-1"}}]}
    assert api.post("/fhir", json=bundle).status_code == 200
    bundle["entry"][0]["request"]["ifMatch"] = 'W/"5"'
    assert api.post("/fhir", json=bundle).status_code == 412


def test_synthea_bundle_and_everything(api: Any, synthea_bundles: list[Path]) -> None:
    doc = json.loads(synthea_bundles[0].read_text())
    resp = api.post("/fhir", json=doc)
    assert resp.status_code == 200, resp.text[:500]
    locs = [e["response"]["location"] for e in resp.json()["entry"]]
    assert len(locs) == len(doc["entry"])
    pid = next(loc.split("/")[1] for loc in locs if loc.startswith("Patient/"))
    every = api.get(f"/fhir/Patient/{pid}/$everything").json()
    assert every["type"] == "searchset"
    types = [e["resource"]["resourceType"] for e in every["entry"]]
    assert types[0] == "Patient"
    in_compartment = [e for e in doc["entry"]
                      if e["resource"]["resourceType"] not in ("Organization", "Practitioner")]
    assert every["total"] == len(in_compartment) == len(types)
    refs = {e["resource"].get("subject", e["resource"].get("patient", {})).get("reference")
            for e in every["entry"][1:]}
    refs.discard(None)
    assert refs == {f"Patient/{pid}"}
    paged = api.get(f"/fhir/Patient/{pid}/$everything?_count=10").json()
    assert len(paged["entry"]) == 10
    assert any(lnk["relation"] == "next" for lnk in paged["link"])
    assert api.get("/fhir/Patient/nobody/$everything").status_code == 404
