"""Demo data for ``make run``: an API client, a few Synthea patients, and web accounts.

Patients come from ``../shared/data/synthea`` when present (the smallest bundles), else from
the fixtures shipped in ``tests/fixtures/synthea``. The client's credentials are written to
``DATA/demo-client.json`` (0600) so the quick start can use them.

Three web accounts are enrolled through the real activation path (activation code, password,
TOTP enrolment, first TOTP code): ``dr.demo`` (practitioner, in the CareTeam of every demo
patient), ``secretariat`` (secretary) and ``admin`` (administrator). Their usernames, random
passwords and TOTP secrets (base32 and ``otpauth://`` URI) are written to
``DATA/demo-accounts.json`` (0600). **Demo only**: real accounts are created with
``hygie user add`` and their owners activate them; nobody else ever holds their secrets.

``python -m hygie.demo code USER [--data-dir DIR]`` prints USER's current TOTP code, read from
that file (the authenticator app's job, for a demo).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from hygie.access import accounts
from hygie.access.actor import Actor, RequestContext
from hygie.access.clients import create_client
from hygie.crypto import totp_at
from hygie.crypto.keyring import write_secret_file
from hygie.fhir.search import SearchQuery
from hygie.records.importer import run_import
from hygie.runtime import open_runtime
from hygie.settings import load_settings
from hygie.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT.parent / "shared" / "data" / "synthea", ROOT / "tests" / "fixtures" / "synthea"]
ACCOUNTS_FILE = "demo-accounts.json"
DEMO_PRACTITIONER = "demo-practitioner"
DEMO_ACCOUNTS = (("dr.demo", "practitioner"), ("secretariat", "secretary"), ("admin", "admin"))


def demo_bundles(limit: int = 5) -> list[Path]:
    for folder in SOURCES:
        if folder.is_dir():
            files = [p for p in folder.glob("*.json")
                     if not p.name.startswith(("hospital", "practitioner"))]
            return sorted(files, key=lambda p: p.stat().st_size)[:limit]
    return []


def _password() -> str:
    """A random demo password (about 100 bits), accepted by the password rules."""
    return "demo-" + secrets.token_urlsafe(16)


def enrol(rt: Any, username: str, role: str, **kw: Any) -> dict[str, str]:
    """Create and activate an account through the real activation path (demo only)."""
    ctx = RequestContext(client_address="127.0.0.1")
    keys = rt.gate.keys
    password = _password()
    with transaction(rt.engine) as conn:
        issued = accounts.add_user(conn=conn, tenant=rt.settings.tenant, username=username,
                                   role=role, activation_days=1, actor="cli:demo", **kw)
    with transaction(rt.engine) as conn:
        enrolment = accounts.begin_activation(conn=conn, keys=keys,
                                              activation_code=issued.code, password=password,
                                              ctx=ctx)
    assert isinstance(enrolment, accounts.Enrolment), "demo activation refused"
    secret_text = parse_qs(urlparse(enrolment.totp_uri).query)["secret"][0]
    secret = base64.b32decode(secret_text + "=" * (-len(secret_text) % 8))
    with transaction(rt.engine) as conn:
        done = accounts.confirm_activation(conn=conn, keys=keys, activation_code=issued.code,
                                           totp_code=totp_at(secret, time.time()), ctx=ctx)
    assert isinstance(done, accounts.Account), "demo activation refused"
    return {"username": username, "role": role, "password": password,
            "totp_secret": secret_text, "otpauth_uri": enrolment.totp_uri,
            "recovery_codes": list(enrolment.recovery_codes)}


def _care_team(rt: Any) -> int:
    """Put the demo practitioner in the CareTeam of every patient (a care relationship)."""
    with rt.gate.open(Actor.system("demo")) as door:
        found, _ = door.search(SearchQuery(rtype="Patient", count=1000, total="none"))
        for p in found:
            door.create("CareTeam", {
                "resourceType": "CareTeam", "status": "active",
                "subject": {"reference": f"Patient/{p.rid}"},
                "participant": [{"member": {"reference": f"Practitioner/{DEMO_PRACTITIONER}",
                                            "display": "dr.demo"}}]})
    return len(found)


def load(data_dir: str, patients: int) -> None:
    rt = open_runtime(load_settings(data_dir))
    with transaction(rt.engine) as conn:
        cid, secret = create_client(conn, tenant=rt.settings.tenant, name="demo",
                                    scopes="system/*.*")
    creds = Path(data_dir) / "demo-client.json"
    write_secret_file(creds, json.dumps({"client_id": cid, "client_secret": secret}) + "\n")
    loaded = 0
    for bundle in demo_bundles(patients):
        loaded += run_import(rt.gate, bundle, page_max=rt.settings.page_size_max).resources
    cared = _care_team(rt)
    people = [enrol(rt, name, role, **({"practitioner_id": DEMO_PRACTITIONER}
                                       if role == "practitioner" else {}))
              for name, role in DEMO_ACCOUNTS]
    accounts_file = Path(data_dir) / ACCOUNTS_FILE
    write_secret_file(accounts_file, json.dumps(
        {"warning": "demo only: these secrets are for a local demonstration",
         "accounts": people}, indent=2) + "\n")
    rt.engine.dispose()
    print(f"Demo data: {loaded} resources imported; API client credentials in {creds}")
    print(f"Web accounts (demo only; passwords and TOTP secrets in {accounts_file}, 0600):")
    for p in people:
        print(f"  {p['username']:<12} {p['role']}"
              + (f" (care team of {cared} patients)" if p["role"] == "practitioner" else ""))
    print("Sign in at http://127.0.0.1:8000/ ; the current code of an account:")
    print(f"  .venv/bin/python -m hygie.demo code dr.demo --data-dir {data_dir}")
    print("Try the API:")
    print(f"  TOKEN=$(curl -s -u {cid}:$(jq -r .client_secret {creds}) "
          "-d grant_type=client_credentials http://127.0.0.1:8000/auth/token "
          "| jq -r .access_token)")
    print('  curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8000/fhir/Patient?_count=5"')


def code(username: str, data_dir: str) -> int:
    """Print the current TOTP code of a demo account (what the authenticator app shows)."""
    path = Path(data_dir) / ACCOUNTS_FILE
    try:
        people = json.loads(path.read_text())["accounts"]
    except (OSError, ValueError, KeyError):
        print(f"hygie: error: no demo accounts in {path} (run make run first)", file=sys.stderr)
        return 1
    for p in people:
        if p["username"] == username:
            text = p["totp_secret"]
            secret = base64.b32decode(text + "=" * (-len(text) % 8))
            left = 30 - int(time.time()) % 30
            print(totp_at(secret, time.time()))
            print(f"(valid for {left} s more; each code signs in once: if refused, wait for "
                  "the next one)", file=sys.stderr)
            return 0
    print(f"hygie: error: no demo account named {username!r}", file=sys.stderr)
    return 1


def main() -> None:
    default_dir = os.environ.get("HYGIE_DATA_DIR", ".hygie-demo")
    if len(sys.argv) > 1 and sys.argv[1] == "code":
        parser = argparse.ArgumentParser(prog="python -m hygie.demo code",
                                         description="Current TOTP code of a demo account.")
        parser.add_argument("username")
        parser.add_argument("--data-dir", default=default_dir)
        args = parser.parse_args(sys.argv[2:])
        raise SystemExit(code(args.username, args.data_dir))
    parser = argparse.ArgumentParser(description="Load Hygie demo data (demo only).")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--patients", type=int, default=5)
    args = parser.parse_args()
    load(args.data_dir, args.patients)


if __name__ == "__main__":
    main()
