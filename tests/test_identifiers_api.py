"""French identifiers checked at the API: INS-NIR / INS-NIA keys, RPPS shape."""

from __future__ import annotations

from typing import Any

import pytest

NIR = "urn:oid:1.2.250.1.213.1.4.8"
NIA = "urn:oid:1.2.250.1.213.1.4.9"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"


@pytest.mark.parametrize("value", ["295109912611193", "253072B07300470", "253072A07300443"])
@pytest.mark.parametrize("system", [NIR, NIA])
def test_valid_ins_accepted(api: Any, system: str, value: str) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": system, "value": value}]}
    assert api.post("/fhir/Patient", json=body).status_code == 201


@pytest.mark.parametrize("value", ["295109912611199", "29510991261119", "2951099126111934"])
def test_wrong_ins_refused_with_clear_message(api: Any, value: str) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": NIR, "value": value}]}
    resp = api.post("/fhir/Patient", json=body)
    assert resp.status_code == 400
    issue = resp.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "invalid-identifier"
    assert "INS" in issue["diagnostics"]
    assert value not in resp.text


def test_wrong_ins_key_says_key(api: Any) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": NIR, "value": "295109912611199"}]}
    assert "key" in api.post("/fhir/Patient", json=body).json()["issue"][0]["diagnostics"]


def test_rpps_shape(api: Any) -> None:
    ok = {"resourceType": "Practitioner", "identifier": [{"system": RPPS, "value": "10101010101"}]}
    bad = {"resourceType": "Practitioner", "identifier": [{"system": RPPS, "value": "1234"}]}
    assert api.post("/fhir/Practitioner", json=ok).status_code == 201
    resp = api.post("/fhir/Practitioner", json=bad)
    assert resp.status_code == 400
    assert "RPPS" in resp.json()["issue"][0]["diagnostics"]
