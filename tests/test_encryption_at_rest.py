"""Nothing identifying is stored in clear: proven on real Synthea patients.

After an import, the raw database (the SQLite file with its WAL, or every row of every
PostgreSQL table) contains none of the patients' family names, given names, identifiers,
birth dates, phone numbers or addresses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hygie.records.importer import run_import

from .conftest import FIXTURES, PG_ADMIN, SHARED, Instance

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Hex digests in clear by design (import journal keys, key check values).
HEX = re.compile(rb"[0-9a-f]{32,}")


def secrets_of(bundles: list[Path]) -> set[str]:
    """The identifying values of the patients in these bundles."""
    values: set[str] = set()
    for path in bundles:
        doc = json.loads(path.read_text())
        for entry in doc["entry"]:
            r = entry["resource"]
            if r["resourceType"] != "Patient":
                continue
            for name in r.get("name", []):
                values.add(name["family"])
                values.update(name.get("given", []))
            for ident in r.get("identifier", []):
                values.add(ident["value"])
            values.add(r["birthDate"])
            for tel in r.get("telecom", []):
                values.add(tel["value"])
            for addr in r.get("address", []):
                values.update(addr.get("line", []))
                values.add(addr["city"])
                if addr.get("postalCode"):
                    values.add(addr["postalCode"])
    # Very short values (e.g. a 2-letter state) would match random bytes of ciphertext.
    return {v for v in values if len(v) >= 5}


def raw_storage(instance: Instance) -> bytes:
    if instance.backend == "sqlite":
        return b"".join(p.read_bytes() for p in instance.data_dir.glob("hygie.db*"))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{instance.dbname}"
    chunks: list[bytes] = []
    with psycopg.connect(url) as conn:
        conn.execute("CHECKPOINT")
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for t in tables:
            # Binary COPY: integers as binary, bytea raw, text as UTF-8 — as stored.
            with conn.cursor().copy(f'COPY "{t}" TO STDOUT (FORMAT binary)') as copy:
                for data in copy:
                    chunks.append(bytes(data))
    return b"\n".join(chunks)


def assert_nothing_in_clear(instance: Instance, bundles: list[Path]) -> int:
    from hygie.api.app import open_runtime

    rt = open_runtime(instance.settings)
    total = 0
    for b in bundles:
        total += run_import(rt.gate, b, page_max=1000).resources
    rt.engine.dispose()
    raw = raw_storage(instance)
    secrets = secrets_of(bundles)
    assert secrets, "the fixture has identifying values to look for"
    # Resource ids and references (server-assigned UUIDs) and a few hex digests are stored in
    # clear by design, and a short number such as a postal code can occur inside one by chance.
    # So UUID-shaped secrets (e.g. source-system identifiers) are looked for in the raw bytes;
    # every other secret is looked for once the UUIDs and digests are taken out.
    without_ids = HEX.sub(b"<hex>", UUID.sub(b"<id>", raw))
    leaked = sum(1 for s in secrets
                 if s.encode() in (raw if UUID.fullmatch(s.encode()) else without_ids)
                 or s.encode("utf-16-le") in raw)
    # Never print the values themselves: only how many leaked.
    assert leaked == 0, f"{leaked} identifying value(s) found in clear in the database"
    return total


def test_fixture_patients_are_not_stored_in_clear(instance: Instance,
                                                  synthea_bundles: list[Path]) -> None:
    assert assert_nothing_in_clear(instance, synthea_bundles) > 200


@pytest.mark.slow
def test_every_synthea_patient_at_hand_is_not_stored_in_clear(instance: Instance) -> None:
    """All of ../shared/data/synthea (52 patients) where this workplace has it; on a clone
    outside it, the bundles copied into tests/fixtures (never skipped)."""
    shared = SHARED / "synthea"
    folder = shared if shared.is_dir() else FIXTURES / "synthea"
    bundles = sorted(p for p in folder.glob("*.json")
                     if not p.name.startswith(("hospital", "practitioner")))
    assert assert_nothing_in_clear(instance, bundles) > (5000 if shared.is_dir() else 200)


def test_blob_of_a_resource_is_ciphertext(api: Any) -> None:
    from sqlalchemy import select

    from hygie.store.tables import resource

    api.post("/fhir/Patient", json={"resourceType": "Patient",
                                    "name": [{"family": "Quasimodo"}]})
    with api.engine.connect() as conn:
        body = conn.execute(select(resource.c.body)).scalar_one()
    assert b"Quasimodo" not in body and b"Patient" not in body
    assert body[:1] == b"\x01" and len(body) > 28
