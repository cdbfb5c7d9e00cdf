"""The record's timeline in Chromium: 30 items, then "Voir plus" appends the rest (HTMX)."""

from __future__ import annotations

from typing import Any

from .conftest import Site, check_axe, sign_in


def test_timeline_shows_30_items_then_more(page: Any, site: Site) -> None:
    sign_in(page, site, "dr.martin")
    page.goto(f"/app/patients/{site.patients['ned']}")
    items = page.locator("ol#timeline > li")
    assert items.count() == 30
    more = page.get_by_role("button", name="Voir plus")
    status = page.locator("#timeline-more [role=status]")
    assert status.inner_text().startswith("Les 30 éléments les plus récents sont affichés sur")
    total = int(status.inner_text().split("sur ")[1].rstrip(". "))
    assert total > 30
    first = items.first.inner_text()
    url = page.url
    more.click()
    page.get_by_text(f"Tous les éléments sont affichés ({total}).").wait_for()
    assert items.count() == total and items.first.inner_text() == first
    assert page.get_by_role("button", name="Voir plus").count() == 0
    assert page.url == url  # a POST: nothing about the patient in the URL
    check_axe(page)
