"""CRUD throughput and latency of ``hygie serve`` (2 workers) under 16 concurrent clients.

For each backend (SQLite, PostgreSQL), on a fresh instance made with ``hygie init``:
seed ``--seed`` synthetic Patients (transaction Bundles of 500), then run, one after the other,
closed-loop loads of ``--clients`` keep-alive connections for ``--duration`` seconds (after
``--warmup`` seconds not counted):

* read: ``GET /fhir/Patient/{id}`` of random seeded patients;
* create: ``POST /fhir/Patient`` of new synthetic patients;
* update: ``PUT /fhir/Patient/{id}``, each client on its own share of the seeded patients.

The same three loads run, in the same run, against the raw baseline (``raw_server.py``: the
same uvicorn, plain ``sqlite3`` table ``(id TEXT PRIMARY KEY, json BLOB)``, no validation,
crypto, audit or auth), and each Hygie figure is also given as a ratio to it.

Then, on the same server: a short contention probe (all clients PUT the same 2 patients: any
answer other than 200 is counted, by code) and, in a full run, a sweep of read and create with
1 and 4 clients (``--sweep``) to show how throughput and CPU per request change with
concurrency.

Figures: req/s, p50/p90/p99 latency, errors (must be 0; reported as HTTP status and
OperationOutcome code), server CPU (cores, and CPU-ms per request), load generator CPU, server
memory (RSS and PSS of the process tree) at the end of each load. Writes
bench/results/crud.json.

    .venv/bin/python bench/bench_crud.py              # 10 s per load
    .venv/bin/python bench/bench_crud.py --quick      # 1.5 s per load
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import (
    RequestMaker,
    check_answers,
    created_ids,
    emit,
    get_token,
    hygie_server,
    instance,
    log,
    machine,
    make_patients,
    pg_available,
    ratio,
    raw_server,
    run_load,
    run_requests,
    transaction_bundle,
    write_result,
)
from raw_server import _stamp, init_db

OPS = ("read", "create", "update")


def makers(mk: RequestMaker, ids: list[str], bodies: list[dict[str, Any]],
           new_bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    rngs = [random.Random(1000 + c) for c in range(clients)]
    shares = [list(range(c, len(ids), clients)) for c in range(clients)]
    reads = [mk.get(f"/fhir/Patient/{i}") for i in ids]

    def read(ci: int, n: int) -> Any:
        return reads[rngs[ci].randrange(len(reads))]

    def create(ci: int, n: int) -> Any:
        body = new_bodies[(n * clients + ci) % len(new_bodies)]
        return mk.send("POST", "/fhir/Patient", orjson.dumps(body), ok=(201,))

    def update(ci: int, n: int) -> Any:
        k = shares[ci][n % len(shares[ci])]
        body = {**bodies[k], "id": ids[k],
                "telecom": [{"system": "phone", "value": f"06{n % 10**8:08d}", "use": "mobile"}]}
        return mk.send("PUT", f"/fhir/Patient/{ids[k]}", orjson.dumps(body), ok=(200,))

    return {"read": read, "create": create, "update": update}


def read_check(req: Any, status: int, body: bytes) -> bool:
    want = req.data.split(b" ", 2)[1].rsplit(b"/", 1)[1].decode()
    doc = orjson.loads(body)
    return bool(doc.get("resourceType") == "Patient" and doc.get("id") == want)


def run_ops(port: int, make: dict[str, Any], args: argparse.Namespace, server: Any,
            postgres: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in OPS:
        res = run_load(port, make[op], clients=args.clients, duration=args.duration,
                       warmup=args.warmup, server=server, postgres=postgres,
                       check=read_check if op == "read" else None)
        figs = res.figures()
        mem = server.memory()
        figs["server_rss_mb"] = mem["rss_mb"]
        figs["server_pss_mb"] = mem["pss_mb"]
        if res.error_codes:
            figs["error_codes"] = res.error_codes
        out[op] = figs
        log(f"{server.label} {op}: {figs['rps']} req/s p50 {figs['p50_ms']} ms "
            f"p99 {figs['p99_ms']} ms errors {figs['errors']} rss {mem['rss_mb']} MB")
    return out


def sweep(srv: Any, mk: RequestMaker, ids: list[str], bodies: list[dict[str, Any]],
          new_bodies: list[dict[str, Any]], args: argparse.Namespace,
          dbname: str | None) -> dict[str, Any]:
    """Read and create with fewer clients: how throughput and CPU per request change with
    concurrency (the 16-client figures are the main ones)."""
    out: dict[str, Any] = {}
    for clients in args.sweep:
        make = makers(mk, ids, bodies, new_bodies, clients)
        for op in ("read", "create"):
            res = run_load(srv.port, make[op], clients=clients,
                           duration=min(args.duration, 5.0), warmup=min(args.warmup, 1.0),
                           server=srv, postgres=dbname)
            f = res.figures()
            out[f"{op}_{clients}_clients"] = {k: f[k] for k in (
                "rps", "p50_ms", "p99_ms", "errors", "server_cpu_cores", "server_cpu_per_req_ms",
                "other_cpu_cores") if k in f}
            log(f"{srv.label} {op} with {clients} client(s): {f['rps']} req/s, "
                f"{f.get('server_cpu_per_req_ms')} CPU-ms/request")
    return out


def contended(port: int, mk: RequestMaker, ids: list[str], bodies: list[dict[str, Any]],
              args: argparse.Namespace) -> dict[str, Any]:
    """Probe, not a throughput figure: all clients PUT the same 2 patients at once. A server
    that serialises writers answers 200 to all; each 409 is a write refused under contention."""

    def make(ci: int, n: int) -> Any:
        k = n % 2
        body = {**bodies[k], "id": ids[k], "active": n % 2 == 0}
        return mk.send("PUT", f"/fhir/Patient/{ids[k]}", orjson.dumps(body), ok=(200,))

    res = run_load(port, make, clients=args.clients, duration=min(args.duration, 3.0), warmup=0)
    total = res.requests + res.errors
    out = {"requests": total, "ok": res.requests, "errors": res.errors,
           "error_pct": round(100 * res.errors / total, 1) if total else 0.0,
           "error_codes": res.error_codes}
    log(f"contended update (16 clients, 2 ids): {out['error_pct']}% refused {res.error_codes}")
    return out


def seed(port: int, mk: RequestMaker, bodies: list[dict[str, Any]]) -> list[str]:
    reqs = [mk.send("POST", "/fhir", orjson.dumps(transaction_bundle(bodies[i:i + 500])),
                    ok=(200,)) for i in range(0, len(bodies), 500)]
    answers, _ = run_requests(port, reqs, concurrency=2)
    check_answers(answers, reqs, "seeding")
    return [rid for _, body in answers for rid in created_ids(body)]


def bench_hygie(backend: str, args: argparse.Namespace, bodies: list[dict[str, Any]],
                new_bodies: list[dict[str, Any]]) -> dict[str, Any]:
    with instance(backend) as inst:
        cid, secret = inst.add_client()
        with hygie_server(inst, workers=args.workers) as srv:
            mk = RequestMaker(srv.port, get_token(srv.base, cid, secret))
            t0 = time.perf_counter()
            ids = seed(srv.port, mk, bodies)
            log(f"{srv.label}: seeded {len(ids)} patients in {time.perf_counter() - t0:.1f} s")
            out = run_ops(srv.port, makers(mk, ids, bodies, new_bodies, args.clients), args, srv,
                          inst.dbname)
            out["contended_update"] = contended(srv.port, mk, ids, bodies, args)
            if args.sweep:
                out["sweep"] = sweep(srv, mk, ids, bodies, new_bodies, args, inst.dbname)
            problems = srv.problems()
            if problems:
                out["server_log_problems"] = problems
    return out


def bench_raw(args: argparse.Namespace, bodies: list[dict[str, Any]],
              new_bodies: list[dict[str, Any]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hygie-bench-raw-") as tmp:
        db = Path(tmp) / "raw.db"
        init_db(str(db))
        ids = [f"{i:08x}-seed" for i in range(len(bodies))]
        conn = sqlite3.connect(db)
        with conn:
            conn.executemany("INSERT INTO res (id, json) VALUES (?, ?)",
                             [(rid, _stamp(dict(b), rid)) for rid, b in zip(ids, bodies,
                                                                             strict=True)])
        conn.close()
        with raw_server(db, workers=args.workers) as srv:
            mk = RequestMaker(srv.port)
            return run_ops(srv.port, makers(mk, ids, bodies, new_bodies, args.clients), args,
                           srv, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--duration", type=float, help="seconds per load (default 10, quick 1.5)")
    parser.add_argument("--warmup", type=float, help="seconds before each load (2, quick 0.3)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, help="patients seeded for read/update (1000, 500)")
    parser.add_argument("--sweep", help="also read/create with these client counts "
                        "(default 1,4; quick: none; '' for none)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.5 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 2.0)
    args.seed = args.seed or (500 if args.quick else 1000)
    if args.sweep is None:
        args.sweep = "" if args.quick else "1,4"
    args.sweep = [int(c) for c in args.sweep.split(",") if c]

    bodies = make_patients(args.seed, seed=11).bodies
    new_bodies = make_patients(2000, seed=12).bodies
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not pg_available():
        backends.remove("postgresql")

    results: dict[str, Any] = {}
    results["raw_sqlite"] = bench_raw(args, bodies, new_bodies)
    for backend in backends:
        results[backend] = bench_hygie(backend, args, bodies, new_bodies)

    figures: dict[str, Any] = {}
    for system, ops in results.items():
        for op in OPS:
            for k, v in ops[op].items():
                figures[f"{system}.{op}.{k}"] = v
    for backend in backends:
        for name, f in results[backend].get("sweep", {}).items():
            for k in ("rps", "p50_ms", "server_cpu_per_req_ms"):
                if k in f:
                    figures[f"{backend}.sweep.{name}.{k}"] = f[k]
        figures[f"{backend}.contended_update.error_pct"] = results[backend][
            "contended_update"]["error_pct"]
        for op in OPS:
            h, r = results[backend][op], results["raw_sqlite"][op]
            figures[f"{backend}.{op}.rps_vs_raw_ratio"] = ratio(h["rps"], r["rps"])
            figures[f"{backend}.{op}.p50_vs_raw_ratio"] = ratio(h["p50_ms"], r["p50_ms"])
            if "server_cpu_per_req_ms" in h and "server_cpu_per_req_ms" in r:
                figures[f"{backend}.{op}.cpu_per_req_vs_raw_ratio"] = ratio(
                    h["server_cpu_per_req_ms"], r["server_cpu_per_req_ms"])
    doc = {"benchmark": "crud", "quick": args.quick, "clients": args.clients,
           "workers": args.workers, "duration_s": args.duration, "warmup_s": args.warmup,
           "seeded_patients": args.seed, "machine": machine(),
           "load_generator": "bench/common.py: asyncio streams on uvloop, keep-alive, closed loop",
           "baseline": "bench/raw_server.py: same uvicorn, sqlite3 (id TEXT PRIMARY KEY, json "
                       "BLOB), WAL, synchronous=NORMAL, no validation/crypto/audit/auth/history",
           "results": results, "figures": figures}
    write_result("crud", doc, args.out)
    emit("crud", figures)
    errors = sum(results[s][op]["errors"] for s in results for op in OPS)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
