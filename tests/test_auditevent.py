"""The audit trail as FHIR AuditEvents, readable by the DPO and the security officer only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Request

from hygie.access.actor import Actor
from hygie.api.deps import bearer_actor

from .test_policy_table import body_for


@pytest.fixture
def as_role(api: Any) -> Iterator[Any]:
    current: dict[str, Actor] = {}

    def actor(request: Request) -> Actor:
        return current["a"]

    def use(role: str | None) -> Any:
        if role is None:
            api.app.dependency_overrides.clear()
        else:
            api.app.dependency_overrides[bearer_actor] = actor
            current["a"] = Actor.user(f"u-{role}", role)
        return api

    yield use
    api.app.dependency_overrides.clear()


def test_audit_events_for_dpo_and_security(api: Any, as_role: Any) -> None:
    pid = api.post("/fhir/Patient", json=body_for("Patient", "-", "Zyxwvutsr")).json()["id"]
    api.get(f"/fhir/Patient/{pid}")
    api.get("/fhir/Patient/missing")
    for role in ("dpo", "security"):
        resp = as_role(role).get(f"/fhir/AuditEvent?patient={pid}")
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
        assert bundle["type"] == "searchset" and bundle["total"] == 2
        events = [e["resource"] for e in bundle["entry"]]
        read, create = events  # newest first
        assert read["type"]["code"] == "110110" and read["action"] == "R"
        assert read["subtype"][0]["code"] == "read" and read["outcome"] == "0"
        assert create["action"] == "C"
        assert {"reference": f"Patient/{pid}"} == read["entity"][-2]["what"] or any(
            e["what"].get("reference") == f"Patient/{pid}" for e in read["entity"])
        assert "Zyxwvutsr" not in resp.text  # ids and actions only, never content
    failed = as_role("dpo").get("/fhir/AuditEvent?outcome=8").json()
    assert failed["total"] >= 1
    assert as_role("dpo").get("/fhir/AuditEvent?action=C").json()["total"] >= 1
    assert as_role("dpo").get("/fhir/AuditEvent?date=ge2020-01-01").json()["total"] >= 3
    assert as_role("dpo").get("/fhir/AuditEvent?date=lt2020-01-01").json()["total"] == 0
    assert as_role("dpo").get("/fhir/AuditEvent?color=red").status_code == 400


def test_audit_events_are_refused_to_others(api: Any, as_role: Any) -> None:
    for role in ("practitioner", "secretary", "patient", "admin"):
        assert as_role(role).get("/fhir/AuditEvent").status_code == 403
    # An API client needs the ledger/*.read scope.
    assert as_role(None).get("/fhir/AuditEvent").status_code == 403


def test_break_glass_and_integrity_alarms_are_security_alerts(api: Any, as_role: Any) -> None:
    from sqlalchemy import update

    from hygie.store.tables import resource

    pid = api.post("/fhir/Patient", json=body_for("Patient", "-", "x")).json()["id"]
    with api.engine.begin() as conn:
        conn.execute(update(resource).values(body=b"\x01" + b"0" * 40))
    assert api.get(f"/fhir/Patient/{pid}").status_code == 500
    events = as_role("security").get("/fhir/AuditEvent?outcome=12").json()
    assert events["total"] == 1
    assert events["entry"][0]["resource"]["type"]["code"] == "110113"
