"""OAuth2 client credentials, scopes, revocation, and the audit trail of the gate."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text, update

from hygie.access.scopes import parse_scopes
from hygie.errors import InvalidRequest
from hygie.store.tables import access_token, api_client, audit_event

from .conftest import Instance, get_token, make_api


def audit_rows(api: Any, **where: Any) -> list[Any]:
    stmt = select(audit_event).order_by(audit_event.c.seq)
    for k, v in where.items():
        stmt = stmt.where(audit_event.c[k] == v)
    with api.engine.connect() as conn:
        return list(conn.execute(stmt).all())


# -- token endpoint ------------------------------------------------------------------------
def test_token_response_shape_and_hashed_secret(api: Any) -> None:
    resp = get_token(api.client, api.client_id, api.secret)
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "system/*.*"
    assert resp.headers["cache-control"] == "no-store"
    with api.engine.connect() as conn:
        stored = conn.execute(select(api_client.c.secret_hash)).scalar_one()
        digests = conn.execute(select(access_token.c.digest)).scalars().all()
    assert stored.startswith("$argon2id$") and api.secret not in stored
    assert all(body["access_token"].encode() not in d for d in digests)


def test_wrong_secret_and_unknown_client_answer_the_same(api: Any) -> None:
    wrong = get_token(api.client, api.client_id, "not-the-secret")
    unknown = get_token(api.client, "hyg_nobody", "not-the-secret")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_client"
    denied = audit_rows(api, action="token", outcome="denied")
    assert len(denied) == 2


def test_token_request_errors(api: Any) -> None:
    no_auth = api.client.post("/auth/token", data={"grant_type": "client_credentials"})
    assert no_auth.status_code == 401
    assert no_auth.json()["error"] == "invalid_client"
    bad_grant = get_token(api.client, api.client_id, api.secret, grant_type="password")
    assert bad_grant.status_code == 400
    assert bad_grant.json()["error"] == "unsupported_grant_type"
    too_much = get_token(api.client, api.client_id, api.secret, scope="ledger/*.read")
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"


def test_narrower_scope_on_request(api: Any) -> None:
    resp = get_token(api.client, api.client_id, api.secret, scope="system/*.*")
    assert resp.json()["scope"] == "system/*.*"


def test_revoked_client_tokens_stop_at_once(api: Any, instance: Instance) -> None:
    from hygie.access.clients import revoke_client
    from hygie.store.db import transaction

    assert api.get("/fhir/Patient").status_code == 200
    with transaction(api.engine) as conn:
        revoke_client(conn, tenant="default", client_id=api.client_id)
    assert api.get("/fhir/Patient").status_code == 401
    assert get_token(api.client, api.client_id, api.secret).status_code == 401


def test_expired_token_is_refused(api: Any) -> None:
    with api.engine.begin() as conn:
        conn.execute(update(access_token).values(expires_at=0))
    resp = api.get("/fhir/Patient")
    assert resp.status_code == 401


# -- scopes ----------------------------------------------------------------------------------
def test_scope_grammar() -> None:
    assert [s.letters for s in parse_scopes("system/*.* system/Patient.read system/Obs.rs")] \
        == ["cruds", "rs", "rs"]
    for bad in ("user/*.*", "system/*.fly", "patient/Patient.read", "", "system/patient.read"):
        with pytest.raises(InvalidRequest):
            parse_scopes(bad)


@pytest.fixture
def reader(instance: Instance) -> Any:
    a, app = make_api(instance, scopes="system/Patient.read")
    yield a
    a.client.close()
    app.state.runtime.engine.dispose()


def test_scopes_limit_what_a_client_can_do(api: Any, reader: Any) -> None:
    pid = api.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    oid = api.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "secret-code"},
        "subject": {"reference": f"Patient/{pid}"}}).json()["id"]
    assert reader.get(f"/fhir/Patient/{pid}").status_code == 200
    assert reader.get("/fhir/Patient").status_code == 200
    denied = reader.get(f"/fhir/Observation/{oid}")
    assert denied.status_code == 403
    assert "secret-code" not in denied.text
    assert denied.json()["issue"][0]["details"]["coding"][0]["code"] == "forbidden"
    assert reader.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 403
    assert reader.delete(f"/fhir/Patient/{pid}").status_code == 403
    every = reader.get(f"/fhir/Patient/{pid}/$everything").json()
    assert [e["resource"]["resourceType"] for e in every["entry"]] == ["Patient"]
    tx = reader.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST",
                                                              "url": "Patient"}}]})
    assert tx.status_code == 403
    rows = audit_rows(api, outcome="denied", rtype="Observation")
    assert rows and rows[0].code == "scope-missing"
    assert rows[0].actor == f"client:{reader.client_id}"


# -- audit trail ----------------------------------------------------------------------------
def test_every_access_is_recorded(api: Any) -> None:
    pid = api.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    api.get(f"/fhir/Patient/{pid}")
    api.get("/fhir/Patient")
    api.get("/fhir/Patient/nope")
    rows = audit_rows(api, actor=f"client:{api.client_id}")
    actions = [(r.action, r.outcome, r.rtype, r.rid, r.patient, r.code) for r in rows]
    assert ("create", "success", "Patient", pid, pid, None) in actions
    assert ("read", "success", "Patient", pid, pid, None) in actions
    assert ("search", "success", "Patient", None, None, None) in actions
    assert ("search", "success", "Patient", None, pid, None) in actions
    assert ("read", "error", "Patient", "nope", None, "not-found") in actions
    assert all(r.request_id and r.client_address for r in rows)


def test_audit_failure_fails_closed(api: Any, instance: Instance) -> None:
    pid = api.post("/fhir/Patient", json={"resourceType": "Patient",
                                          "name": [{"family": "Fermee"}]}).json()["id"]
    with api.engine.begin() as conn:
        if instance.backend == "sqlite":
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "BEGIN SELECT RAISE(ABORT, 'audit down'); END"))
        else:
            conn.execute(text("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'audit down'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION no_audit()"))
    resp = api.get(f"/fhir/Patient/{pid}")
    assert resp.status_code == 503
    assert "Fermee" not in resp.text
    assert resp.json()["issue"][0]["details"]["coding"][0]["code"] == "audit-unavailable"
    # A write is refused too, and leaves nothing behind.
    created = api.post("/fhir/Patient", json={"resourceType": "Patient",
                                              "name": [{"family": "Jamais"}]})
    assert created.status_code == 503
    with api.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER no_audit" + (" ON audit_event"
                                                     if instance.backend != "sqlite" else "")))
    assert api.get("/fhir/Patient?family=jamais").json()["total"] == 0


def test_concurrent_reads_are_all_recorded_by_group_commit(api: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from hygie.access.actor import Actor, RequestContext

    pid = api.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    gate = api.gate
    actor = Actor.client("c-threads", "system/*.*")

    def reads(n: int) -> int:
        for i in range(25):
            with gate.open(actor, RequestContext(request_id=f"r{n}-{i}"), readonly=True) as d:
                assert d.read("Patient", pid).body
        return 25

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(reads, range(8))) == 200
    with api.engine.connect() as conn:
        rows = conn.execute(select(audit_event.c.request_id).where(
            audit_event.c.actor == "client:c-threads")).scalars().all()
    assert sorted(rows) == sorted(f"r{n}-{i}" for n in range(8) for i in range(25))
    assert gate.appender.appended >= 200 and gate.appender.batches >= 1
