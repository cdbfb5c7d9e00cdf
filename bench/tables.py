"""Readable Markdown tables of the benchmark results (bench/results/*.json), by benchmark.

bench/report.py regenerates the figure lists at the end of docs/performance.md; this prints
compact per-benchmark tables (system x operation) to paste into the page or a report.

    .venv/bin/python bench/tables.py            # the full run's results
    .venv/bin/python bench/tables.py --quick    # bench/results/quick/
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from common import result_path

SYSTEMS = ("sqlite", "postgresql", "raw_sqlite")
LABEL = {"sqlite": "Hygie, SQLite", "postgresql": "Hygie, PostgreSQL",
         "raw_sqlite": "raw SQLite server"}


def table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def load(name: str, quick: bool) -> dict[str, Any] | None:
    path = result_path(name, quick)
    return json.loads(path.read_text()) if path.is_file() else None


def crud(doc: dict[str, Any]) -> str:
    res = doc["results"]
    rows = []
    for s in SYSTEMS:
        for op in ("read", "create", "update"):
            r = res.get(s, {}).get(op)
            if not r:
                continue
            raw = res["raw_sqlite"][op]
            rows.append([LABEL[s], op, r["rps"], r["p50_ms"], r["p99_ms"], r["errors"],
                         r.get("server_cpu_cores"), r.get("server_cpu_per_req_ms"),
                         r.get("server_rss_mb"), r.get("server_pss_mb"),
                         None if s == "raw_sqlite" else round(r["rps"] / raw["rps"], 4),
                         r.get("other_cpu_cores")])
    out = [table(["system", "op", "req/s", "p50 ms", "p99 ms", "errors", "server CPU cores",
                  "server CPU-ms/req", "RSS MB", "PSS MB", "req/s ÷ raw", "other CPU cores"],
                 rows)]
    sweep_rows = []
    for s in ("sqlite", "postgresql"):
        for name, f in res.get(s, {}).get("sweep", {}).items():
            op, n, _ = name.split("_")
            sweep_rows.append([LABEL[s], op, int(n), f["rps"], f["p50_ms"], f["p99_ms"],
                               f.get("server_cpu_per_req_ms")])
        r16 = res.get(s, {})
        for op in ("read", "create"):
            if op in r16 and sweep_rows:
                sweep_rows.append([LABEL[s], op, doc["clients"], r16[op]["rps"],
                                   r16[op]["p50_ms"], r16[op]["p99_ms"],
                                   r16[op].get("server_cpu_per_req_ms")])
    if sweep_rows:
        sweep_rows.sort(key=lambda r: (r[0], r[1], r[2]))
        out.append("Concurrency sweep (same server, same run):\n\n" + table(
            ["system", "op", "clients", "req/s", "p50 ms", "p99 ms", "server CPU-ms/req"],
            sweep_rows))
    cont = [[LABEL[s], res[s]["contended_update"]["requests"],
             res[s]["contended_update"]["error_pct"],
             json.dumps(res[s]["contended_update"]["error_codes"])]
            for s in ("sqlite", "postgresql") if "contended_update" in res.get(s, {})]
    if cont:
        out.append("Contention probe (16 clients PUT the same 2 patients):\n\n" + table(
            ["system", "requests", "refused %", "codes"], cont))
    return "\n\n".join(out)


def search(doc: dict[str, Any]) -> str:
    res = doc["results"]
    rows = []
    for s in SYSTEMS:
        if s not in res:
            continue
        for op in ("identifier", "family"):
            r, raw = res[s][op], res["raw_sqlite"][op]
            rows.append([LABEL[s], op, r["rps"], r["p50_ms"], r["p99_ms"], r["errors"],
                         r.get("server_cpu_per_req_ms"), r.get("server_rss_mb"),
                         None if s == "raw_sqlite" else round(r["rps"] / raw["rps"], 4),
                         r.get("other_cpu_cores")])
    loads = [[LABEL[s], res[s]["load"]["resources"], res[s]["load"]["seconds_s"],
              res[s]["load"]["resources_per_s"]] for s in SYSTEMS if s in res]
    out = [table(["system", "search by", "req/s", "p50 ms", "p99 ms", "errors",
                  "server CPU-ms/req", "RSS MB", "req/s ÷ raw", "other CPU cores"], rows),
           "Loading (POST /fhir, transaction Bundles of 500, 2 at a time):\n\n"
           + table(["system", "patients", "seconds", "resources/s"], loads)]
    ba = res.get("postgresql", {}).get("before_analyze")
    if ba:
        out.append("PostgreSQL right after the load, one search by identifier: "
                   f"{ba['search_before_analyze_s']} s before ANALYZE, "
                   f"{ba['search_after_analyze_s']} s after (ANALYZE took {ba['analyze_s']} s).")
    return "\n\n".join(out)


def imports(doc: dict[str, Any]) -> str:
    res = doc["results"]
    raw = res["raw_sqlite"]["resources_per_s"]
    rows = []
    for s in ("sqlite", "postgresql"):
        if s not in res:
            continue
        ip = res[s]["in_process"]
        rows.append([LABEL[s], "run_import() in-process", ip["resources"], round(ip["seconds"], 1),
                     ip["resources_per_s"], ip["cpu_per_resource_ms"], ip["peak_rss_mb"],
                     len(ip["failed"]), round(ip["resources_per_s"] / raw, 4)])
        if "cli" in res[s]:
            c = res[s]["cli"]
            rows.append([LABEL[s], "hygie import (CLI wall)", c["resources"], c["seconds"],
                         c["resources_per_s"], None, None, len(c["failed_kinds"]),
                         round(c["resources_per_s"] / raw, 4)])
    r = res["raw_sqlite"]
    rows.append(["plain sqlite3, 1 thread", "same files", r["resources"], r["seconds"],
                 r["resources_per_s"], None, None, 0, None])
    return table(["system", "how", "resources", "seconds", "resources/s", "CPU-ms/resource",
                  "peak RSS MB", "failed bundles", "÷ raw"], rows)


def backup(doc: dict[str, Any]) -> str:
    rows = []
    for dataset, per in doc["results"].items():
        for s, r in per.items():
            floor = r.get("pg_dump_s")
            rows.append([dataset, LABEL[s], r["resources"], round(r["data_bytes"] / 1e6),
                         round(r["backup_bytes"] / 1e6), r["cp_s"], floor, r["backup_s"],
                         r["backup_mb_per_s"], r["backup_vs_pg_dump_ratio"] if floor
                         else r["backup_vs_cp_ratio"], r["verify_s"], r["restore_s"],
                         r.get("ledger_verify_s"), r.get("restore_plus_ledger_verify_s")])
    return table(["data set", "system", "resources", "data MB", "backup MB", "cp -r s",
                  "pg_dump s", "backup s", "backup MB/s", "÷ cp (PG: ÷ pg_dump)", "verify s",
                  "restore s", "ledger verify s", "restore + ledger verify s"], rows)


def raw_sqlite(doc: dict[str, Any]) -> str:
    rows = [[op, r["ops_per_s"], r["us_per_op"]] for op, r in doc["results"].items()
            if "ops_per_s" in r]
    return table(["operation (1 thread, in-process)", "ops/s", "µs/op"], rows)


def profile(docs: list[dict[str, Any]]) -> str:
    cats: list[str] = []
    for d in docs:
        for r in d["results"].values():
            cats += [c for c in r["categories_pct"] if c not in cats]
    rows = []
    for d in docs:
        for op, r in d["results"].items():
            rows.append([d["backend"], op, r["us_per_req"]]
                        + [r["categories_pct"].get(c, 0.0) for c in cats])
    return table(["backend", "request", "µs/req (no profiler)"] + [f"{c} %" for c in cats], rows)


def goals(doc: dict[str, Any]) -> str:
    rows = []
    for backend, ev in doc["evaluation"].items():
        for k, v in ev.items():
            if isinstance(v, str):
                rows.append([LABEL[backend], k, v])
    return table(["backend", "goal", "verdict"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    q = args.quick
    parts = []
    for title, name, fn in (("CRUD", "crud", crud), ("Search", "search", search),
                            ("Import", "import", imports), ("Raw SQLite floor", "raw_sqlite",
                                                            raw_sqlite),
                            ("Backups", "backup", backup)):
        doc = load(name, q)
        if doc:
            parts.append(f"### {title}\n\n{fn(doc)}")
    profs = [d for d in (load("profile", q), load("profile_postgresql", q)) if d]
    if profs:
        parts.append(f"### Profile\n\n{profile(profs)}")
    summ = load("summary", q)
    if summ:
        parts.append(f"### Goals\n\n{goals(summ)}")
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
