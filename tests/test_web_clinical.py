"""The clinical pages over HTTP (no browser): patient forms, notes, vitals, documents,
break-glass — on SQLite and on PostgreSQL. tests/browser/test_clinical.py drives them in
Chromium."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.routing import APIRoute

from hygie.access.actor import Actor
from hygie.web import charts, clinical, documents, pages
from hygie.web.security import DOCUMENT_CSP

from .conftest import Instance
from .people import People, Person, make_people
from .samples import make_pdf, make_png
from .test_web import csrf_of, web_sign_in

INS = "295109912611193"  # synthetic, valid key
PATIENT_ID = re.compile(r"/app/patients/([0-9a-f-]{36})")


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


def _doctor(people: People, name: str = "dr.clin", pract: str = "p-clin") -> Person:
    person = people.person(name, "practitioner", practitioner_id=pract)
    web_sign_in(people, person)
    return person


def _identity(**over: str) -> dict[str, str]:
    return {"family": "Durand", "given": "Camille Marie", "birth_date": "1995-10-12",
            "gender": "female", "ins_nir": INS[:13], "ins_key": INS[13:],
            "address_line": "3 rue des Lilas", "postal_code": "69003", "city": "Lyon",
            "phone": "04 78 00 00 00", **over}


def _create(people: People, **over: str) -> str:
    c = people.client
    page = c.get("/app/patients/new")
    assert page.status_code == 200
    resp = c.post("/app/patients/new", data={**_identity(**over), "csrf_token": csrf_of(
        page.text)}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    match = PATIENT_ID.fullmatch(resp.headers["location"])
    assert match
    return match.group(1)


def test_clinical_routes_check_csrf_and_change_nothing_on_get() -> None:
    checked = {pages.session_form, documents.upload_form}
    routes = [r for r in [*clinical.router.routes, *documents.router.routes]
              if isinstance(r, APIRoute)]
    assert len(routes) >= 11
    for route in routes:
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            deps = {d.call for d in route.dependant.dependencies}
            assert deps & checked, f"{route.path} does not check the CSRF token"
        else:
            assert route.methods <= {"GET", "HEAD"}


def test_create_and_edit_a_patient(people: People) -> None:
    doctor = _doctor(people)
    c = people.client
    page = c.get("/app/patients/new")
    assert "<title>Nouveau patient · Hygie</title>" in page.text
    token = csrf_of(page.text)
    # A wrong INS key is refused by the server, in French, next to the field.
    bad = c.post("/app/patients/new", data={**_identity(ins_key="94"), "csrf_token": token})
    assert bad.status_code == 400
    assert "La clé INS ne correspond pas au matricule" in bad.text
    assert 'aria-describedby="f-ins_key-error"' in bad.text
    assert 'value="Durand"' in bad.text  # what was typed is kept
    # Missing fields and a future birth date.
    empty = c.post("/app/patients/new", data={**_identity(family="", birth_date="2999-01-01",
                                                          postal_code="123"),
                                              "csrf_token": token})
    assert empty.status_code == 400
    for message in ("Indiquez le nom de naissance", "Date de naissance invalide",
                    "Code postal invalide"):
        assert message in empty.text
    # Without the CSRF token: refused, nothing created.
    assert c.post("/app/patients/new", data=_identity()).status_code == 403
    # The whole INS typed in the first field is accepted too.
    rid = _create(people, ins_nir="2 95 10 99 126 111 93", ins_key="")
    record = c.get(f"/app/patients/{rid}")
    assert "Camille Marie DURAND" in record.text and "INS qualifiée" in record.text
    assert record.headers["cache-control"] == "no-store"
    assert INS not in c.get("/app").url.path
    gate = people.app.state.runtime.gate
    actor = Actor.user(doctor.user_id, "practitioner", practitioner_id="p-clin")
    with gate.open(actor, readonly=True) as door:
        doc = orjson.loads(door.read("Patient", rid).body or b"{}")
    assert doc["identifier"] == [{"use": "official", "system": "urn:oid:1.2.250.1.213.1.4.8",
                                  "value": INS}]
    assert doc["address"][0]["postalCode"] == "69003" and doc["telecom"][0]["system"] == "phone"
    # Edit: the form is filled with the record; a stale version is refused in French.
    edit = c.get(f"/app/patients/{rid}/edit")
    assert 'value="3 rue des Lilas"' in edit.text and 'name="version" value="1"' in edit.text
    token = csrf_of(edit.text)
    ok = c.post(f"/app/patients/{rid}/edit", data={
        **_identity(given="Camille", phone="", address_line="", postal_code="", city=""),
        "version": "1", "csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303
    stale = c.post(f"/app/patients/{rid}/edit", data={**_identity(), "version": "1",
                                                      "csrf_token": token})
    assert stale.status_code in (409, 412) and "modifié entre-temps" in stale.text
    with gate.open(actor, readonly=True) as door:
        doc = orjson.loads(door.read("Patient", rid).body or b"{}")
    assert doc["name"][0]["given"] == ["Camille"] and "telecom" not in doc
    assert "address" not in doc
    assert [a.outcome for a in people.audit(action="update", rid=rid)] == ["success", "error"]


def test_note_and_vitals_make_the_timeline_and_the_chart(people: People) -> None:
    _doctor(people)
    rid = _create(people)
    c = people.client
    page = c.get(f"/app/patients/{rid}/notes/new")
    assert "Camille Marie DURAND" in page.text
    assert "<title>Nouvelle note · Hygie</title>" in page.text
    token = csrf_of(page.text)
    assert c.post(f"/app/patients/{rid}/notes/new", data={"text": "", "csrf_token": token}
                  ).status_code == 400
    resp = c.post(f"/app/patients/{rid}/notes/new", data={
        "reason": "Toux persistante", "text": "Auscultation normale.\nPas de fièvre.",
        "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303
    obs = c.get(f"/app/patients/{rid}/observations/new")
    token = csrf_of(obs.text)
    bad = c.post(f"/app/patients/{rid}/observations/new", data={
        "effective": "2024-03-01T09:30", "weight": "9000", "systolic": "120",
        "csrf_token": token})
    assert bad.status_code == 400 and "Valeur invalide" in bad.text
    inverted = c.post(f"/app/patients/{rid}/observations/new", data={
        "effective": "2024-03-01T09:30", "systolic": "80", "diastolic": "120",
        "csrf_token": token})
    assert inverted.status_code == 400 and "inférieure à la systolique" in inverted.text
    none = c.post(f"/app/patients/{rid}/observations/new", data={
        "effective": "2024-03-01T09:30", "csrf_token": token})
    assert none.status_code == 400 and "au moins une mesure" in none.text
    for when, weight, sys_, dia in (("2024-03-01T09:30", "71,5", "135", "85"),
                                    ("2024-06-01T10:00", "70", "128", "82")):
        resp = c.post(f"/app/patients/{rid}/observations/new", data={
            "effective": when, "weight": weight, "height": "168", "systolic": sys_,
            "diastolic": dia, "temperature": "37,2", "heart_rate": "72",
            "csrf_token": token}, follow_redirects=False)
        assert resp.status_code == 303, resp.text
    record = c.get(f"/app/patients/{rid}").text
    assert "Toux persistante" in record and "Pas de fièvre." in record
    assert record.count('role="img"') == 2  # weight and blood pressure
    assert "Poids : 2 mesure(s) du 01/03/2024 au 01/06/2024, de 70 à 71,5 kg" in record
    assert "<td>128</td><td>82</td>" in record
    assert "<polyline" in record and "style=" not in record
    # The stored resources: LOINC-coded vital signs, a text/plain DocumentReference.
    found, _ = _all(people, rid)
    codes = sorted(r["code"]["coding"][0]["code"] for r in found if
                   r["resourceType"] == "Observation")
    assert codes == sorted([charts.WEIGHT, charts.HEIGHT, charts.TEMPERATURE,
                            charts.HEART_RATE, charts.BP_PANEL] * 2)
    bp = next(r for r in found if r.get("code", {}).get("coding", [{}])[0].get("code")
              == charts.BP_PANEL)
    assert {c["code"]["coding"][0]["code"] for c in bp["component"]} == {charts.SYSTOLIC,
                                                                       charts.DIASTOLIC}
    assert bp["effectiveDateTime"] == "2024-03-01T08:30:00Z"  # Paris time, stored in UTC
    note = next(r for r in found if r["resourceType"] == "DocumentReference")
    assert note["type"]["coding"][0]["code"] == "11506-3"
    assert base64.b64decode(note["content"][0]["attachment"]["data"]).decode().startswith(
        "Auscultation")


def _all(people: People, rid: str) -> tuple[list[dict[str, Any]], int]:
    gate = people.app.state.runtime.gate
    with gate.open(Actor.system("test"), readonly=True) as door:
        found, total = door.everything(rid, count=100, offset=0)
    return [orjson.loads(f.body or b"{}") for f in found], total


def test_documents_upload_view_and_refusals(people: People) -> None:
    doctor = _doctor(people)
    rid = _create(people)
    c = people.client
    page = c.get(f"/app/patients/{rid}/documents/new")
    token = csrf_of(page.text)
    pdf, png = make_pdf(), make_png()

    def upload(name: str, data: bytes, media: str, **form: str) -> Any:
        return c.post(f"/app/patients/{rid}/documents/new",
                      data={"kind": "lab", "title": "Bilan sanguin", "csrf_token": token,
                            **form},
                      files={"file": (name, data, media)}, follow_redirects=False)

    assert upload("a.pdf", pdf, "application/pdf", csrf_token="forged").status_code == 403
    wrong = upload("a.pdf", png, "application/pdf")  # a PNG declared as a PDF
    assert wrong.status_code == 400 and "ne correspond pas à son type" in wrong.text
    text = upload("a.txt", b"hello", "text/plain")
    assert text.status_code == 400 and "seuls les PDF, PNG et JPEG" in text.text
    assert upload("a.pdf", b"", "application/pdf").status_code == 400
    assert upload("a.pdf", pdf, "application/pdf").status_code == 303
    assert upload("b.png", png, "image/png", kind="imaging", title="Radio").status_code == 303
    record = c.get(f"/app/patients/{rid}").text
    ids = re.findall(rf'href="/app/patients/{rid}/documents/([0-9a-f-]+)"', record)
    assert len(ids) == 2
    before = len(people.audit(actor=f"user:{doctor.user_id}", action="read",
                              rtype="DocumentReference"))
    views = [c.get(f"/app/patients/{rid}/documents/{i}") for i in ids]
    assert any("<iframe" in v.text for v in views) and any("<img" in v.text for v in views)
    fragment = c.get(f"/app/patients/{rid}/documents/{ids[0]}", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and "document-view" in fragment.text
    contents = {c.get(f"/app/patients/{rid}/documents/{i}/content").content for i in ids}
    assert contents == {pdf, png}
    resp = c.get(f"/app/patients/{rid}/documents/{ids[0]}/content")
    assert resp.headers["content-disposition"].startswith("inline")
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["content-security-policy"] == DOCUMENT_CSP
    assert resp.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in DOCUMENT_CSP and "script" not in DOCUMENT_CSP
    # Every view went through the gate: one audited read per page, fragment and content.
    after = people.audit(actor=f"user:{doctor.user_id}", action="read",
                         rtype="DocumentReference")
    assert len(after) - before == 6 and all(a.outcome == "success" for a in after)
    # Another patient's id in the URL does not serve the document.
    other = _create(people, family="Martin", ins_nir="", ins_key="")
    assert c.get(f"/app/patients/{other}/documents/{ids[0]}/content").status_code == 404


def test_documents_over_the_size_limit(instance: Instance) -> None:
    people = make_people(instance, max_body_bytes=200_000)
    try:
        _doctor(people)
        rid = _create(people)
        page = people.client.get(f"/app/patients/{rid}/documents/new")
        limit = documents.limit(people.app.state.runtime)
        assert f'data-max-bytes="{limit}"' in page.text
        big = make_pdf() + b"%" * (limit + 10)
        resp = people.client.post(f"/app/patients/{rid}/documents/new", data={
            "kind": "lab", "title": "Gros fichier", "csrf_token": csrf_of(page.text)},
            files={"file": ("big.pdf", big, "application/pdf")})
        assert resp.status_code == 413 and "taille maximale" in resp.text
        assert resp.headers["content-type"].startswith("text/html")
        assert _all(people, rid)[1] == 1  # the patient only
    finally:
        people.close()


def test_break_glass(people: People) -> None:
    gate = people.app.state.runtime.gate
    with gate.open(Actor.user("x", "practitioner", practitioner_id="p-else")) as door:
        stranger = door.create("Patient", {"resourceType": "Patient",
                                           "name": [{"family": "Lointain"}]}).rid
    doctor = _doctor(people)
    c = people.client
    page = c.get(f"/app/patients/{stranger}")
    assert page.status_code == 403 and "Accès d'urgence" in page.text
    assert "Lointain" not in page.text and "<title>Accès d'urgence · Hygie</title>" in page.text
    token = csrf_of(page.text)
    short = c.post(f"/app/patients/{stranger}/break-glass", data={"reason": "abc",
                                                                  "csrf_token": token})
    assert short.status_code == 400 and "Le motif est obligatoire" in short.text
    assert c.post(f"/app/patients/{stranger}/break-glass",
                  data={"reason": "Patient inconscient"}).status_code == 403  # no CSRF token
    resp = c.post(f"/app/patients/{stranger}/break-glass", data={
        "reason": "Patient inconscient aux urgences", "csrf_token": token},
        follow_redirects=False)
    assert resp.status_code == 303
    record = c.get(f"/app/patients/{stranger}")
    assert record.status_code == 200 and "LOINTAIN" in record.text
    text = html.unescape(record.text)
    assert "Accès d'urgence (bris de glace) en cours." in text
    assert re.search(r"ouvert jusqu'au \d\d/\d\d/\d{4} à \d\d:\d\d\.", text)
    entries = people.audit(actor=f"user:{doctor.user_id}", action="break-glass")
    assert len(entries) == 1 and entries[0].patient == stranger
    assert "Patient inconscient" not in str(entries[0])  # the reason is encrypted elsewhere
    # A nonexistent id: the same form, then nothing is granted.
    ghost = "00000000-0000-0000-0000-000000000000"
    assert c.get(f"/app/patients/{ghost}").status_code == 403
    refused = c.post(f"/app/patients/{ghost}/break-glass", data={
        "reason": "Patient inconscient aux urgences", "csrf_token": token})
    assert refused.status_code == 403
    assert len(people.audit(action="break-glass")) == 1


def test_secretary_and_admin(people: People) -> None:
    sec = people.person("sec.clin", "secretary")
    web_sign_in(people, sec)
    rid = _create(people)
    c = people.client
    record = c.get(f"/app/patients/{rid}")
    assert "Modifier l'identité" in html.unescape(record.text)
    assert "Ajouter une note" not in record.text
    assert c.get(f"/app/patients/{rid}/notes/new").status_code == 403
    assert c.get(f"/app/patients/{rid}/edit").status_code == 200
    admin = people.person("adm.clin", "admin")
    people.client.cookies.clear()
    web_sign_in(people, admin)
    assert c.get("/app/patients/new").status_code == 403
    assert c.get(f"/app/patients/{rid}/edit").status_code == 403
