"""The patient's page in Chromium: who accessed my record, refusals and emergencies included."""

from __future__ import annotations

from typing import Any

from .conftest import Site, _enrol, check_axe, screenshot, sign_in


def test_patient_sees_every_access_to_their_record(page: Any, browser: Any,
                                                   site: Site) -> None:
    stranger = site.patients["stranger"]
    _enrol(site, "paul.lointain", "patient", patient_id=stranger)
    # Dr Martin has no care relationship with Paul: refused first, then break-glass.
    sign_in(page, site, "dr.martin")
    resp = page.goto(f"/app/patients/{stranger}")
    assert resp is not None and resp.status == 403
    reason = "Patient inconscient, adressé par le SAMU"
    page.get_by_label("Motif de l'accès d'urgence").fill(reason)
    page.get_by_role("button", name="Ouvrir le dossier en urgence").click()
    page.locator(".break-glass-banner").wait_for()
    # A practitioner has no access-history page of their own.
    denied = page.goto("/app/access-history")
    assert denied is not None and denied.status == 403
    page.context.clear_cookies()

    patient_context = browser.new_context(base_url=site.base, locale="fr-FR",
                                          viewport={"width": 1024, "height": 768})
    try:
        mine = patient_context.new_page()
        mine.set_default_timeout(10_000)
        # Signing in lands on /app, which sends a patient on to their access history.
        mine.goto("/")
        mine.get_by_label("Identifiant").fill("paul.lointain")
        mine.get_by_label("Mot de passe").fill(site.accounts["paul.lointain"].password)
        mine.get_by_role("button", name="Continuer").click()
        mine.wait_for_url("**/signin/code")
        mine.locator("#code").fill(site.totp("paul.lointain"))
        mine.get_by_role("button", name="Se connecter").click()
        mine.wait_for_url("**/app/access-history")
        assert mine.get_by_role("link", name="Mes patients").count() == 0
        assert mine.title() == "Accès à mon dossier · Hygie"
        rows = mine.locator("table tbody tr")
        texts = [rows.nth(i).inner_text() for i in range(rows.count())]
        emergency = [t for t in texts if "Accès d'urgence" in t]
        assert len(emergency) == 1 and reason in emergency[0] and "dr.martin" in emergency[0]
        assert "Praticien" in emergency[0]
        assert any("refusé" in t and "dr.martin" in t for t in texts)  # the first refusal
        assert any("Consultation du dossier complet" in t and "autorisé" in t for t in texts)
        assert "1 accès d'urgence (bris de glace) figure dans la liste" in mine.content()
        check_axe(mine)
        screenshot(mine, "access-history")
        # The page's own consultation is audited, and not listed as someone else's access.
        mine.reload()
        again = mine.locator("table tbody tr").count()
        assert again == len(texts)
    finally:
        patient_context.close()
