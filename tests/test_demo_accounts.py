"""``make run``'s demo web accounts: enrolled through the real activation path, they sign in
with the password and TOTP secret of the demo accounts file (demo only), and the practitioner
sees the demo patients through a care relationship."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from hygie.api.app import create_app
from hygie.instance import init_instance
from hygie.settings import load_settings
from hygie.store.db import transaction
from hygie.store.tables_accounts import user_account


def test_demo_accounts_sign_in(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    init_instance(data)
    proc = subprocess.run([sys.executable, "-m", "hygie.demo", "--data-dir", str(data),
                           "--patients", "2"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    path = data / "demo-accounts.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert str(path) in proc.stdout and "hygie.demo code dr.demo" in proc.stdout
    people = {p["username"]: p for p in json.loads(path.read_text())["accounts"]}
    assert {p["role"] for p in people.values()} == {"practitioner", "secretary", "admin"}
    for p in people.values():  # no secret on the terminal
        assert p["password"] not in proc.stdout and p["totp_secret"] not in proc.stdout
    app = create_app(load_settings(data))
    with TestClient(app, base_url="https://testserver") as client:
        for username in ("dr.demo", "secretariat"):
            # The activation used the current code: forget it, as a minute later would.
            with transaction(app.state.runtime.engine) as conn:
                conn.execute(update(user_account).where(user_account.c.username == username)
                             .values(totp_last_step=None))
            code = subprocess.run([sys.executable, "-m", "hygie.demo", "code", username,
                                   "--data-dir", str(data)], capture_output=True, text=True,
                                  timeout=60, check=True).stdout.strip()
            assert code.isdigit() and len(code) == 6
            login = client.post("/auth/login", json={"username": username,
                                                     "password": people[username]["password"]})
            assert login.status_code == 200, login.text
            tokens = client.post("/auth/mfa", json={"mfa_challenge": login.json()["mfa_challenge"],
                                                    "code": code})
            assert tokens.status_code == 200, tokens.text
            bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
            found = client.get("/fhir/Patient?_summary=count", headers=bearer)
            assert found.status_code == 200 and found.json()["total"] == 2, username
    missing = subprocess.run([sys.executable, "-m", "hygie.demo", "code", "nobody",
                              "--data-dir", str(data)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("hygie: error: ")
