"""The clinical pages in Debian's Chromium: patient form with the INS checked as you type,
notes, vital signs and their chart, documents viewed inline, break-glass."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from hygie.crypto.totp import totp_at
from hygie.fhir.identifiers import nir_key

from ..people import PASSWORD
from ..samples import make_pdf, make_png
from .conftest import Site, _enrol, check_axe, screenshot, sign_in

NIR = "1840275123456"  # synthetic
INS = NIR + f"{nir_key(NIR):02d}"
WRONG_KEY = f"{(nir_key(NIR) % 97) + 1:02d}"
# Chromium's built-in PDF viewer loads its own files from inside the browser (chrome-extension://
# and chrome:// URLs): nothing leaves the machine, but the page fixture would count them.
PDF_VIEWER = ("chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/", "chrome://resources/")


def _until(page: Any, script: str) -> None:
    """Poll a condition through the DevTools protocol (wait_for_function would eval() inside
    the page, which its CSP forbids)."""
    for _ in range(200):
        if page.evaluate(script):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"still false after 10 s: {script}")


def _record_url(page: Any) -> str:
    page.wait_for_url(re.compile(r".*/app/patients/[0-9a-f-]{36}$"))
    return str(page.url)


def test_create_a_patient_with_the_ins_checked_as_you_type(page: Any, site: Site) -> None:
    sign_in(page, site, "dr.martin")
    page.get_by_role("link", name="Nouveau patient").click()
    page.wait_for_url("**/app/patients/new")
    assert page.title() == "Nouveau patient · Hygie"
    check_axe(page)
    page.get_by_label("Nom de naissance").fill("Bernard")
    page.get_by_label("Prénom(s)").fill("Louis")
    page.get_by_label("Date de naissance").fill("1984-02-11")
    page.get_by_label("Sexe").select_option("male")
    status = page.locator("#ins-check")
    page.get_by_label("Matricule INS").fill(NIR)
    assert status.inner_text() == "Saisissez la clé (2 chiffres)."
    page.get_by_label("Clé", exact=True).fill(WRONG_KEY)
    assert status.inner_text() == "Clé INS incorrecte pour ce matricule."
    assert page.get_by_label("Clé", exact=True).get_attribute("aria-invalid") == "true"
    page.get_by_label("Commune").fill("Lyon")
    check_axe(page)
    screenshot(page, "patient-form")
    # Sent anyway: the server refuses it too, keeps what was typed, and says why.
    page.get_by_role("button", name="Créer le patient").click()
    error = page.locator("#f-ins_key-error")
    error.wait_for()
    assert "La clé INS ne correspond pas au matricule" in error.inner_text()
    assert page.get_by_label("Nom de naissance").input_value() == "Bernard"
    check_axe(page)
    page.get_by_label("Clé", exact=True).fill(INS[13:])
    assert status.inner_text() == "Clé INS valide."
    page.get_by_role("button", name="Créer le patient").click()
    url = _record_url(page)
    assert page.title() == "Dossier patient · Hygie" and INS not in url
    assert page.locator("h1").inner_text() == "Louis BERNARD"
    assert "INS qualifiée" in page.locator(".identity").inner_text()
    check_axe(page)
    # Found by INS in the search (a POST: the INS appears in no URL).
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.get_by_role("link", name="Mes patients").click()
    page.get_by_label("INS (matricule INS, 15 caractères)").fill(INS)
    page.get_by_role("button", name="Rechercher").click()
    page.locator("#results").get_by_role("link", name="Louis BERNARD").click()
    assert page.url == url
    assert all(INS not in u for u in urls)
    # Edit the identity: the form comes back filled in.
    page.get_by_role("link", name="Modifier l'identité").click()
    assert page.get_by_label("Matricule INS").input_value() == NIR
    page.get_by_label("Téléphone").fill("04 72 00 00 00")
    page.get_by_role("button", name="Enregistrer les modifications").click()
    _record_url(page)


def test_notes_vitals_chart_and_documents(page: Any, site: Site) -> None:
    sign_in(page, site, "dr.martin")
    record = f"/app/patients/{site.patients['durand']}"
    page.goto(record)
    # A consultation note.
    page.get_by_role("link", name="Ajouter une note").click()
    assert page.title() == "Nouvelle note · Hygie"
    check_axe(page)
    page.get_by_label("Motif de consultation").fill("Toux persistante")
    page.get_by_label("Note").fill("Auscultation normale.\nPas de fièvre.")
    page.get_by_role("button", name="Enregistrer la note").click()
    _record_url(page)
    note = page.locator("ol.timeline li.kind-note")
    assert "Toux persistante" in note.inner_text()
    note.get_by_text("Lire la note").click()
    assert "Pas de fièvre." in note.locator("pre").inner_text()
    # Vital signs on three dates; a bad value first.
    for i, (when, weight, sys_, dia) in enumerate((("2024-01-15T09:00", "68,5", "142", "91"),
                                                   ("2024-05-10T10:30", "70", "131", "84"),
                                                   ("2024-11-02T16:45", "71,2", "124", "79"))):
        page.get_by_role("link", name="Ajouter des mesures").click()
        if i == 0:
            check_axe(page)
            page.get_by_label("Date et heure de la mesure").fill(when)
            page.get_by_label("Poids (kg)").fill("6800")
            page.get_by_role("button", name="Enregistrer les mesures").click()
            assert "Valeur invalide" in page.locator("#f-weight-error").inner_text()
            check_axe(page)
        page.get_by_label("Date et heure de la mesure").fill(when)
        page.get_by_label("Poids (kg)").fill(weight)
        page.get_by_label("Pression systolique (mmHg)").fill(sys_)
        page.get_by_label("Pression diastolique (mmHg)").fill(dia)
        page.get_by_label("Fréquence cardiaque (/min)").fill("70")
        page.get_by_role("button", name="Enregistrer les mesures").click()
        _record_url(page)
    vitals = page.locator("section.vitals")
    assert vitals.locator("svg[role=img]").count() == 2
    assert vitals.locator("svg[role=img] .series-weight circle").count() == 3
    assert vitals.locator("svg[role=img] .series-diastolic rect").count() == 3
    desc = vitals.locator("#chart-weight-desc").text_content() or ""
    assert "3 mesure(s) du 15/01/2024 au 02/11/2024, de 68,5 à 71,2 kg" in desc
    vitals.get_by_text("Voir les valeurs en tableau (Pression artérielle)").click()
    assert "124" in vitals.locator("table").nth(1).inner_text()
    check_axe(page)
    vitals.scroll_into_view_if_needed()
    screenshot(page, "patient-record-chart")
    # Documents: a PDF and a PNG, made here.
    for name, media, data, kind, title in (
            ("bilan.pdf", "application/pdf", make_pdf("Bilan sanguin"), "lab", "Bilan sanguin"),
            ("radio.png", "image/png", make_png(), "imaging", "Radio du thorax")):
        page.get_by_role("link", name="Ajouter un document").click()
        if kind == "lab":
            check_axe(page)
        page.get_by_label("Type de document").select_option(kind)
        page.get_by_label("Titre").fill(title)
        page.set_input_files("#f-file", files=[{"name": name, "mimeType": media,
                                                "buffer": data}])
        page.get_by_role("button", name="Enregistrer le document").click()
        _record_url(page)
    documents = page.locator("section.documents")
    assert documents.locator("li").count() == 2
    check_axe(page)
    # The image, inline in the record page (HTMX), loaded from the same origin.
    documents.get_by_role("link", name=re.compile("Radio du thorax")).click()
    image = page.locator("#document-viewer img.doc-image")
    image.wait_for()
    _until(page, "document.querySelector('#document-viewer img').naturalWidth > 0")
    assert image.get_attribute("alt") == "Imagerie : Radio du thorax"
    check_axe(page)
    # The PDF, in a same-origin iframe served inline with its own CSP.
    with page.expect_response(re.compile(r".*/documents/[0-9a-f-]+/content$")) as served:
        documents.get_by_role("link", name=re.compile("Bilan sanguin")).click()
    response = served.value
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("inline")
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    frame = page.locator("#document-viewer iframe.doc-frame")
    assert frame.get_attribute("title") == "Document PDF : Bilan sanguin"
    # Chromium's PDF viewer took the document: the framed page holds its <embed>.
    for _ in range(200):
        framed = [f for f in page.frames if f.url.endswith("/content")]
        if framed and any(f.evaluate("document.querySelector('embed') !== null")
                          for f in framed):
            break
        page.wait_for_timeout(50)
    else:
        raise AssertionError("the PDF was not shown in its frame")
    served_bytes = page.context.request.get(response.url).body()  # the viewer keeps the body
    assert served_bytes == make_pdf("Bilan sanguin")
    page.goto("/app")
    page.watch.outside[:] = [u for u in page.watch.outside if not u.startswith(PDF_VIEWER)]


def test_break_glass_opens_the_record_and_is_in_the_ledger(page: Any, site: Site) -> None:
    stranger = site.patients["stranger"]
    sign_in(page, site, "dr.martin")
    resp = page.goto(f"/app/patients/{stranger}")
    assert resp is not None and resp.status == 403
    assert page.title() == "Accès d'urgence · Hygie"
    assert "Lointain" not in page.content() and "LOINTAIN" not in page.content()
    check_axe(page)
    page.get_by_role("button", name="Ouvrir le dossier en urgence").click()
    assert "Le motif est obligatoire" in page.locator("#bg-reason-error").inner_text()
    check_axe(page)
    reason = "Patient inconscient aux urgences, médecin traitant injoignable"
    page.get_by_label("Motif de l'accès d'urgence").fill(reason)
    page.get_by_role("button", name="Ouvrir le dossier en urgence").click()
    _record_url(page)
    banner = page.locator(".break-glass-banner")
    assert banner.get_attribute("role") == "alert"
    text = banner.inner_text()
    assert "Accès d'urgence (bris de glace) en cours." in text
    assert re.search(r"ouvert jusqu'au \d\d/\d\d/\d{4} à \d\d:\d\d\.", text)
    assert page.locator("h1").inner_text() == "Paul LOINTAIN"
    check_axe(page)
    screenshot(page, "break-glass")
    # The patient sees it in the access history of their record, with the stated reason.
    _enrol(site, "paul.lointain", "patient", patient_id=stranger)
    with httpx.Client(base_url=site.base, timeout=30) as client:
        challenge = client.post("/auth/login", json={"username": "paul.lointain",
                                                     "password": PASSWORD}).json()
        site.totp("paul.lointain")
        secret = site.accounts["paul.lointain"].secret
        tokens = client.post("/auth/mfa", json={
            "mfa_challenge": challenge["mfa_challenge"],
            "code": totp_at(secret, time.time())}).json()
        history = client.get("/me/access-history", headers={
            "Authorization": f"Bearer {tokens['access_token']}"}).json()["accesses"]
    glass = [a for a in history if a["action"] == "break-glass"]
    assert len(glass) == 1 and glass[0]["break_glass_reason"] == reason
    assert glass[0]["role"] == "practitioner"
    assert any(a["action"] == "everything" for a in history)
