"""The floor: the benchmarks' operations on plain SQLite, in-process, single thread (ops/s).

Python's ``sqlite3`` in WAL mode (``synchronous=NORMAL``, Hygie's default), the same synthetic
Patient JSON as the HTTP benchmarks, each operation its own autocommit transaction:

* ``res(id TEXT PRIMARY KEY, json BLOB)``: insert (create), select by id (read), update;
* ``pat(id TEXT PRIMARY KEY, json BLOB, identifier TEXT, family TEXT)``, both clear-text columns
  indexed, ``--patients`` rows: search by identifier and by family (``count(*)`` + ``LIMIT 50``,
  rows fetched), like the searchset Bundle needs.

No HTTP, no concurrency: this is what the database work itself costs. The HTTP benchmarks
(bench_crud.py, bench_search.py) compare Hygie with a raw server under the same 16-client load;
run_all.py also compares Hygie's server CPU per request with the per-operation time here.
Writes bench/results/raw_sqlite.json.

    .venv/bin/python bench/bench_raw_sqlite.py
    .venv/bin/python bench/bench_raw_sqlite.py --quick
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from common import INS_NIR_SYSTEM, emit, fold, machine, make_patients, write_result
from raw_server import SCHEMA, _stamp, search_columns


def timed(fn: Callable[[int], Any], seconds: float, max_ops: int = 10_000_000) -> dict[str, Any]:
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while n < max_ops:
        fn(n)
        n += 1
        if n % 64 == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    return {"ops": n, "ops_per_s": round(n / elapsed, 1), "us_per_op": round(elapsed / n * 1e6, 2)}


def run(patients: int, seconds: float) -> dict[str, Any]:
    ps = make_patients(patients, seed=1789)
    bodies = [orjson.dumps(b) for b in make_patients(2000, seed=12).bodies]
    rng = random.Random(5)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hygie-bench-raw-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        ids: list[str] = []

        def create(i: int) -> None:
            rid = str(uuid.uuid4())
            conn.execute("INSERT INTO res (id, json) VALUES (?, ?)",
                         (rid, _stamp(orjson.loads(bodies[i % len(bodies)]), rid)))
            ids.append(rid)

        out["create"] = timed(create, seconds)

        def read(i: int) -> None:
            row = conn.execute("SELECT json FROM res WHERE id = ?",
                               (ids[rng.randrange(len(ids))],)).fetchone()
            assert row is not None

        out["read"] = timed(read, seconds)

        def update(i: int) -> None:
            rid = ids[i % len(ids)]
            doc = orjson.loads(bodies[i % len(bodies)])
            doc["telecom"] = [{"system": "phone", "value": f"06{i % 10**8:08d}"}]
            conn.execute("UPDATE res SET json = ? WHERE id = ?", (_stamp(doc, rid), rid))

        out["update"] = timed(update, seconds)

        t0 = time.perf_counter()
        conn.execute("BEGIN")
        for b in ps.bodies:
            rid = str(uuid.uuid4())
            ident, family = search_columns(b)
            conn.execute("INSERT INTO pat (id, json, identifier, family) VALUES (?, ?, ?, ?)",
                         (rid, _stamp(dict(b), rid), ident, family))
        conn.execute("COMMIT")
        load_s = time.perf_counter() - t0
        out["load"] = {"rows": patients, "rows_per_s": round(patients / load_s, 1)}

        def search(where: str, args: tuple[Any, ...]) -> int:
            conn.execute("BEGIN")
            total = conn.execute(f"SELECT count(*) FROM pat WHERE {where}", args).fetchone()[0]
            rows = conn.execute(f"SELECT id, json FROM pat WHERE {where} ORDER BY id LIMIT 50",
                                args).fetchall()
            conn.execute("COMMIT")
            assert len(rows) == min(total, 50)
            return int(total)

        def by_identifier(i: int) -> None:
            nir = ps.nirs[rng.randrange(len(ps.nirs))]
            assert search("identifier = ?", (f"{INS_NIR_SYSTEM}|{nir}",)) == 1

        def by_family(i: int) -> None:
            fam = ps.families[rng.randrange(len(ps.families))]
            low = fold(fam)
            assert search("family >= ? AND family < ?",
                          (low, low + "\U0010ffff")) == ps.family_count[fam]

        out["search_identifier"] = timed(by_identifier, seconds)
        out["search_family"] = timed(by_family, seconds)
        conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--patients", type=int, help="rows for the searches (10000, quick 1000)")
    parser.add_argument("--seconds", type=float, help="per operation (3, quick 0.5)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    patients = args.patients or (1000 if args.quick else 10_000)
    seconds = args.seconds or (0.5 if args.quick else 3.0)
    results = run(patients, seconds)
    figures = {f"{op}.ops_per_s": r["ops_per_s"] for op, r in results.items() if "ops_per_s" in r}
    figures.update({f"{op}.us_per_op": r["us_per_op"] for op, r in results.items()
                    if "us_per_op" in r})
    figures["load.rows_per_s"] = results["load"]["rows_per_s"]
    doc = {"benchmark": "raw_sqlite", "quick": args.quick, "patients": patients,
           "seconds_per_op": seconds, "single_thread": True, "machine": machine(),
           "results": results, "figures": figures}
    write_result("raw_sqlite", doc, args.out)
    emit("raw_sqlite", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
