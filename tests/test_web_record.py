"""The record page reads only what it shows, in one gate access, and pages its timeline."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from hygie.access.actor import Actor
from hygie.errors import IntegrityFailure
from hygie.store.tables import resource

from .conftest import Instance
from .people import People, make_people
from .test_web import csrf_of, web_sign_in

VISITS = 35


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


def _record(people: People) -> tuple[str, str]:
    """A practitioner (signed in) and their patient: 35 encounters, one immunization."""
    person = people.person("dr.page", "practitioner", practitioner_id="p-page")
    actor = Actor.user(person.user_id, "practitioner", practitioner_id="p-page")
    gate = people.app.state.runtime.gate
    start = datetime(2020, 1, 1, 9, 0, tzinfo=UTC)
    with gate.open(actor) as door:
        pid = door.create("Patient", {"resourceType": "Patient", "birthDate": "1970-05-04",
                                      "name": [{"family": "Pagin", "given": ["Léa"]}]}).rid
        for i in range(VISITS):
            when = (start + timedelta(days=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            door.create("Encounter", {
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "AMB"},
                "type": [{"text": f"Visite {i:02d}"}], "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": when}})
        door.create("Immunization", {
            "resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": "Vaccin"}, "patient": {"reference": f"Patient/{pid}"},
            "occurrenceDateTime": "2021-03-01"})
    web_sign_in(people, person)
    return person.user_id, pid


def test_everything_with_a_type_filter(people: People) -> None:
    _user, pid = _record(people)
    gate = people.app.state.runtime.gate
    with gate.open(Actor.system("test"), readonly=True) as door:
        found, total = door.everything(pid, count=100, offset=0,
                                       types=("Patient", "Encounter"))
        entries = list(door.entries)
    assert total == VISITS + 1 and len(found) == VISITS + 1
    assert found[0].rtype == "Patient" and {f.rtype for f in found[1:]} == {"Encounter"}
    assert [(e.action, e.rid) for e in entries] == [("everything", pid)]
    with gate.open(Actor.system("test"), readonly=True) as door:
        _found, total = door.everything(pid, count=100, offset=0)
    assert total == VISITS + 2  # the Immunization too


def test_record_page_one_access_only_shown_types_and_a_paged_timeline(people: People) -> None:
    user, pid = _record(people)
    # The immunization is not shown: damage its ciphertext. Reading it would fail (integrity
    # alarm); the record page does not read it.
    with people.engine.begin() as conn:
        conn.execute(update(resource).where(resource.c.rtype == "Immunization")
                     .values(body=b"\x00" * 64))
    gate = people.app.state.runtime.gate
    with pytest.raises(IntegrityFailure), gate.open(Actor.system("test"),
                                                    readonly=True) as door:
        door.everything(pid, count=100, offset=0)
    c = people.client
    before = len(people.audit(actor=f"user:{user}"))
    page = c.get(f"/app/patients/{pid}")
    assert page.status_code == 200
    entries = people.audit(actor=f"user:{user}")[before:]
    assert [(e.action, e.rid, e.outcome) for e in entries] == [("everything", pid, "success")]
    text = html.unescape(page.text)
    assert text.count('<li class="kind-encounter">') == 30
    assert "Visite 34" in text and "Visite 05" in text and "Visite 04" not in text
    assert "Les 30 éléments les plus récents sont affichés sur 35." in text
    assert f'action="/app/patients/{pid}/timeline"' in text
    assert 'name="shown" value="30"' in text
    token = csrf_of(page.text)
    # "Voir plus" with HTMX: the next items, and the control replaced out of band.
    more = c.post(f"/app/patients/{pid}/timeline", data={"shown": "30", "csrf_token": token},
                  headers={"HX-Request": "true"})
    assert more.status_code == 200
    fragment = html.unescape(more.text)
    assert fragment.count('<li class="kind-encounter">') == VISITS - 30
    assert "Visite 04" in fragment and "Visite 00" in fragment and "Visite 05" not in fragment
    assert 'id="timeline-more" hx-swap-oob="true"' in fragment
    assert "Tous les éléments sont affichés (35)." in fragment
    assert "<html" not in fragment and 'name="shown"' not in fragment
    # Without JavaScript: the whole page with the longer timeline.
    full = c.post(f"/app/patients/{pid}/timeline", data={"shown": "30", "csrf_token": token})
    assert full.status_code == 200
    assert html.unescape(full.text).count('<li class="kind-encounter">') == VISITS
    # A state-changing method without the CSRF token is refused; nonsense is read as 0.
    assert c.post(f"/app/patients/{pid}/timeline", data={"shown": "30"}).status_code == 403
    odd = c.post(f"/app/patients/{pid}/timeline", data={"shown": "-5", "csrf_token": token},
                 headers={"HX-Request": "true"})
    assert odd.status_code == 200 and html.unescape(odd.text).count("kind-encounter") == 30


def test_timeline_of_a_record_one_may_not_open(people: People) -> None:
    _user, pid = _record(people)
    other = people.person("dr.other", "practitioner", practitioner_id="p-other")
    people.client.cookies.clear()
    web_sign_in(people, other)
    c = people.client
    token = csrf_of(c.get("/app").text)
    refused = c.post(f"/app/patients/{pid}/timeline", data={"shown": "30", "csrf_token": token},
                     headers={"HX-Request": "true"})
    assert refused.status_code == 403 and "Visite" not in refused.text
    assert "Accès d'urgence" in html.unescape(refused.text)
