"""``hygie import``: FHIR Bundles (JSON) and NDJSON files, through the gate, resumable.

Each unit (a Bundle, or a chunk of NDJSON lines) is one transaction that also records the unit
in the import journal, so an interrupted import resumes where it stopped and never imports a
unit twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from hygie.access.actor import Actor, RequestContext
from hygie.errors import HygieError, InvalidRequest
from hygie.gate import Door, Gate
from hygie.records.transactions import process
from hygie.store.db import now_us, transaction
from hygie.store.tables import import_journal

NDJSON_CHUNK = 500


@dataclass
class ImportReport:
    files: int = 0
    units: int = 0
    skipped_units: int = 0
    resources: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class Unit:
    key: str
    label: str
    bundle: dict[str, Any]
    size: int


def discover(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix.lower() in (".json", ".ndjson"))
        if not files:
            raise InvalidRequest(f"no .json or .ndjson file under {path}")
        return files
    if not path.is_file():
        raise InvalidRequest(f"{path} does not exist")
    return [path]


def _as_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for r in resources:
        rtype = r.get("resourceType")
        if not isinstance(rtype, str):
            raise InvalidRequest("a line or entry is not a FHIR resource")
        if r.get("id"):
            entries.append({"resource": r, "request": {"method": "PUT",
                                                       "url": f"{rtype}/{r['id']}"}})
        else:
            entries.append({"resource": r, "request": {"method": "POST", "url": rtype}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def units_of(path: Path) -> Iterator[Unit]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:32]
    if path.suffix.lower() == ".ndjson":
        lines = [ln for ln in data.splitlines() if ln.strip()]
        for i in range(0, len(lines), NDJSON_CHUNK):
            try:
                chunk = [orjson.loads(ln) for ln in lines[i:i + NDJSON_CHUNK]]
            except orjson.JSONDecodeError:
                raise InvalidRequest(f"{path.name}: line {i + 1}..: not valid JSON") from None
            yield Unit(f"{digest}:{i}", f"{path.name} lines {i + 1}-{i + len(chunk)}",
                       _as_transaction(chunk), len(chunk))
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{path.name}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidRequest(f"{path.name}: not a FHIR resource")
    if doc.get("resourceType") == "Bundle" and doc.get("type") in ("transaction", "batch"):
        bundle = {**doc, "type": "transaction"}
    elif doc.get("resourceType") == "Bundle" and doc.get("type") in ("collection", "searchset"):
        bundle = _as_transaction([e["resource"] for e in doc.get("entry", [])
                                  if isinstance(e, dict) and isinstance(e.get("resource"), dict)])
    else:
        bundle = _as_transaction([doc])
    yield Unit(f"{digest}:0", path.name, bundle, len(bundle.get("entry") or []))


def run_import(gate: Gate, path: Path, *, page_max: int,
               progress: Callable[[int, int], None] | None = None,
               keep_going: bool = False) -> ImportReport:
    """Import every unit under ``path`` not already in the journal."""
    actor = Actor.system("import")
    report = ImportReport()
    files = discover(path)
    with transaction(gate.engine) as conn:
        done = {r[0] for r in conn.execute(select(import_journal.c.unit).where(
            import_journal.c.tenant == gate.tenant))}
    for f in files:
        report.files += 1
        for unit in units_of(f):
            if unit.key in done:
                report.skipped_units += 1
                if progress:
                    progress(0, unit.size)
                continue

            def journal(door: Door, unit: Unit = unit) -> None:
                door.conn.execute(import_journal.insert().values(
                    tenant=gate.tenant, unit=unit.key, done_at=now_us(), resources=unit.size))

            try:
                process(gate, actor, RequestContext(), unit.bundle, page_default=page_max,
                        page_max=page_max, search_bundle=_no_search, on_door=journal)
            except HygieError as exc:
                report.failed.append(f"{unit.label}: {exc.message}")
                if not keep_going:
                    raise InvalidRequest(f"{unit.label}: {exc.message}") from None
                continue
            report.units += 1
            report.resources += unit.size
            if progress:
                progress(unit.size, 0)
    return report


def _no_search(*_: Any) -> bytes:
    raise InvalidRequest("search entries are not allowed in an import")
