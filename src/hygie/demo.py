"""Demo data for ``make run``: an API client and a few Synthea patients.

Patients come from ``../shared/data/synthea`` when present (the smallest bundles), else from
the fixtures shipped in ``tests/fixtures/synthea``. The client's credentials are written to
``DATA/demo-client.json`` (0600) so the quick start can use them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hygie.access.clients import create_client
from hygie.api.app import open_runtime
from hygie.crypto.keyring import write_secret_file
from hygie.records.importer import run_import
from hygie.settings import load_settings
from hygie.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT.parent / "shared" / "data" / "synthea", ROOT / "tests" / "fixtures" / "synthea"]


def demo_bundles(limit: int = 5) -> list[Path]:
    for folder in SOURCES:
        if folder.is_dir():
            files = [p for p in folder.glob("*.json")
                     if not p.name.startswith(("hospital", "practitioner"))]
            return sorted(files, key=lambda p: p.stat().st_size)[:limit]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description="Load Hygie demo data.")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--patients", type=int, default=5)
    args = parser.parse_args()
    rt = open_runtime(load_settings(args.data_dir))
    with transaction(rt.engine) as conn:
        cid, secret = create_client(conn, tenant=rt.settings.tenant, name="demo",
                                    scopes="system/*.*")
    creds = Path(args.data_dir) / "demo-client.json"
    write_secret_file(creds, json.dumps({"client_id": cid, "client_secret": secret}) + "\n")
    loaded = 0
    for bundle in demo_bundles(args.patients):
        loaded += run_import(rt.gate, bundle, page_max=rt.settings.page_size_max).resources
    print(f"Demo data: {loaded} resources imported; API client credentials in {creds}")
    print("Try:")
    print(f"  TOKEN=$(curl -s -u {cid}:$(jq -r .client_secret {creds}) "
          "-d grant_type=client_credentials http://127.0.0.1:8000/auth/token "
          "| jq -r .access_token)")
    print('  curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8000/fhir/Patient?_count=5"')


if __name__ == "__main__":
    main()
