"""The secretary's calendar over HTTP (no browser), on SQLite and on PostgreSQL: the week's
bounds in Europe/Paris among many other weeks' appointments, order, cancelled and restricted
entries, the HTMX fragment, English, and the audit entries of a view.
tests/browser/test_secretary.py drives it in Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hygie.access.actor import Actor
from hygie.store.db import transaction
from hygie.store.tables import audit_event

from .conftest import Instance
from .people import People, make_people
from .test_web import web_sign_in

DAY = re.compile(r'<section class="day" aria-labelledby="day-([0-9-]+)">(.*?)</section>', re.S)
TIMES = re.compile(r'<span class="date">([^<]+)</span>')


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


def _seed(people: People) -> dict[str, str]:
    gate = people.app.state.runtime.gate
    out: dict[str, str] = {}
    with gate.open(Actor.system("test")) as door:
        for key, family in (("durand", "Durand"), ("petit", "Petit")):
            out[key] = door.create("Patient", {"resourceType": "Patient", "name": [
                {"family": family, "given": ["Camille"]}]}).rid

        def book(key: str, start: str, patient: str, end: str | None = None,
                 status: str = "booked") -> None:
            body: dict[str, Any] = {
                "resourceType": "Appointment", "status": status, "start": start,
                "participant": [
                    {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
                    {"actor": {"reference": "Practitioner/p-cal", "display": "dr.cal"},
                     "status": "accepted"}]}
            if end:
                body["end"] = end
            out[key] = door.create("Appointment", body).rid

        durand, petit = out["durand"], out["petit"]
        book("sun_before", "2025-03-09T23:30:00+01:00", durand)  # the previous week
        book("mon_9", "2025-03-10T08:00:00Z", durand, "2025-03-10T08:30:00Z")  # 09:00 Paris
        book("mon_8", "2025-03-10T07:00:00Z", petit, "2025-03-10T07:20:00Z", "cancelled")
        book("mon_0", "2025-03-09T23:00:00Z", petit)  # Monday 00:00 in Paris
        book("sun_late", "2025-03-16T22:30:00Z", durand)  # Sunday 23:30 in Paris
        book("next_mon", "2025-03-16T23:00:00Z", durand)  # next Monday 00:00 in Paris
        book("unknown", "2025-03-12T10:00:00Z", "no-such-patient")
        base = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)
        for week in (*range(-40, 0), *range(1, 13)):  # other weeks: never in this one
            start = (base + timedelta(weeks=week)).strftime("%Y-%m-%dT%H:%M:%SZ")
            book(f"week{week}", start, durand)
    return out


def _days(text: str) -> dict[str, str]:
    return {m[1]: m[2] for m in DAY.finditer(html.unescape(text))}


def test_the_week_among_many_others(people: People) -> None:
    ids = _seed(people)
    web_sign_in(people, people.person("sec.cal", "secretary"))
    page = people.client.get("/app/calendar?week=2025-03-12")
    assert page.status_code == 200 and "<html" in page.text
    days = _days(page.text)
    assert list(days) == [f"2025-03-{d}" for d in range(10, 17)]
    monday = days["2025-03-10"]
    assert TIMES.findall(monday) == ["00:00", "08:00–08:20", "09:00–09:30"]  # Paris, ordered
    assert monday.count('class="cancelled"') == 1 and "Annulé" in monday
    assert monday.count('name="csrf_token"') == 2  # no cancel button on the cancelled one
    assert f"/app/calendar/{ids['mon_9']}/cancel" in monday
    assert f"/app/calendar/{ids['mon_8']}/cancel" not in monday
    assert "avec dr.cal" in monday and "Camille PETIT" in monday
    assert "— 09:00, Camille DURAND" in monday  # the button's accessible name
    assert "Patient (accès restreint)" in days["2025-03-12"]
    assert TIMES.findall(days["2025-03-12"]) == ["11:00"]  # not the other weeks' 10:00
    assert TIMES.findall(days["2025-03-16"]) == ["23:30"]
    assert "Aucun rendez-vous" in days["2025-03-11"]
    text = html.unescape(page.text)
    assert "Semaine du 10/03/2025 – 16/03/2025" in text
    for key in ("sun_before", "next_mon", "week-1", "week1", "week-40", "week12"):
        assert ids[key] not in text
    # the cancel forms carry the ids of the week's appointments still booked
    assert sorted(k for k in ids if ids[k] in text) == ["mon_0", "mon_9", "sun_late", "unknown"]


def test_fragment_english_and_audit_entries(people: People) -> None:
    ids = _seed(people)
    web_sign_in(people, people.person("sec.cal2", "secretary"))
    c = people.client
    with transaction(people.engine, readonly=True) as conn:
        before = conn.execute(select(audit_event.c.seq).order_by(
            audit_event.c.seq.desc()).limit(1)).scalar_one()
    fragment = c.get("/app/calendar?week=2025-03-03", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'id="week"' in fragment.text
    days = _days(fragment.text)
    assert list(days) == [f"2025-03-{d:02d}" for d in range(3, 10)]
    assert TIMES.findall(days["2025-03-05"]) == ["10:00"]  # week -1 (09:00Z = 10:00 Paris)
    assert TIMES.findall(days["2025-03-09"]) == ["23:30"]
    with transaction(people.engine, readonly=True) as conn:
        rows = conn.execute(select(audit_event.c.action, audit_event.c.rtype,
                                   audit_event.c.patient, audit_event.c.outcome)
                            .where(audit_event.c.seq > before)).all()
    # one entry per search, one per patient touched by each search (the access history)
    assert sorted(rows, key=str) == sorted([
        ("search", "Appointment", None, "success"),
        ("search", "Appointment", ids["durand"], "success"),
        ("search", "Patient", None, "success"),
        ("search", "Patient", ids["durand"], "success")], key=str)
    english = c.get("/app/calendar?week=2025-03-10&lang=en")
    assert english.status_code == 200
    monday = _days(english.text)["2025-03-10"]
    assert "Cancelled" in monday and "with dr.cal" in monday and ">Cancel<" in monday
    assert "Patient (restricted access)" in _days(english.text)["2025-03-12"]
    assert "No appointment" in _days(english.text)["2025-03-11"]
