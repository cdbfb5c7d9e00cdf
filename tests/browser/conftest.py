"""Browser tests: a real ``hygie serve`` on 127.0.0.1 driven by Debian's Chromium (Playwright).

One server per test module (a real SQLite instance, accounts enrolled through the real
activation flow, patients written through the gate); one browser context per test. Every test's
page is watched: any request leaving the server's origin, any CSP complaint on the console and
any page error fail the test; the server's stderr must hold no CSP report and no traceback.
Playwright never downloads a browser: it launches /usr/bin/chromium
(``scripts/ensure-chromium.sh`` installs it).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from hygie.access import accounts
from hygie.access.actor import Actor
from hygie.api.app import open_runtime
from hygie.crypto.totp import totp_at
from hygie.instance import init_instance
from hygie.records.importer import run_import
from hygie.settings import load_settings
from hygie.store.db import transaction
from hygie.store.tables_accounts import user_account

from ..people import PASSWORD, secret_of

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
CHROMIUM = "/usr/bin/chromium"
HYGIE = str(Path(sys.executable).parent / "hygie")
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "fixtures" / "vendor" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
SYNTHEA = next((ROOT / "tests" / "fixtures" / "synthea").glob("Ned_Hintz_*.json"))
PRACTITIONER_ID = "pract-martin"
OTHER_PRACTITIONER_ID = "pract-other"
INS_DURAND = "295109912611193"  # a valid INS-NIR key (synthetic)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@dataclass
class Account:
    username: str
    secret: bytes
    user_id: str
    password: str = PASSWORD


@dataclass
class Site:
    base: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    settings: Any
    runtime: Any
    accounts: dict[str, Account] = field(default_factory=dict)
    patients: dict[str, str] = field(default_factory=dict)

    def totp(self, username: str) -> str:
        """The current code, made usable again (tests sign in several times a minute)."""
        acc = self.accounts[username]
        with transaction(self.runtime.engine) as conn:
            conn.execute(update(user_account).where(user_account.c.id == acc.user_id)
                         .values(totp_last_step=None))
        return totp_at(acc.secret, time.time())

    def add_account(self, username: str, role: str, **kw: Any) -> str:
        with transaction(self.runtime.engine) as conn:
            issued = accounts.add_user(conn=conn, tenant=self.settings.tenant,
                                       username=username, role=role, activation_days=7, **kw)
        return issued.code


def _enrol(site: Site, username: str, role: str, **kw: Any) -> None:
    """Through the real activation flow of the API (POST /auth/activate, /confirm)."""
    code = site.add_account(username, role, **kw)
    with httpx.Client(base_url=site.base, timeout=30) as client:
        body = client.post("/auth/activate",
                           json={"activation_code": code, "password": PASSWORD}).json()
        secret = secret_of(body["totp_uri"])
        resp = client.post("/auth/activate/confirm", json={
            "activation_code": code, "totp_code": totp_at(secret, time.time())})
        assert resp.status_code == 204, resp.text
    site.accounts[username] = Account(username, secret, _user_id(site, username))


def _user_id(site: Site, username: str) -> str:
    with transaction(site.runtime.engine, readonly=True) as conn:
        for acc in accounts.list_users(conn=conn, tenant=site.settings.tenant):
            if acc.username == username:
                return acc.id
    raise AssertionError(username)


def _patients(site: Site) -> None:
    """Synthetic patients: two in Dr Martin's care, one outside it."""
    gate = site.runtime.gate
    run_import(gate, SYNTHEA, page_max=1000)
    martin = Actor.user("seed", "practitioner", practitioner_id=PRACTITIONER_ID)
    other = Actor.user("seed2", "practitioner", practitioner_id=OTHER_PRACTITIONER_ID)
    with gate.open(martin) as door:
        durand = door.create("Patient", {
            "resourceType": "Patient", "gender": "female", "birthDate": "1995-10-12",
            "name": [{"use": "official", "family": "Durand", "given": ["Camille"]}],
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": INS_DURAND}],
            "address": [{"city": "Lyon"}]})
        door.create("AllergyIntolerance", {
            "resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{durand.rid}"},
            "code": {"text": "Pénicilline"}, "recordedDate": "2020-02-03"})
    with gate.open(Actor.system("seed")) as door:
        ned, _ = door.search(_query("Patient", "family", "hintz"))
        door.create("CareTeam", {
            "resourceType": "CareTeam", "status": "active",
            "subject": {"reference": f"Patient/{ned[0].rid}"},
            "participant": [{"member": {"reference": f"Practitioner/{PRACTITIONER_ID}"}}]})
    with gate.open(other) as door:
        stranger = door.create("Patient", {
            "resourceType": "Patient", "gender": "male", "birthDate": "1970-01-01",
            "name": [{"family": "Lointain", "given": ["Paul"]}]})
    site.patients.update(durand=durand.rid, ned=ned[0].rid, stranger=stranger.rid)


def _query(rtype: str, name: str, value: str) -> Any:
    from hygie.fhir.search import parse_search

    return parse_search(rtype, [(name, value)], lenient=False, page_default=10, page_max=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "hygie serve exited early"
        try:
            if httpx.get(f"{base}/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("hygie serve did not answer within 60 s")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("web") / "data"
    init_instance(data_dir)
    cfg = data_dir / "hygie.toml"
    cfg.write_text(cfg.read_text().replace("login_delay_ms = 250", "login_delay_ms = 0"))
    settings = load_settings(data_dir)
    runtime = open_runtime(settings)
    port = free_port()
    proc = subprocess.Popen([HYGIE, "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ})
    s = Site(f"http://127.0.0.1:{port}", data_dir, proc, settings, runtime)
    try:
        _wait_up(s.base, proc)
        _enrol(s, "dr.martin", "practitioner", practitioner_id=PRACTITIONER_ID)
        _enrol(s, "secretaire", "secretary")
        _enrol(s, "admin.sys", "admin")
        _patients(s)
        yield s
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        runtime.engine.dispose()
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "csp violation" not in err, err
    assert "Traceback" not in err, err
    for secret_value in ("Durand", "DURAND", INS_DURAND, PASSWORD):
        assert secret_value not in err


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: bash scripts/ensure-chromium.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@dataclass
class Watch:
    outside: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh context (no cookies); fails the test on any outside request or CSP complaint."""
    context = browser.new_context(base_url=site.base, viewport={"width": 1280, "height": 900},
                                  locale="fr-FR")
    context.set_default_timeout(10_000)
    watch = Watch()
    pg = context.new_page()
    pg.on("request", lambda r: None if r.url.startswith((site.base + "/", "data:", "about:"))
          else watch.outside.append(r.url))
    pg.on("console", lambda m: watch.csp.append(m.text)
          if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text else None)
    pg.on("pageerror", lambda e: watch.errors.append(str(e)))
    pg.watch = watch
    yield pg
    context.close()
    assert watch.outside == [], f"requests left 127.0.0.1: {watch.outside}"
    assert watch.csp == [], f"CSP violations: {watch.csp}"
    assert watch.errors == [], f"page errors: {watch.errors}"


def check_axe(page: Any) -> None:
    """Run axe-core on the page; no violation of impact serious or critical.

    The page's CSP forbids injected scripts, so axe's source is evaluated through the DevTools
    protocol (``page.evaluate``), not added as a <script> tag; nothing is served to users.
    """
    page.evaluate(AXE.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact,
                                       nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert bad == [], json.dumps(bad, indent=1)


def screenshot(page: Any, name: str) -> bytes:
    """Take the viewport's screenshot (checked: a PNG of the page's size); write
    ``docs/screenshots/NAME.png`` only when ``HYGIE_SCREENSHOTS=1`` (refreshing them on purpose:
    ordinary runs leave the tracked files alone)."""
    png = page.screenshot(full_page=False)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "a screenshot is a PNG"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    viewport = page.viewport_size
    assert (width, height) == (viewport["width"], viewport["height"]), (width, height)
    assert 5_000 < len(png) < 5_000_000, f"screenshot of {len(png)} bytes"
    if os.environ.get("HYGIE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}.png").write_bytes(png)
    return png


def sign_in(page: Any, site: Site, username: str) -> None:
    page.goto("/")
    page.get_by_label("Identifiant").fill(username)
    page.get_by_label("Mot de passe").fill(site.accounts[username].password)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/signin/code")
    page.locator("#code").fill(site.totp(username))
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/app")


