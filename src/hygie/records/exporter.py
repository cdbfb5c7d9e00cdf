"""``hygie export``: every current resource as NDJSON, one file per type, through the gate."""

from __future__ import annotations

import os
from pathlib import Path

from hygie.access.actor import Actor, RequestContext
from hygie.errors import InvalidRequest
from hygie.fhir.search import SearchQuery
from hygie.gate import Gate

PAGE = 1000


def run_export(gate: Gate, out: Path) -> dict[str, int]:
    """Write ``<Type>.ndjson`` files into ``out`` (created, must be empty). Returns counts."""
    if out.exists() and any(out.iterdir()):
        raise InvalidRequest(f"{out} is not empty; export into a new directory")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    actor = Actor.system("export")
    with gate.open(actor, RequestContext()) as door:
        types = door.resource_types()
    counts: dict[str, int] = {}
    for rtype in types:
        tmp = out / f".{rtype}.ndjson.part"
        n = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            offset = 0
            while True:
                q = SearchQuery(rtype=rtype, count=PAGE, offset=offset, total="none")
                with gate.open(actor, RequestContext()) as door:
                    rows, _ = door.search(q)
                for f in rows:
                    fh.write(f.body or b"")
                    fh.write(b"\n")
                n += len(rows)
                if len(rows) < PAGE:
                    break
                offset += PAGE
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out / f"{rtype}.ndjson")
        counts[rtype] = n
    return counts
