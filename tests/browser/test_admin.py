"""The administrator's pages in Chromium: accounts (and a real activation), API clients, keys
and backups; and an administrator cannot open a patient record (separation of duties)."""

from __future__ import annotations

import base64
import subprocess
import time
from typing import Any

import httpx

from hygie.crypto.totp import totp_at

from .conftest import HYGIE, Site, check_axe, screenshot, sign_in

NEW_PASSWORD = "granite lantern meadow 4471"


def test_admin_creates_an_account_that_activates(page: Any, browser: Any, site: Site) -> None:
    sign_in(page, site, "admin.sys")
    page.get_by_role("link", name="Comptes").click()
    page.wait_for_url("**/app/admin/accounts")
    assert page.title() == "Comptes · Hygie"
    assert "dr.martin" in page.locator("table.list").inner_text()
    check_axe(page)
    page.get_by_label("Identifiant").fill("accueil.2")
    page.get_by_label("Rôle").select_option("secretary")
    page.get_by_role("button", name="Créer le compte").click()
    code = page.locator("code.activation-code").inner_text()
    assert len(code.replace("-", "")) == 24
    assert "il ne sera plus affiché" in page.locator(".issued").inner_text()
    row = page.locator("tr", has_text="accueil.2")
    assert "En attente d'activation" in row.inner_text()
    check_axe(page)
    screenshot(page, "admin-accounts")
    # The code is shown once: reloading the list does not show it again.
    page.goto("/app/admin/accounts")
    assert code not in page.content()
    # A practitioner account needs its Practitioner id: a French error, nothing created.
    page.get_by_label("Identifiant").fill("dr.sans.id")
    page.get_by_label("Rôle").select_option("practitioner")
    page.get_by_role("button", name="Créer le compte").click()
    assert "Practitioner" in page.locator(".error").inner_text()
    assert page.locator("tr", has_text="dr.sans.id").count() == 0
    # The new person activates the account in another browser and signs in.
    context = browser.new_context(base_url=site.base, locale="fr-FR")
    try:
        pg = context.new_page()
        pg.goto("/activation")
        pg.get_by_label("Code d'activation").fill(code)
        pg.get_by_label("Nouveau mot de passe").fill(NEW_PASSWORD)
        pg.get_by_label("Confirmez le mot de passe").fill(NEW_PASSWORD)
        pg.get_by_role("button", name="Continuer").click()
        text = pg.locator("code.secret").inner_text().replace(" ", "")
        secret = base64.b32decode(text + "=" * (-len(text) % 8))
        pg.locator("#code").fill(totp_at(secret, time.time()))
        pg.get_by_role("button", name="Activer mon compte").click()
        pg.get_by_text("Votre compte est activé").wait_for()
        pg.get_by_label("Identifiant").fill("accueil.2")
        pg.get_by_label("Mot de passe").fill(NEW_PASSWORD)
        pg.get_by_role("button", name="Continuer").click()
        pg.wait_for_url("**/signin/code")
        pg.locator("#code").fill(totp_at(secret, time.time() + 30))
        pg.get_by_role("button", name="Se connecter").click()
        pg.wait_for_url("**/app")
        assert pg.locator(".who .role").inner_text() == "Secrétariat"
        # The admin disables the account: its session stops at once.
        page.goto("/app/admin/accounts")
        assert "Actif" in page.locator("tr", has_text="accueil.2").inner_text()
        page.locator("tr", has_text="accueil.2").get_by_role("button", name="Désactiver").click()
        page.wait_for_url("**/app/admin/accounts")
        assert "Désactivé" in page.locator("tr", has_text="accueil.2").inner_text()
        pg.goto("/app")
        pg.wait_for_url("**/?notice=expired")
    finally:
        context.close()


def test_admin_resets_a_second_factor(page: Any, site: Site) -> None:
    old_code = site.add_account("compta", "secretary")
    sign_in(page, site, "admin.sys")
    page.goto("/app/admin/accounts")
    page.locator("tr", has_text="compta").get_by_role(
        "button", name="Réinitialiser le second facteur").click()
    assert "Second facteur réinitialisé" in page.locator(".issued").inner_text()
    new_code = page.locator("code.activation-code").inner_text()
    assert new_code != old_code
    check_axe(page)
    with httpx.Client(base_url=site.base, timeout=30) as client:
        stale = client.post("/auth/activate", json={"activation_code": old_code,
                                                    "password": NEW_PASSWORD})
        assert stale.status_code == 400
        fresh = client.post("/auth/activate", json={"activation_code": new_code,
                                                    "password": NEW_PASSWORD})
        assert fresh.status_code == 200


def test_admin_cannot_open_a_patient_record(page: Any, site: Site) -> None:
    sign_in(page, site, "admin.sys")
    resp = page.goto(f"/app/patients/{site.patients['durand']}")
    assert resp is not None and resp.status == 403
    assert "séparation des tâches" in page.locator("main").inner_text()
    assert "Durand" not in page.content() and "DURAND" not in page.content()
    resp = page.goto("/app/identities")
    assert resp is not None and resp.status == 403
    assert "DURAND" not in page.content()
    check_axe(page)


def test_admin_pages_are_for_admins_only(page: Any, site: Site) -> None:
    sign_in(page, site, "dr.martin")
    assert page.get_by_role("link", name="Comptes").count() == 0
    for path in ("/app/admin/accounts", "/app/admin/clients", "/app/admin/system"):
        resp = page.goto(path)
        assert resp is not None and resp.status == 403, path
        assert "réservée à l'administration" in page.locator("main").inner_text()
    check_axe(page)


def test_admin_api_clients(page: Any, site: Site) -> None:
    sign_in(page, site, "admin.sys")
    page.goto("/app/admin/clients")
    check_axe(page)
    page.get_by_label("Nom du logiciel").fill("logiciel de cabinet")
    page.get_by_label("system/Patient.read").check()
    page.get_by_role("button", name="Créer le client").click()
    client_id = page.locator("code.client-id").inner_text()
    secret = page.locator("code.client-secret").inner_text()
    check_axe(page)
    screenshot(page, "admin-clients")
    token = httpx.post(f"{site.base}/auth/token", data={"grant_type": "client_credentials"},
                       auth=(client_id, secret), timeout=30)
    assert token.status_code == 200 and token.json()["scope"] == "system/Patient.read"
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert httpx.get(f"{site.base}/fhir/Patient?_count=1", headers=bearer,
                     timeout=30).status_code == 200
    page.goto("/app/admin/clients")
    assert secret not in page.content()
    page.locator("tr", has_text=client_id).get_by_role("button", name="Révoquer").click()
    page.wait_for_url("**/app/admin/clients")
    assert "Révoqué" in page.locator("tr", has_text=client_id).inner_text()
    assert httpx.get(f"{site.base}/fhir/Patient?_count=1", headers=bearer,
                     timeout=30).status_code == 401


def test_admin_keys_and_backups(page: Any, site: Site, tmp_path: Any) -> None:
    sign_in(page, site, "admin.sys")
    page.goto("/app/admin/system")
    assert page.locator(".active-version").inner_text() == "1"
    assert "Aucune sauvegarde" in page.locator(".last-backup").inner_text()
    assert "Aucun exercice" in page.locator(".last-drill").inner_text()
    check_axe(page)
    proc = subprocess.run([HYGIE, "backup", "create", "--data-dir", str(site.data_dir),
                           "--to", str(tmp_path / "backups")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    page.goto("/app/admin/system")
    assert "hygie-backup-" in page.locator(".last-backup").inner_text()
    check_axe(page)
    screenshot(page, "admin-system")
