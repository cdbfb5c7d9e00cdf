"""Search throughput and latency of ``hygie serve`` (2 workers) on 10,000 synthetic Patients.

For each backend (SQLite, PostgreSQL), on a fresh instance made with ``hygie init``:

1. load ``--patients`` synthetic French Patients (random family/given names, an INS-NIR
   identifier ``urn:oid:1.2.250.1.213.1.4.8`` with a valid key, birthDate, gender) through
   ``POST /fhir`` with transaction Bundles of 500 entries, 2 at a time (figure: resources/s);
2. with ``--clients`` keep-alive clients for ``--duration`` seconds each:
   * ``GET /fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|<NIR>`` of random known
     patients (1 match);
   * ``GET /fhir/Patient?family=<name>`` of random known family names (about 10 matches
     each: ``--patients / 10`` distinct names, none a prefix of another, so the FHIR prefix
     match finds exactly that family). One answer in 25 is checked (``total``).

The same loads run, in the same run, against the raw baseline (``raw_server.py``: plain
``sqlite3`` table with indexed clear-text ``identifier`` and ``family`` columns, no crypto,
audit or auth), and each Hygie figure is also given as a ratio to it. Writes
bench/results/search.json.

    .venv/bin/python bench/bench_search.py            # 10,000 patients, 10 s per load
    .venv/bin/python bench/bench_search.py --quick    # 1,000 patients, 1.5 s per load
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import (
    INS_NIR_SYSTEM,
    PatientSet,
    Request,
    RequestMaker,
    check_answers,
    emit,
    get_token,
    hygie_server,
    instance,
    log,
    machine,
    make_patients,
    pg_available,
    pg_cancel_queries,
    pg_in,
    ratio,
    raw_server,
    run_load,
    run_requests,
    search_path,
    transaction_bundle,
    write_result,
)

OPS = ("identifier", "family")
BUNDLE = 500


def load(port: int, mk: RequestMaker, ps: PatientSet, server: Any) -> dict[str, Any]:
    reqs = [mk.send("POST", "/fhir", orjson.dumps(transaction_bundle(ps.bodies[i:i + BUNDLE])),
                    ok=(200,)) for i in range(0, len(ps.bodies), BUNDLE)]
    c0 = server.cpu()
    answers, seconds = run_requests(port, reqs, concurrency=2)
    cpu = server.cpu() - c0
    check_answers(answers, reqs, "loading patients")
    n = len(ps.bodies)
    out = {"resources": n, "bundles": len(reqs), "bundle_size": BUNDLE, "seconds_s":
           round(seconds, 2), "resources_per_s": round(n / seconds, 1),
           "server_cpu_per_resource_ms": round(cpu / n * 1e3, 3)}
    log(f"{server.label}: loaded {n} patients in {seconds:.1f} s ({out['resources_per_s']}/s)")
    return out


def before_analyze(srv: Any, mk: RequestMaker, ps: PatientSet, dbname: str,
                   args: argparse.Namespace) -> dict[str, Any]:
    """PostgreSQL right after a bulk load: its planner has no statistics on the new rows yet
    (autovacuum analyses them later). Time one search by identifier (the query is cancelled
    after ``--probe-timeout`` seconds), then ANALYZE, as an operator would, and time it again.
    The loads that follow run on analysed tables."""
    req = mk.get(search_path("identifier", f"{INS_NIR_SYSTEM}|{ps.nirs[0]}"))

    def once() -> float | None:
        t0 = time.perf_counter()
        try:
            answers, _ = run_requests(srv.port, [req], concurrency=1,
                                      timeout=args.probe_timeout)
        except TimeoutError:
            pg_cancel_queries(dbname)
            time.sleep(1)
            return None
        return time.perf_counter() - t0 if answers[0][0] == 200 else None

    first = once()
    t0 = time.perf_counter()
    pg_in(dbname, "ANALYZE")
    analyze_s = time.perf_counter() - t0
    after = once()
    out = {"search_before_analyze_s": round(first, 3) if first is not None else None,
           "search_before_analyze_cancelled_after_s": None if first is not None
           else args.probe_timeout,
           "analyze_s": round(analyze_s, 2),
           "search_after_analyze_s": round(after, 4) if after is not None else None}
    log(f"{srv.label}: one search before ANALYZE: "
        f"{out['search_before_analyze_s'] or f'> {args.probe_timeout} s (cancelled)'}; "
        f"after: {out['search_after_analyze_s']} s")
    return out


def searches(mk: RequestMaker, ps: PatientSet, clients: int
             ) -> tuple[dict[str, Any], dict[bytes, int]]:
    expected: dict[bytes, int] = {}
    by_id = []
    for nir in ps.nirs:
        r = mk.get(search_path("identifier", f"{INS_NIR_SYSTEM}|{nir}"))
        expected[r.data] = 1
        by_id.append(r)
    by_family = []
    for fam in ps.families:
        r = mk.get(search_path("family", fam))
        expected[r.data] = ps.family_count[fam]
        by_family.append(r)
    rngs = [random.Random(2000 + c) for c in range(clients)]

    def identifier(ci: int, n: int) -> Request:
        return by_id[rngs[ci].randrange(len(by_id))]

    def family(ci: int, n: int) -> Request:
        return by_family[rngs[ci].randrange(len(by_family))]

    return {"identifier": identifier, "family": family}, expected


def run_ops(port: int, mk: RequestMaker, ps: PatientSet, args: argparse.Namespace,
            server: Any, postgres: str | None) -> dict[str, Any]:
    make, expected = searches(mk, ps, args.clients)

    def check(req: Request, status: int, body: bytes) -> bool:
        doc = orjson.loads(body)
        want = expected[req.data]
        return bool(doc.get("total") == want and len(doc.get("entry") or []) == min(want, 50))

    out: dict[str, Any] = {}
    for op in OPS:
        res = run_load(port, make[op], clients=args.clients, duration=args.duration,
                       warmup=args.warmup, server=server, postgres=postgres, check=check)
        figs = res.figures()
        mem = server.memory()
        figs["server_rss_mb"] = mem["rss_mb"]
        figs["server_pss_mb"] = mem["pss_mb"]
        if res.error_codes:
            figs["error_codes"] = res.error_codes
        out[op] = figs
        log(f"{server.label} search by {op}: {figs['rps']} req/s p50 {figs['p50_ms']} ms "
            f"p99 {figs['p99_ms']} ms errors {figs['errors']}")
    return out


def bench_hygie(backend: str, args: argparse.Namespace, ps: PatientSet) -> dict[str, Any]:
    with instance(backend) as inst:
        cid, secret = inst.add_client()
        with hygie_server(inst, workers=args.workers) as srv:
            mk = RequestMaker(srv.port, get_token(srv.base, cid, secret))
            out: dict[str, Any] = {"load": load(srv.port, mk, ps, srv)}
            if inst.dbname:
                out["before_analyze"] = before_analyze(srv, mk, ps, inst.dbname, args)
            out.update(run_ops(srv.port, mk, ps, args, srv, inst.dbname))
            problems = srv.problems()
            if problems:
                out["server_log_problems"] = problems
    return out


def bench_raw(args: argparse.Namespace, ps: PatientSet) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hygie-bench-raw-") as tmp, \
            raw_server(Path(tmp) / "raw.db", workers=args.workers) as srv:
        mk = RequestMaker(srv.port)
        out: dict[str, Any] = {"load": load(srv.port, mk, ps, srv)}
        out.update(run_ops(srv.port, mk, ps, args, srv, None))
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--patients", type=int, help="patients loaded (10000, quick 1000)")
    parser.add_argument("--duration", type=float, help="seconds per load (default 10, quick 1.5)")
    parser.add_argument("--warmup", type=float, help="seconds before each load (2, quick 0.3)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--probe-timeout", type=float, default=10.0,
                        help="PostgreSQL: give up on the search before ANALYZE after N s")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.patients = args.patients or (1000 if args.quick else 10_000)
    args.duration = args.duration or (1.5 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 2.0)

    t0 = time.perf_counter()
    ps = make_patients(args.patients, seed=1789)
    log(f"generated {args.patients} patients, {len(ps.families)} family names "
        f"in {time.perf_counter() - t0:.1f} s")
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not pg_available():
        backends.remove("postgresql")

    results: dict[str, Any] = {"raw_sqlite": bench_raw(args, ps)}
    for backend in backends:
        results[backend] = bench_hygie(backend, args, ps)

    figures: dict[str, Any] = {}
    for system, res in results.items():
        figures[f"{system}.load.resources_per_s"] = res["load"]["resources_per_s"]
        for op in OPS:
            for k, v in res[op].items():
                figures[f"{system}.{op}.{k}"] = v
    for backend in backends:
        h, r = results[backend], results["raw_sqlite"]
        if "before_analyze" in h:
            for k, v in h["before_analyze"].items():
                figures[f"{backend}.before_analyze.{k}"] = v
        figures[f"{backend}.load.vs_raw_ratio"] = ratio(h["load"]["resources_per_s"],
                                                        r["load"]["resources_per_s"])
        for op in OPS:
            figures[f"{backend}.{op}.rps_vs_raw_ratio"] = ratio(h[op]["rps"], r[op]["rps"])
            figures[f"{backend}.{op}.p50_vs_raw_ratio"] = ratio(h[op]["p50_ms"], r[op]["p50_ms"])
            if "server_cpu_per_req_ms" in h[op] and "server_cpu_per_req_ms" in r[op]:
                figures[f"{backend}.{op}.cpu_per_req_vs_raw_ratio"] = ratio(
                    h[op]["server_cpu_per_req_ms"], r[op]["server_cpu_per_req_ms"])
    counts = list(ps.family_count.values())
    doc = {"benchmark": "search", "quick": args.quick, "patients": args.patients,
           "family_names": len(ps.families),
           "family_matches_mean": round(sum(counts) / len(counts), 2),
           "family_matches_max": max(counts), "clients": args.clients,
           "workers": args.workers, "duration_s": args.duration, "warmup_s": args.warmup,
           "machine": machine(),
           "load_generator": "bench/common.py: asyncio streams on uvloop, keep-alive, closed loop",
           "baseline": "bench/raw_server.py: same uvicorn, sqlite3 table with indexed clear-text "
                       "identifier and family columns, count + LIMIT 50, no crypto/audit/auth",
           "results": results, "figures": figures}
    write_result("search", doc, args.out)
    emit("search", figures)
    errors = sum(results[s][op]["errors"] for s in results for op in OPS)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
