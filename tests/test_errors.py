"""Bad input gets a 4xx OperationOutcome naming the problem: never a 500, never a traceback."""

from __future__ import annotations

from typing import Any

import pytest

SECRET_NAME = "Zorglubienne"  # a value that must never be echoed in an error


def assert_outcome(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] in ("error", "fatal")
    assert issue["diagnostics"]
    assert "Traceback" not in resp.text
    if code:
        assert issue["details"]["coding"][0]["code"] == code
    return body


def test_invalid_json_is_400(api: Any) -> None:
    resp = api.post("/fhir/Patient", content=b"{not json",
                    headers={"Content-Type": "application/fhir+json"})
    assert_outcome(resp, 400, "invalid-request")


def test_invalid_resource_is_400_without_echoing_values(api: Any) -> None:
    bad = {"resourceType": "Patient", "birthDate": SECRET_NAME,
           "name": [{"family": SECRET_NAME}], "gender": SECRET_NAME}
    resp = api.post("/fhir/Patient", json=bad)
    body = assert_outcome(resp, 400, "invalid-resource")
    assert "birthDate" in body["issue"][0]["diagnostics"]
    assert SECRET_NAME not in resp.text


def test_wrong_resource_type_in_body_is_400(api: Any) -> None:
    resp = api.post("/fhir/Patient", json={"resourceType": "Observation"})
    assert_outcome(resp, 400)


def test_unknown_type_is_404(api: Any) -> None:
    assert_outcome(api.get("/fhir/Unicorn"), 404, "unknown-resource-type")
    assert_outcome(api.post("/fhir/Unicorn", json={"resourceType": "Unicorn"}), 404)
    assert_outcome(api.get("/fhir/HumanName/1"), 404)


def test_wrong_media_type_is_415(api: Any) -> None:
    resp = api.post("/fhir/Patient", content=b"<Patient/>",
                    headers={"Content-Type": "application/fhir+xml"})
    assert_outcome(resp, 415, "unsupported-media-type")


def test_body_over_limit_is_413(api: Any, instance: Any) -> None:
    big = b'{"resourceType":"Basic","code":{"text":"' + b"x" * (
        instance.settings.max_body_bytes + 10) + b'"}}'
    resp = api.post("/fhir/Basic", content=big, headers={"Content-Type": "application/fhir+json"})
    assert_outcome(resp, 413, "too-large")


def test_body_over_limit_without_content_length_is_413(api: Any, instance: Any) -> None:
    limit = instance.settings.max_body_bytes

    def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    resp = api.post("/fhir/Basic", content=chunks(),
                    headers={"Content-Type": "application/fhir+json"})
    assert_outcome(resp, 413, "too-large")


def test_unsupported_search_parameter_is_400_unless_lenient(api: Any) -> None:
    assert_outcome(api.get("/fhir/Patient?shoe-size=42"), 400, "unsupported-search-parameter")
    lenient = api.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    assert "shoe-size" not in lenient.json()["link"][0]["url"]


@pytest.mark.parametrize("query", [
    "_count=abc", "_count=-1", "birthdate=lt2000", "_lastUpdated=ge2020-13-45",
    "_total=maybe", "_sort=family", "name:contains=x", "gender:text=x",
])
def test_bad_search_values_are_400(api: Any, query: str) -> None:
    assert_outcome(api.get(f"/fhir/Patient?{query}"), 400)


def test_unsupported_interaction_is_405(api: Any) -> None:
    assert_outcome(api.request("PATCH", "/fhir/Patient/x/y"), 405)


def test_missing_token_is_401(api: Any) -> None:
    resp = api.client.get("/fhir/Patient")
    assert_outcome(resp, 401, "unauthenticated")
    assert resp.headers["www-authenticate"] == "Bearer"
    assert_outcome(api.client.get("/fhir/Patient", headers={"Authorization": "Bearer nope"}),
                   401)
    assert_outcome(api.client.get("/fhir/Patient", headers={"Authorization": "Basic abc"}), 401)


def test_bad_bundle_is_400(api: Any) -> None:
    assert_outcome(api.post("/fhir", json={"resourceType": "Patient"}), 400)
    assert_outcome(api.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}),
                   400)
    assert_outcome(api.post("/fhir", json={"resourceType": "Bundle", "type": "transaction",
                                           "entry": [{"request": {"method": "PATCH",
                                                                  "url": "Patient/1"}}]}), 400)


def test_unknown_route_is_outcome(api: Any) -> None:
    resp = api.client.get("/nowhere")
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_security_headers(api: Any) -> None:
    resp = api.get("/fhir/Patient")
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-request-id"]
