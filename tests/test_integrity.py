"""Tampered or swapped ciphertext is detected (never wrong data); crypto-shredding works."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from hygie.access.actor import Actor
from hygie.store.tables import audit_event, resource


def mk_patient(api: Any, family: str) -> str:
    resp = api.post("/fhir/Patient", json={"resourceType": "Patient",
                                           "name": [{"family": family}]})
    assert resp.status_code == 201
    return str(resp.json()["id"])


def body_of(api: Any, rid: str) -> bytes:
    with api.engine.connect() as conn:
        return bytes(conn.execute(select(resource.c.body).where(
            resource.c.rid == rid, resource.c.current.is_(True))).scalar_one())


def set_body(api: Any, rid: str, body: bytes) -> None:
    with api.engine.begin() as conn:
        conn.execute(update(resource).where(resource.c.rid == rid, resource.c.current.is_(True))
                     .values(body=body))


def assert_integrity_failure(resp: Any) -> None:
    assert resp.status_code == 500
    issue = resp.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "integrity-failure"
    assert "Traceback" not in resp.text


def alarms(api: Any) -> list[Any]:
    with api.engine.connect() as conn:
        return conn.execute(select(audit_event).where(
            audit_event.c.code == "integrity-failure")).all()


def test_flipped_byte_fails_the_read_and_raises_an_alarm(api: Any) -> None:
    rid = mk_patient(api, "Tampered")
    blob = bytearray(body_of(api, rid))
    blob[len(blob) // 2] ^= 0x01
    set_body(api, rid, bytes(blob))
    resp = api.get(f"/fhir/Patient/{rid}")
    assert_integrity_failure(resp)
    assert "Tampered" not in resp.text
    found = alarms(api)
    assert len(found) == 1
    assert found[0].rid == rid and found[0].outcome == "error"


def test_swapped_rows_fail_both_reads(api: Any) -> None:
    a, b = mk_patient(api, "Alpha"), mk_patient(api, "Bravo")
    blob_a, blob_b = body_of(api, a), body_of(api, b)
    set_body(api, a, blob_b)
    set_body(api, b, blob_a)
    assert_integrity_failure(api.get(f"/fhir/Patient/{a}"))
    assert_integrity_failure(api.get(f"/fhir/Patient/{b}"))
    # A search that would return them fails too rather than serving the wrong data.
    assert_integrity_failure(api.get("/fhir/Patient"))


def test_truncated_ciphertext_fails(api: Any) -> None:
    rid = mk_patient(api, "Short")
    set_body(api, rid, body_of(api, rid)[:10])
    assert_integrity_failure(api.get(f"/fhir/Patient/{rid}"))


def test_crypto_shredding_makes_everything_unreadable(api: Any) -> None:
    pid = mk_patient(api, "Effacee")
    obs = api.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": f"Patient/{pid}"}}).json()["id"]
    api.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                          "name": [{"family": "Effacee2"}]})
    other = mk_patient(api, "Garde")
    with api.gate.open(Actor.system("erase")) as door:
        assert door.erase_patient(pid) == 2
    for path in (f"/fhir/Patient/{pid}", f"/fhir/Observation/{obs}",
                 f"/fhir/Patient/{pid}/_history/1", f"/fhir/Patient/{pid}/_history"):
        resp = api.get(path)
        assert resp.status_code == 410, path
        assert resp.json()["issue"][0]["details"]["coding"][0]["code"] == "erased"
    assert api.get("/fhir/Patient?family=effacee").json()["total"] == 0
    assert api.get(f"/fhir/Patient/{other}").status_code == 200
    # New data can no longer be written into the erased patient's compartment.
    again = api.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": f"Patient/{pid}"}})
    assert again.status_code == 410
