"""FHIR search over encrypted data: blind-indexed names/identifiers/codes, dates, references."""

from __future__ import annotations

import time
from typing import Any

import pytest

NIR = "urn:oid:1.2.250.1.213.1.4.8"


def mk(api: Any, body: dict[str, Any]) -> str:
    resp = api.post(f"/fhir/{body['resourceType']}", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def ids(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {e["resource"]["id"] for e in resp.json().get("entry", [])}


@pytest.fixture
def people(api: Any) -> dict[str, str]:
    return {
        "raul": mk(api, {"resourceType": "Patient", "gender": "male", "birthDate": "1994-02-01",
                         "name": [{"family": "Gómez", "given": ["Raúl", "Ángel"]}],
                         "identifier": [{"system": NIR, "value": "295109912611193"}]}),
        "lea": mk(api, {"resourceType": "Patient", "gender": "female", "birthDate": "1994-07-14",
                        "name": [{"family": "Gomes", "given": ["Léa"], "prefix": ["Mme"]}],
                        "identifier": [{"system": "urn:example:mrn", "value": "A-77"}]}),
        "jean": mk(api, {"resourceType": "Patient", "gender": "male", "birthDate": "1950",
                         "name": [{"family": "De La Fontaine", "given": ["Jean"]}]}),
    }


def test_search_by_family_prefix_accent_and_case_insensitive(api: Any,
                                                             people: dict[str, str]) -> None:
    assert ids(api.get("/fhir/Patient?family=gom")) == {people["raul"], people["lea"]}
    assert ids(api.get("/fhir/Patient?family=GOMEZ")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?family=gómez")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?family:exact=Gómez")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?family:exact=gómez")) == set()
    assert ids(api.get("/fhir/Patient?family=fontaine")) == {people["jean"]}


def test_search_by_given_and_name(api: Any, people: dict[str, str]) -> None:
    assert ids(api.get("/fhir/Patient?given=raul")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?given=ange")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?name=lea")) == {people["lea"]}
    assert ids(api.get("/fhir/Patient?name=mme")) == {people["lea"]}
    assert ids(api.get("/fhir/Patient?name=jean,lea")) == {people["jean"], people["lea"]}


def test_search_by_identifier_forms(api: Any, people: dict[str, str]) -> None:
    assert ids(api.get(f"/fhir/Patient?identifier={NIR}|295109912611193")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?identifier=295109912611193")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?identifier=urn:example:mrn|295109912611193")) == set()
    assert ids(api.get("/fhir/Patient?identifier=urn:example:mrn|A-77")) == {people["lea"]}
    assert ids(api.get("/fhir/Patient?identifier=urn:example:mrn|")) == {people["lea"]}


def test_search_by_birthdate_and_gender(api: Any, people: dict[str, str]) -> None:
    assert ids(api.get("/fhir/Patient?birthdate=1994-02-01")) == {people["raul"]}
    assert ids(api.get("/fhir/Patient?birthdate=1994")) == {people["raul"], people["lea"]}
    assert ids(api.get("/fhir/Patient?birthdate=eq1994-07")) == {people["lea"]}
    assert ids(api.get("/fhir/Patient?gender=male")) == {people["raul"], people["jean"]}
    assert ids(api.get("/fhir/Patient?gender=male&birthdate=1994")) == {people["raul"]}


def test_search_by_id_and_total(api: Any, people: dict[str, str]) -> None:
    resp = api.get(f"/fhir/Patient?_id={people['raul']},{people['jean']}")
    assert ids(resp) == {people["raul"], people["jean"]}
    assert resp.json()["total"] == 2
    assert "total" not in api.get("/fhir/Patient?_total=none").json()
    count = api.get("/fhir/Patient?_summary=count").json()
    assert count["total"] == 3 and not count.get("entry")


def test_paging_with_next_links(api: Any) -> None:
    made = [mk(api, {"resourceType": "Organization", "name": f"Org {i}"}) for i in range(7)]
    seen: list[str] = []
    url = "/fhir/Organization?_count=3"
    pages = 0
    while url:
        resp = api.get(url)
        body = resp.json()
        assert body["total"] == 7
        seen += [e["resource"]["id"] for e in body.get("entry", [])]
        nxt = [lnk["url"] for lnk in body["link"] if lnk["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else ""
        pages += 1
    assert pages == 3
    assert seen == made  # default order: _lastUpdated ascending


def test_sort_by_last_updated_descending(api: Any) -> None:
    made = [mk(api, {"resourceType": "Organization", "name": f"O{i}"}) for i in range(3)]
    body = api.get("/fhir/Organization?_sort=-_lastUpdated").json()
    assert [e["resource"]["id"] for e in body["entry"]] == list(reversed(made))


def test_last_updated_ranges(api: Any) -> None:
    first = mk(api, {"resourceType": "Organization", "name": "before"})
    time.sleep(1.1)
    cut = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1.1)
    second = mk(api, {"resourceType": "Organization", "name": "after"})
    assert ids(api.get(f"/fhir/Organization?_lastUpdated=ge{cut}")) == {second}
    assert ids(api.get(f"/fhir/Organization?_lastUpdated=gt{cut}")) == {second}
    assert ids(api.get(f"/fhir/Organization?_lastUpdated=lt{cut}")) == {first}
    assert ids(api.get(f"/fhir/Organization?_lastUpdated=le{cut}")) == {first}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert ids(api.get(f"/fhir/Organization?_lastUpdated={today}")) >= {first, second}
    assert ids(api.get("/fhir/Organization?_lastUpdated=eq1999")) == set()


@pytest.fixture
def clinical(api: Any, people: dict[str, str]) -> dict[str, str]:
    raul, lea = people["raul"], people["lea"]
    enc = mk(api, {"resourceType": "Encounter", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                             "code": "AMB"},
                   "subject": {"reference": f"Patient/{raul}"},
                   "period": {"start": "2023-03-01T09:00:00+01:00",
                              "end": "2023-03-01T09:30:00+01:00"}})
    return {
        "enc": enc,
        "weight": mk(api, {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org",
                                                "code": "29463-7"}]},
                           "subject": {"reference": f"Patient/{raul}"},
                           "encounter": {"reference": f"Encounter/{enc}"},
                           "effectiveDateTime": "2023-03-01T09:10:00+01:00",
                           "valueQuantity": {"value": 72.5, "unit": "kg"}}),
        "height": mk(api, {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org",
                                                "code": "8302-2"}]},
                           "subject": {"reference": f"Patient/{lea}"},
                           "effectiveDateTime": "2024-01-15"}),
        "cond": mk(api, {"resourceType": "Condition",
                         "code": {"coding": [{"system": "http://snomed.info/sct",
                                              "code": "44054006"}]},
                         "subject": {"reference": f"Patient/{raul}"},
                         "onsetDateTime": "2020-05-01"}),
        "allergy": mk(api, {"resourceType": "AllergyIntolerance",
                            "patient": {"reference": f"Patient/{lea}"},
                            "code": {"coding": [{"system": "http://snomed.info/sct",
                                                 "code": "91936005"}]},
                            "recordedDate": "2022-11-02"}),
    }


def test_clinical_search_by_patient_subject_code_date(api: Any, people: dict[str, str],
                                                      clinical: dict[str, str]) -> None:
    raul, lea = people["raul"], people["lea"]
    assert ids(api.get(f"/fhir/Observation?patient={raul}")) == {clinical["weight"]}
    assert ids(api.get(f"/fhir/Observation?subject=Patient/{lea}")) == {clinical["height"]}
    assert ids(api.get(f"/fhir/Observation?subject={lea}")) == {clinical["height"]}
    assert ids(api.get("/fhir/Observation?code=http://loinc.org|29463-7")) == {clinical["weight"]}
    assert ids(api.get("/fhir/Observation?code=8302-2")) == {clinical["height"]}
    assert ids(api.get("/fhir/Observation?date=2023")) == {clinical["weight"]}
    assert ids(api.get("/fhir/Observation?date=ge2024-01-01")) == {clinical["height"]}
    assert ids(api.get("/fhir/Observation?date=lt2024-01-01")) == {clinical["weight"]}
    assert ids(api.get("/fhir/Observation?date=ge2023-01-01&date=le2023-12-31")) == {
        clinical["weight"]}
    assert ids(api.get(f"/fhir/Observation?encounter=Encounter/{clinical['enc']}")) == {
        clinical["weight"]}
    assert ids(api.get("/fhir/Encounter?date=2023-03-01")) == {clinical["enc"]}
    assert ids(api.get(f"/fhir/Condition?patient={raul}&code=44054006")) == {clinical["cond"]}
    assert ids(api.get("/fhir/Condition?onset-date=2020-05")) == {clinical["cond"]}
    assert ids(api.get(f"/fhir/AllergyIntolerance?patient={lea}&date=2022")) == {
        clinical["allergy"]}


def test_updates_and_deletes_reindex(api: Any, people: dict[str, str]) -> None:
    rid = people["jean"]
    body = api.get(f"/fhir/Patient/{rid}").json()
    body["name"] = [{"family": "Martin", "given": ["Jean"]}]
    assert api.put(f"/fhir/Patient/{rid}", json=body).status_code == 200
    assert ids(api.get("/fhir/Patient?family=fontaine")) == set()
    assert ids(api.get("/fhir/Patient?family=martin")) == {rid}
    api.delete(f"/fhir/Patient/{rid}")
    assert ids(api.get("/fhir/Patient?family=martin")) == set()


def test_post_search(api: Any, people: dict[str, str]) -> None:
    resp = api.post("/fhir/Patient/_search", content=b"family=gomez",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert ids(resp) == {people["raul"]}
