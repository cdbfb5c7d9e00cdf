"""The secretary's pages in Chromium: identities, administrative edits, the week calendar;
and no clinical content, neither on a page nor through the API with the same session."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .conftest import Site, check_axe, screenshot, sign_in


def test_secretary_edits_contact_details(page: Any, site: Site) -> None:
    sign_in(page, site, "secretaire")
    page.get_by_role("link", name="Identités").click()
    page.wait_for_url("**/app/identities")
    assert page.title() == "Identités des patients · Hygie"
    assert "Camille DURAND" in page.locator("section[aria-labelledby=recent-title]").inner_text()
    assert "Paul LOINTAIN" in page.content()  # the whole practice, not a care relationship
    check_axe(page)
    # Search (HTMX, POST: the name appears in no URL).
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.get_by_label("Nom ou prénom").fill("Durand")
    page.get_by_role("button", name="Rechercher").click()
    results = page.locator("#results")
    results.get_by_role("link", name="Camille DURAND", exact=True).wait_for()
    assert posted and all("urand" not in url for url in posted)
    check_axe(page)
    screenshot(page, "secretary-identities")
    results.get_by_role("link", name="Camille DURAND", exact=True).click()
    page.wait_for_url(re.compile(r".*/app/identities/[0-9a-f-]+$"))
    assert page.title() == "Identité administrative · Hygie"
    assert page.get_by_label("Commune").input_value() == "Lyon"
    page.get_by_label("Téléphone").fill("pas un numéro!")
    page.get_by_role("button", name="Enregistrer").click()
    assert "téléphone invalide" in page.locator(".error").inner_text()
    check_axe(page)
    page.get_by_label("Téléphone").fill("04 78 00 00 01")
    page.get_by_label("Adresse (numéro et voie)").fill("3 rue de la République")
    page.get_by_label("Code postal").fill("69002")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("Les coordonnées sont enregistrées.").wait_for()
    assert page.get_by_label("Téléphone").input_value() == "04 78 00 00 01"
    assert page.get_by_label("Code postal").input_value() == "69002"
    # The rest of the identity is untouched (INS still qualified), through the gate.
    assert "INS qualifiée" in page.locator(".identity").inner_text()
    check_axe(page)


def test_secretary_cannot_open_clinical_content(page: Any, site: Site) -> None:
    sign_in(page, site, "secretaire")
    page.goto(f"/app/patients/{site.patients['durand']}")
    assert "pas le contenu clinique" in page.locator("main").inner_text()
    assert "Pénicilline" not in page.content()
    # The same session cookie on the API: clinical resources are refused by the policy.
    api = page.request.get(f"/fhir/AllergyIntolerance?patient={site.patients['durand']}")
    assert api.status == 403
    assert "Pénicilline" not in api.text()
    everything = page.request.get(f"/fhir/Patient/{site.patients['durand']}/$everything")
    assert everything.status == 403
    check_axe(page)


def test_secretary_books_and_cancels_an_appointment(page: Any, site: Site) -> None:
    sign_in(page, site, "secretaire")
    page.goto("/app/identities")
    page.locator("li", has_text="Camille DURAND").get_by_role(
        "link", name="Prendre rendez-vous").click()
    page.wait_for_url("**/app/calendar/new?patient=*")
    assert "Camille DURAND" in page.locator("main").inner_text()
    check_axe(page)
    day = datetime.now(ZoneInfo("Europe/Paris")).date()
    page.get_by_label("Praticien").select_option(label="dr.martin")
    page.get_by_label("Date", exact=True).fill(day.isoformat())
    page.get_by_label("Heure").fill("10:30")
    page.get_by_label("Durée (minutes)").select_option("45")
    page.get_by_role("button", name="Enregistrer le rendez-vous").click()
    page.wait_for_url("**/app/calendar?week=*")
    page.get_by_text("Le rendez-vous est enregistré.").wait_for()
    today = page.locator(f"section[aria-labelledby='day-{day.isoformat()}']")
    assert "10:30–11:15" in today.inner_text()
    assert "Camille DURAND" in today.inner_text() and "avec dr.martin" in today.inner_text()
    check_axe(page)
    screenshot(page, "calendar")
    # HTMX between weeks: the next week is empty, the previous one has the appointment.
    monday = day - timedelta(days=day.weekday())
    page.get_by_role("link", name="Semaine suivante").click()
    page.locator(f"#day-{(monday + timedelta(days=7)).isoformat()}").wait_for()
    assert page.locator("ul.appointments li").count() == 0
    assert page.url.endswith(f"week={(monday + timedelta(days=7)).isoformat()}")
    page.get_by_role("link", name="Semaine précédente").click()
    page.locator(f"#day-{monday.isoformat()}").wait_for()
    assert "Camille DURAND" in page.locator("#week").inner_text()
    check_axe(page)
    # Cancel: the appointment stays, struck through, marked "Annulé".
    today = page.locator(f"section[aria-labelledby='day-{day.isoformat()}']")
    today.get_by_role("button", name="Annuler").click()
    page.get_by_text("Le rendez-vous est annulé.").wait_for()
    today = page.locator(f"section[aria-labelledby='day-{day.isoformat()}']")
    assert "Annulé" in today.inner_text()
    assert today.get_by_role("button", name="Annuler").count() == 0
    check_axe(page)


def test_practitioner_sees_only_appointments_of_patients_in_care(page: Any,
                                                                 site: Site) -> None:
    """The calendar reads through the gate: a practitioner's row filter applies."""
    sign_in(page, site, "dr.martin")
    resp = page.goto("/app/calendar")
    assert resp is not None and resp.status == 200
    assert "LOINTAIN" not in page.content()
    check_axe(page)
