"""The web app over HTTP (no browser): headers, CSRF, sessions, i18n, static files, routes.

The browser suite (tests/browser) drives the same pages in Chromium; these tests cover what is
quicker to check at the HTTP level, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.routing import APIRoute

from hygie.access.actor import Actor
from hygie.crypto.totp import totp_at
from hygie.web import pages
from hygie.web.i18n import LOCALE_DIR
from hygie.web.security import CSP
from hygie.web.templating import STATIC, static_url

from .conftest import Instance
from .people import People, Person, make_people

WEB = Path(pages.__file__).parent
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def web_sign_in(people: People, person: Person) -> Any:
    c = people.client
    token = csrf_of(c.get("/").text)
    resp = c.post("/signin", data={"username": person.username, "password": person.password,
                                   "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/signin/code"
    page = c.get("/signin/code")
    people.forget_last_step(person)
    resp = c.post("/signin/code", data={"code": totp_at(person.secret, time.time()),
                                        "csrf_token": csrf_of(page.text)},
                  follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/app", resp.text
    return resp


def test_web_pages_carry_the_web_security_headers(people: People) -> None:
    resp = people.client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == CSP
    assert "script-src 'self'; style-src 'self'" in CSP and "unsafe" not in CSP
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "camera=()" in resp.headers["permissions-policy"]
    assert resp.headers["cache-control"] == "no-store"
    assert len(resp.headers.get_list("content-security-policy")) == 1
    # Cookies: HttpOnly, SameSite=Strict, Secure over https.
    cookie = resp.headers["set-cookie"]
    assert "hygie_pre=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" in cookie
    # The API keeps its own headers.
    api = people.client.get("/fhir/metadata")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_static_files_are_versioned_and_cached(people: People) -> None:
    url = static_url("css/hygie.css")
    resp = people.client.get(url)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/css")
    assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    wrong = url.replace(url.split("/")[2], "0" * 16)
    assert people.client.get(wrong).status_code == 404
    assert people.client.get("/static/x/../../settings.py").status_code == 404


def test_vendored_htmx_matches_its_provenance_note() -> None:
    note = (STATIC / "vendor" / "PROVENANCE.md").read_text()
    digest = hashlib.sha256((STATIC / "vendor" / "htmx.min.js").read_bytes()).hexdigest()
    assert digest in note
    axe = Path(__file__).parent / "fixtures" / "vendor"
    assert hashlib.sha256((axe / "axe.min.js").read_bytes()).hexdigest() in (
        axe / "PROVENANCE.md").read_text()
    # axe-core is for tests only: never in the served static files.
    assert not list(STATIC.rglob("axe*"))


def test_state_changes_need_a_csrf_token(people: People) -> None:
    c = people.client
    c.get("/")
    resp = c.post("/signin", data={"username": "x", "password": "y"})
    assert resp.status_code == 403 and "jeton de sécurité" in resp.text
    resp = c.post("/signin", data={"username": "x", "password": "y", "csrf_token": "forged"})
    assert resp.status_code == 403
    other = people.other_client()
    foreign = csrf_of(other.get("/").text)  # another browser's token
    assert c.post("/signin", data={"username": "x", "password": "y",
                                   "csrf_token": foreign}).status_code == 403
    token = csrf_of(c.get("/").text)
    resp = c.post("/signin", data={"username": "x", "password": "wrong password",
                                   "csrf_token": token})
    assert resp.status_code == 401 and "Identifiant ou mot de passe incorrect." in resp.text


def test_session_token_is_bound_to_the_session(people: People) -> None:
    person = people.person("dr.web", "practitioner", practitioner_id="p-web")
    pre_token = csrf_of(people.client.get("/").text)
    web_sign_in(people, person)
    home = people.client.get("/app")
    assert home.status_code == 200 and home.headers["cache-control"] == "no-store"
    token = csrf_of(home.text)
    assert token != pre_token
    data = {"name": "durand"}
    assert people.client.post("/app/patients/search",
                              data={**data, "csrf_token": pre_token}).status_code == 403
    resp = people.client.post("/app/patients/search", data=data,
                              headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert resp.status_code == 200 and "Aucun patient trouvé" in resp.text
    assert "<html" not in resp.text  # an HTMX fragment


def test_every_state_changing_route_checks_csrf() -> None:
    checked = {pages.public_form, pages.session_form}
    for route in pages.router.routes:
        assert isinstance(route, APIRoute)
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            deps = {d.call for d in route.dependant.dependencies}
            if route.path == "/csp-report":  # browsers post these on their own
                continue
            if route.path == "/app/signout":  # checks the token itself when a session is live
                continue
            assert deps & checked, f"{route.path} does not check the CSRF token"
        else:
            assert route.methods <= {"GET", "HEAD"}


def test_sign_in_search_record_and_sign_out(people: People) -> None:
    person = people.person("dr.flow", "practitioner", practitioner_id="p-flow")
    actor = Actor.user(person.user_id, "practitioner", practitioner_id="p-flow")
    gate = people.app.state.runtime.gate
    with gate.open(actor) as door:
        found = door.create("Patient", {"resourceType": "Patient", "birthDate": "1995-10-12",
                                        "name": [{"family": "Durand", "given": ["Camille"]}],
                                        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8",
                                                        "value": "295109912611193"}]})
    web_sign_in(people, person)
    home = people.client.get("/app")
    assert "Camille DURAND" in home.text and "INS qualifiée" in home.text
    resp = people.client.post("/app/patients/search", data={
        "ins": "2951 0991 2611 193", "csrf_token": csrf_of(home.text)})
    assert resp.status_code == 200 and f"/app/patients/{found.rid}" in resp.text
    bad = people.client.post("/app/patients/search", data={
        "ins": "295109912611194", "csrf_token": csrf_of(home.text)})
    assert bad.status_code == 400 and "INS invalide" in bad.text
    record = people.client.get(f"/app/patients/{found.rid}")
    assert record.status_code == 200 and "Aucune allergie connue." in record.text
    assert "<title>Dossier patient · Hygie</title>" in record.text
    # One audit entry for the record view: the gate's $everything (Patient included).
    reads = people.audit(actor=f"user:{person.user_id}", action="everything", rid=found.rid)
    assert reads and reads[-1].outcome == "success"
    # A search by GET (values in the URL) does not exist.
    assert people.client.get("/app/patients/search?name=durand").status_code in (403, 404)
    out = people.client.post("/app/signout", data={"csrf_token": csrf_of(record.text)},
                             follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/?notice=signed-out"
    assert people.client.get("/app", follow_redirects=False).headers["location"] == (
        "/?notice=expired")


def test_refresh_rotates_an_expired_access_token(instance: Instance) -> None:
    people = make_people(instance, access_token_seconds=1)
    try:
        person = people.person("dr.rot", "practitioner", practitioner_id="p-rot")
        web_sign_in(people, person)
        first = people.client.cookies.get("hygie_session")
        time.sleep(1.5)
        resp = people.client.get("/app")
        assert resp.status_code == 200
        assert "hygie_session=" in resp.headers["set-cookie"]
        assert people.client.cookies.get("hygie_session") != first
    finally:
        people.close()


def test_idle_timeout_is_enforced_by_the_server(instance: Instance) -> None:
    people = make_people(instance, session_idle_seconds=1)
    try:
        person = people.person("dr.idle", "practitioner", practitioner_id="p-idle")
        web_sign_in(people, person)
        time.sleep(1.5)
        resp = people.client.get("/app", follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/?notice=expired"
        htmx = people.client.get("/app", headers={"HX-Request": "true"},
                                 follow_redirects=False)
        assert htmx.headers["hx-redirect"] == "/?notice=expired"
    finally:
        people.close()


def test_lockout_is_explained(instance: Instance) -> None:
    people = make_people(instance, lockout_threshold=2)
    try:
        people.person("dr.lock", "practitioner", practitioner_id="p-lock")
        for _ in range(2):
            token = csrf_of(people.client.get("/").text)
            people.client.post("/signin", data={"username": "dr.lock", "password": "nope nope",
                                                "csrf_token": token})
        token = csrf_of(people.client.get("/").text)
        resp = people.client.post("/signin", data={"username": "dr.lock",
                                                   "password": "nope nope", "csrf_token": token})
        assert resp.status_code == 429 and "Trop de tentatives" in resp.text
    finally:
        people.close()


def test_csp_reports_are_counted_and_logged_without_urls(
        people: People, caplog: pytest.LogCaptureFixture) -> None:
    before = pages.REPORTS.count
    report = {"csp-report": {"document-uri": "https://x/app/patients/secret-id?name=Durand",
                             "effective-directive": "script-src-elem",
                             "blocked-uri": "https://evil.example/x.js"}}
    with caplog.at_level(logging.WARNING, logger="hygie.web"):
        resp = people.client.post("/csp-report", content=orjson.dumps(report),
                                  headers={"Content-Type": "application/csp-report"})
    assert resp.status_code == 204
    assert pages.REPORTS.count == before + 1
    assert "script-src-elem" in caplog.text
    assert "Durand" not in caplog.text and "evil" not in caplog.text
    assert people.client.post("/csp-report", content=b"{").status_code == 400


def test_unknown_web_page_is_an_html_page(people: People) -> None:
    resp = people.client.get("/app/nowhere")
    assert resp.status_code in (303, 404)
    resp = people.client.get("/activation/nowhere")
    assert resp.status_code == 404 and "Page introuvable." in resp.text
    assert resp.headers["content-type"].startswith("text/html")


def test_english_catalogue_is_complete() -> None:
    """Every message of the templates and of the package has an English translation."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n",
                                     "trim_blocks": "true", "lstrip_blocks": "true"}}
    keywords = {"_": None, "gettext": None, "N_": None}
    ids = {m[2] for m in extract_from_dir(str(WEB), method_map, options, keywords=keywords)}
    with (LOCALE_DIR / "en" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="en")
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    assert len(ids) > 100
    missing = sorted(str(i) for i in ids if i not in translated)
    assert missing == [], "untranslated (docs/web.md, i18n workflow): " + "; ".join(missing)


def test_language_from_query_cookie_and_accept_language(people: People) -> None:
    c = people.client
    assert "<title>Sign in · Hygie</title>" in c.get(
        "/", headers={"Accept-Language": "en-GB,en;q=0.8"}).text
    assert "<title>Connexion · Hygie</title>" in c.get(
        "/", headers={"Accept-Language": "de, fr;q=0.5"}).text
    resp = c.get("/?lang=en")
    assert "hygie_lang=en" in resp.headers["set-cookie"]
    assert "<title>Sign in · Hygie</title>" in c.get("/").text
