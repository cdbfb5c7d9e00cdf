"""Run every benchmark, then write bench/results/summary.json (``make bench``).

Each benchmark runs as its own process (so one's memory and threads do not weigh on the next),
prints its ``name value unit`` lines as it goes, and writes bench/results/<name>.json; this
script then gathers the figures, compares them with the goals and the reference servers, and
writes bench/results/summary.json.

    .venv/bin/python bench/run_all.py            # full: about 25 minutes on 2 cores (the first
                                                 # time ~1 h more: bench_backup.py generates
                                                 # and caches 1,000,000 resources)
    .venv/bin/python bench/run_all.py --quick    # smoke run, a few minutes, bench/results/quick/
    .venv/bin/python bench/run_all.py --only crud,search

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) for the PostgreSQL figures
(``make bench`` makes sure it runs); without it those are skipped, not failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from common import BENCH, emit, log, machine, pg_available, result_path, write_result

# name -> (script, full args, quick args, time limit in seconds)
BENCHMARKS: dict[str, tuple[str, list[str], list[str], int]] = {
    "raw_sqlite": ("bench_raw_sqlite.py", [], ["--quick"], 120),
    "crud": ("bench_crud.py", [], ["--quick"], 600),
    "search": ("bench_search.py", [], ["--quick"], 900),
    "import": ("bench_import.py", [], ["--quick"], 900),
    "profile": ("profile_requests.py", [], ["--quick"], 300),
    "profile_postgresql": ("profile_requests.py", ["--backend", "postgresql"], [], 300),
    "merkle": ("bench_merkle.py", [], ["--n", "100000", "--out",
                                       str(result_path("merkle", quick=True))], 300),
    # 10,000 generated patients (~1,000,000 resources): ~45 min to generate on 2 cores the
    # first time, then cached under $TMPDIR/hygie-bench-cache (see bench_backup.py)
    "backup": ("bench_backup.py", [], ["--quick"], 7200),
    "web": ("bench_web.py", [], ["--quick"], 900),
}

# Published figures of other FHIR servers (per vCPU, or on 2 cores + PostgreSQL with 16
# clients), the reference points the goals were set against.
ANCHORS = {
    "hapi_crud_rps_per_vcpu": 380,
    "hapi_ingest_resources_per_s_per_vcpu": 280,
    "medplum_crud_rps_per_vcpu": 180,
    "medplum_2cores_pg_16clients": {"create_rps": 205, "read_rps": 470,
                                    "search_rps": [150, 180]},
}
GOALS = {"crud_rps": 1000, "search_rps": 500, "search_p50_ms": 10.0,
         "import_resources_per_s": 1500, "server_memory_mb": 300}
CORES = 2


QUICK_SKIP = {"profile_postgresql"}  # --quick leaves these out


def run_one(name: str, quick: bool) -> dict[str, Any]:
    script, full, short, limit = BENCHMARKS[name]
    argv = [sys.executable, str(BENCH / script), *(short if quick else full)]
    log(f"running {name}: {' '.join(argv[1:])}")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, timeout=limit, check=False, cwd=BENCH.parent)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = -1
        log(f"{name}: stopped after its {limit} s limit")
    return {"exit_code": code, "seconds": round(time.perf_counter() - t0, 1)}


def load(name: str, quick: bool) -> dict[str, Any] | None:
    path = result_path(name, quick)
    return json.loads(path.read_text()) if path.is_file() else None


def _get(doc: dict[str, Any] | None, *keys: str) -> Any:
    cur: Any = doc
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def verdict(value: float | None, goal: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    ok = value >= goal if higher_is_better else value <= goal
    return "met" if ok else "not met"


def goals_and_anchors(docs: dict[str, Any]) -> dict[str, Any]:
    crud, search, imp = docs.get("crud"), docs.get("search"), docs.get("import")
    out: dict[str, Any] = {}
    for backend in ("sqlite", "postgresql"):
        b: dict[str, Any] = {}
        ops = {op: _get(crud, "results", backend, op) for op in ("read", "create", "update")}
        if all(ops.values()):
            rps = {op: ops[op]["rps"] for op in ops}  # type: ignore[index]
            worst = min(rps.values())
            b["crud_rps"] = rps
            b["crud_goal_1000_rps"] = verdict(worst, GOALS["crud_rps"])
            b["crud_vs_hapi_2vcpu"] = {op: round(v / (ANCHORS["hapi_crud_rps_per_vcpu"] * CORES),
                                                 2) for op, v in rps.items()}
            b["crud_vs_medplum_2vcpu"] = {op: round(
                v / (ANCHORS["medplum_crud_rps_per_vcpu"] * CORES), 2) for op, v in rps.items()}
            medplum = ANCHORS["medplum_2cores_pg_16clients"]
            b["create_vs_medplum_measured"] = round(rps["create"] / medplum["create_rps"], 2)
            b["read_vs_medplum_measured"] = round(rps["read"] / medplum["read_rps"], 2)
        srch = {op: _get(search, "results", backend, op) for op in ("identifier", "family")}
        if all(srch.values()):
            b["search"] = {op: {"rps": s["rps"], "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}
                           for op, s in srch.items()}  # type: ignore[union-attr]
            ok = all(s["rps"] >= GOALS["search_rps"] and s["p50_ms"] <= GOALS["search_p50_ms"]
                     for s in srch.values())  # type: ignore[union-attr]
            b["search_goal_500_rps_p50_10ms"] = "met" if ok else "not met"
            b["search_vs_medplum_measured"] = {
                op: round(s["rps"] / ANCHORS["medplum_2cores_pg_16clients"]["search_rps"][1], 2)
                for op, s in srch.items()}  # type: ignore[union-attr]
        ip = _get(imp, "results", backend, "in_process", "resources_per_s")
        if ip is not None:
            b["import_resources_per_s"] = ip
            b["import_goal_1500_per_s"] = verdict(ip, GOALS["import_resources_per_s"])
            b["import_vs_hapi_2vcpu"] = round(
                ip / (ANCHORS["hapi_ingest_resources_per_s_per_vcpu"] * CORES), 2)
        rss = [v["server_rss_mb"] for d in (crud, search) for v in
               (_get(d, "results", backend) or {}).values()
               if isinstance(v, dict) and "server_rss_mb" in v]
        pss = [v["server_pss_mb"] for d in (crud, search) for v in
               (_get(d, "results", backend) or {}).values()
               if isinstance(v, dict) and "server_pss_mb" in v]
        if rss:
            b["server_rss_max_mb"] = max(rss)
            b["server_pss_max_mb"] = max(pss) if pss else None
            b["memory_goal_300_mb"] = verdict(max(rss), GOALS["server_memory_mb"], False)
        if b:
            out[backend] = b
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", help="comma-separated: " + ",".join(BENCHMARKS))
    args = parser.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHMARKS) if n
             and not (args.quick and not args.only and n in QUICK_SKIP)]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {unknown}")
    if not pg_available():
        log("PostgreSQL figures will be missing (start it with scripts/ensure-postgres.sh)")
    t0 = time.perf_counter()
    started = machine()
    runs = {name: run_one(name, args.quick) for name in names}
    docs = {name: load(name, args.quick) for name in BENCHMARKS}
    summary: dict[str, Any] = {
        "quick": args.quick, "machine": started, "loadavg_at_end": list(
            __import__("os").getloadavg()),
        "total_seconds": round(time.perf_counter() - t0, 1), "runs": runs,
        "goals": GOALS, "anchors": ANCHORS,
        "evaluation": goals_and_anchors(docs),
        "backup_verdicts": _get(docs.get("backup"), "verdicts"),
        "figures": {name: doc.get("figures") for name, doc in docs.items() if doc},
        "note": "figures of benchmarks not in this run come from their last result file; "
                "see each file's machine.code for the code they measured",
    }
    write_result("summary", summary)
    flat: dict[str, Any] = {}
    for backend, ev in summary["evaluation"].items():
        for k, v in ev.items():
            if isinstance(v, int | float | str):
                flat[f"{backend}.{k}"] = v
    emit("summary", {k: v for k, v in flat.items() if not isinstance(v, str)})
    for k, v in flat.items():
        if isinstance(v, str):
            print(f"summary.{k} {v}")
    for k, v in (summary["backup_verdicts"] or {}).items():
        print(f"summary.backup.{k} {v}")
    print(f"summary.total_s {summary['total_seconds']} s")
    failed = [n for n, r in runs.items() if r["exit_code"] != 0]
    if failed:
        log(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
