"""The web app in Debian's Chromium: sign-in with a real TOTP code, search, record, roles."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from hygie.crypto.totp import totp_at

from .conftest import INS_DURAND, Site, check_axe, screenshot, sign_in


def test_practitioner_signs_in_searches_and_opens_a_record(page: Any, site: Site) -> None:
    page.goto("/")
    assert page.title() == "Connexion · Hygie"
    assert page.locator("#username").get_attribute("autocomplete") == "username"
    assert page.locator("#password").get_attribute("autocomplete") == "current-password"
    check_axe(page)
    screenshot(page, "sign-in")
    sign_in(page, site, "dr.martin")
    assert page.get_by_text("Connexion sécurisée · dossiers chiffrés").is_visible()
    assert page.locator(".who .user").inner_text() == "dr.martin"
    assert page.locator(".who .role").inner_text() == "Praticien"
    mine = page.locator("section[aria-labelledby=mine-title]")
    assert "Camille DURAND" in mine.inner_text()
    assert "Ned" in mine.inner_text()
    assert "Lointain" not in mine.inner_text()  # not in Dr Martin's care
    check_axe(page)
    # Search by INS (HTMX, POST: the INS appears in no URL).
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.get_by_label("INS (matricule INS, 15 caractères)").fill(INS_DURAND)
    page.get_by_role("button", name="Rechercher").click()
    results = page.locator("#results")
    results.get_by_role("link", name="Camille DURAND").wait_for()
    assert all(INS_DURAND not in url for url in posted) and posted
    assert "INS qualifiée" in results.inner_text()
    check_axe(page)
    screenshot(page, "home")
    # A patient outside the care relationship is not found.
    page.get_by_label("INS (matricule INS, 15 caractères)").fill("")
    page.get_by_label("Nom ou prénom").fill("Lointain")
    page.get_by_role("button", name="Rechercher").click()
    page.get_by_text("Aucun patient trouvé").wait_for()
    # The record of the Synthea patient: identity, summary, timeline.
    page.get_by_label("Nom ou prénom").fill("Hintz")
    page.get_by_role("button", name="Rechercher").click()
    results.get_by_role("link").first.click()
    page.wait_for_url(re.compile(r".*/app/patients/[0-9a-f-]+$"))
    assert page.title() == "Dossier patient · Hygie"  # no patient data in titles
    assert "INS provisoire" in page.locator(".identity").inner_text()
    timeline = page.locator("ol.timeline li")
    assert timeline.count() > 5
    assert page.locator("ol.timeline .badge", has_text="Consultation").count() > 0
    check_axe(page)
    screenshot(page, "patient-record")
    # Camille Durand's record: a qualified INS, an allergy, empty states elsewhere.
    page.goto(f"/app/patients/{site.patients['durand']}")
    assert "INS qualifiée" in page.locator(".identity").inner_text()
    assert "Pénicilline" in page.locator("section[aria-labelledby=allergies-title]").inner_text()
    assert page.get_by_text("Aucun traitement enregistré.").is_visible()
    assert page.get_by_text("Aucune consultation, note, observation ni document.").is_visible()
    check_axe(page)
    # Sign out: the session stops at once.
    page.get_by_role("button", name="Se déconnecter").click()
    page.get_by_text("Vous êtes déconnecté.").wait_for()
    page.goto("/app")
    page.wait_for_url("**/?notice=expired")


def test_record_outside_the_care_relationship_is_refused(page: Any, site: Site) -> None:
    sign_in(page, site, "dr.martin")
    resp = page.goto(f"/app/patients/{site.patients['stranger']}")
    assert resp is not None and resp.status == 403
    assert "bris de glace" in page.locator("main").inner_text()
    assert "Lointain" not in page.content()
    check_axe(page)


def test_secretary_sees_identity_but_no_clinical_content(page: Any, site: Site) -> None:
    sign_in(page, site, "secretaire")
    assert page.locator(".who .role").inner_text() == "Secrétariat"
    page.goto(f"/app/patients/{site.patients['durand']}")
    assert page.locator("h1").inner_text() == "Camille DURAND"
    assert "pas le contenu clinique" in page.locator("main").inner_text()
    assert page.locator("ol.timeline").count() == 0
    assert "Pénicilline" not in page.content()
    check_axe(page)


def test_admin_cannot_open_a_record(page: Any, site: Site) -> None:
    sign_in(page, site, "admin.sys")
    assert "séparation des tâches" in page.locator("main").inner_text()
    resp = page.goto(f"/app/patients/{site.patients['durand']}")
    assert resp is not None and resp.status == 403
    assert "Durand" not in page.content() and "DURAND" not in page.content()
    check_axe(page)


def test_first_sign_in_activation(page: Any, site: Site) -> None:
    code = site.add_account("dr.nouveau", "practitioner", practitioner_id="pract-new")
    page.goto("/activation")
    check_axe(page)
    page.get_by_label("Code d'activation").fill(code)
    page.get_by_label("Nouveau mot de passe").fill("orange tulip carriage 2024")
    page.get_by_label("Confirmez le mot de passe").fill("orange tulip carriage 2024")
    page.get_by_role("button", name="Continuer").click()
    page.locator("figure.qr svg").wait_for()
    assert page.locator("ol.codes li").count() == 10
    check_axe(page)
    screenshot(page, "activation")
    secret_text = page.locator("code.secret").inner_text().replace(" ", "")
    import base64

    secret = base64.b32decode(secret_text + "=" * (-len(secret_text) % 8))
    page.locator("#code").fill("000000" if totp_at(secret, time.time()) != "000000" else "111111")
    page.get_by_role("button", name="Activer mon compte").click()
    assert "n'est pas valide" in page.locator(".error").inner_text()
    page.locator("#code").fill(totp_at(secret, time.time()))
    page.get_by_role("button", name="Activer mon compte").click()
    page.get_by_text("Votre compte est activé").wait_for()
    # And the new account signs in (the code of the next step: the last one was used).
    page.get_by_label("Identifiant").fill("dr.nouveau")
    page.get_by_label("Mot de passe").fill("orange tulip carriage 2024")
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/signin/code")
    check_axe(page)
    page.locator("#code").fill(totp_at(secret, time.time() + 30))
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/app")
    assert "Aucun patient suivi" in page.locator("main").inner_text()


def test_wrong_password_and_english(page: Any, site: Site) -> None:
    page.goto("/?lang=en")
    assert page.title() == "Sign in · Hygie"
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("Username").fill("dr.martin")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Continue").click()
    assert page.locator(".error").inner_text() == "Wrong username or password."
    check_axe(page)  # the page with an error message
    page.goto("/")  # the language is remembered
    assert page.title() == "Sign in · Hygie"
    page.get_by_role("link", name="Français").click()
    assert page.title() == "Connexion · Hygie"


def test_idle_warning_then_sign_out(page: Any, site: Site) -> None:
    page.clock.install()
    sign_in(page, site, "dr.martin")
    warning = page.locator("#idle-warning")
    assert warning.is_hidden()
    idle = site.settings.session_idle_seconds
    page.clock.run_for((idle - 120 + 1) * 1000)
    assert warning.is_visible()
    check_axe(page)
    page.get_by_role("button", name="Rester connecté").click()
    warning.wait_for(state="hidden")
    page.clock.run_for((idle + 1) * 1000)
    page.wait_for_url("**/?notice=expired")
    assert "Votre session a expiré" in page.locator("main").inner_text()


def test_tablet_layout(browser: Any, site: Site) -> None:
    context = browser.new_context(base_url=site.base, viewport={"width": 768, "height": 1024},
                                  locale="fr-FR")
    try:
        pg = context.new_page()
        sign_in(pg, site, "dr.martin")
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 768  # no horizontal scrolling on a tablet
        check_axe(pg)
    finally:
        context.close()


def test_state_changes_need_the_csrf_token(site: Site) -> None:
    with httpx.Client(base_url=site.base, timeout=30) as client:
        client.get("/")  # a pre-session cookie
        resp = client.post("/signin", data={"username": "dr.martin", "password": "x"})
        assert resp.status_code == 403
        assert "jeton de sécurité" in resp.text
        assert resp.headers["content-security-policy"].startswith("default-src 'self'")
