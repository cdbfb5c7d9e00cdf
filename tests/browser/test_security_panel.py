"""The "Sécurité" panel in Chromium: sessions ended from another browser, sign-ins, codes."""

from __future__ import annotations

from typing import Any

from .conftest import Site, check_axe, screenshot, sign_in


def _context(browser: Any, site: Site) -> Any:
    context = browser.new_context(base_url=site.base, viewport={"width": 1280, "height": 900},
                                  locale="fr-FR")
    context.set_default_timeout(10_000)
    return context


def test_security_panel_ends_another_session(page: Any, browser: Any, site: Site) -> None:
    # A refused password first: it shows in the recent sign-ins.
    page.goto("/")
    page.get_by_label("Identifiant").fill("dr.martin")
    page.get_by_label("Mot de passe").fill("not the password at all")
    page.get_by_role("button", name="Continuer").click()
    page.locator(".error").wait_for()
    other = _context(browser, site)
    third = _context(browser, site)
    try:
        laptop = other.new_page()
        sign_in(laptop, site, "dr.martin")
        sign_in(page, site, "dr.martin")
        page.get_by_role("link", name="Sécurité").click()
        page.wait_for_url("**/app/security")
        assert page.title() == "Sécurité · Hygie"
        sessions = page.locator("ul.sessions li")
        assert sessions.count() == 2
        assert page.locator("ul.sessions .badge", has_text="Cette session").count() == 1
        signins = page.locator("ul.signins").inner_text()
        assert "Connexion réussie" in signins and "Mot de passe refusé" in signins
        assert "Activée" in page.locator("section[aria-labelledby=mfa-title]").inner_text()
        check_axe(page)
        screenshot(page, "security")
        # End the laptop's session: the laptop is signed out at its next request.
        page.get_by_role("button", name="Fermer cette session").click()
        page.get_by_text("La session a été fermée.").wait_for()
        assert page.locator("ul.sessions li").count() == 1
        laptop.goto("/app")
        laptop.wait_for_url("**/?notice=expired")
        page.goto("/app")  # this one still works
        assert page.url.endswith("/app")
        # End every other session at once.
        tablet = third.new_page()
        sign_in(tablet, site, "dr.martin")
        page.goto("/app/security")
        assert page.locator("ul.sessions li").count() == 2
        page.get_by_role("button", name="Fermer toutes les autres sessions").click()
        page.get_by_text("Les autres sessions ont été fermées.").wait_for()
        tablet.goto("/app")
        tablet.wait_for_url("**/?notice=expired")
        check_axe(page)
    finally:
        other.close()
        third.close()


def test_recovery_codes_need_a_fresh_totp_code(page: Any, site: Site) -> None:
    sign_in(page, site, "secretaire")
    page.goto("/app/security")
    left = page.locator("section[aria-labelledby=mfa-title] dd").nth(1).inner_text()
    assert left == "10"
    page.get_by_label("Code à 6 chiffres de votre application").fill("000000")
    page.get_by_role("button", name="Générer de nouveaux codes de secours").click()
    assert "n'est pas valide" in page.locator(".error").inner_text()
    assert page.locator("ol.codes li").count() == 0
    check_axe(page)  # the page with an error message
    page.get_by_label("Code à 6 chiffres de votre application").fill(site.totp("secretaire"))
    page.get_by_role("button", name="Générer de nouveaux codes de secours").click()
    codes = page.locator("ol.codes li")
    codes.first.wait_for()
    assert codes.count() == 10
    new_code = codes.first.inner_text().strip()
    check_axe(page)
    # A new code signs in (the second factor accepts it once).
    context = page.context
    context.clear_cookies()
    page.goto("/")
    page.get_by_label("Identifiant").fill("secretaire")
    page.get_by_label("Mot de passe").fill(site.accounts["secretaire"].password)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/signin/code")
    page.locator("#code").fill(new_code)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/app")
    page.goto("/app/security")
    assert page.locator("section[aria-labelledby=mfa-title] dd").nth(1).inner_text() == "9"
