"""Import throughput: ``hygie import`` of the Synthea transaction Bundles, SQLite and PostgreSQL.

Source: ../shared/data/synthea (52 patient Bundles and two directory Bundles,
``hospitalInformation*`` and ``practitionerInformation*``), else tests/fixtures/synthea.
Import runs with ``keep_going``: a Bundle that fails is skipped and reported (by file kind,
never content); the figure counts the resources of the Bundles imported.

Two measures per backend, each on a fresh instance made with ``hygie init``:

* in-process: ``hygie.records.importer.run_import(gate, folder, keep_going=True)`` timed alone,
  in a child Python process, after the runtime is opened and the FHIR models are warmed up
  (``warm_up()``, what ``hygie serve`` does at start) — the steady import rate;
* CLI: wall time of ``hygie import FOLDER --data-dir DIR --keep-going --json`` as an operator
  runs it (process start, model loading and all).

Baseline in the same run: the same files parsed, ``urn:uuid`` references rewritten and every
resource's JSON inserted into a plain ``sqlite3`` table ``(id TEXT PRIMARY KEY, json BLOB)``
(WAL, synchronous=NORMAL), one transaction per Bundle, single thread. Writes
bench/results/import.json.

    .venv/bin/python bench/bench_import.py
    .venv/bin/python bench/bench_import.py --quick     # the 8 smallest bundles, in-process only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from common import (
    HYGIE,
    emit,
    instance,
    log,
    machine,
    pg_available,
    ratio,
    synthea_dir,
    write_result,
)

DIRECTORY_BUNDLES = ("hospitalInformation", "practitionerInformation")


def pick_sources(quick: bool) -> tuple[Path, list[Path], Path | None]:
    """The folder to import (a temp folder of links in quick mode) and its files."""
    src = synthea_dir()
    files = sorted(src.glob("*.json"))
    if not quick:
        return src, files, None
    tmp = Path(tempfile.mkdtemp(prefix="hygie-bench-src-"))
    small = sorted((f for f in files if not f.name.startswith(DIRECTORY_BUNDLES)),
                   key=lambda f: f.stat().st_size)[:8]
    for f in small:
        (tmp / f.name).symlink_to(f)
    return tmp, sorted(tmp.glob("*.json")), tmp


def kind_of(label: str) -> str:
    """A failed unit's kind, never its (patient-named) file name."""
    for prefix in DIRECTORY_BUNDLES:
        if label.startswith(prefix):
            return prefix
    return "patient-bundle"


def worker(data_dir: Path, src: Path) -> dict[str, Any]:
    """Child process: open the runtime, warm up, then time run_import alone."""
    from hygie.api.app import open_runtime
    from hygie.fhir.validation import warm_up
    from hygie.records.importer import run_import
    from hygie.settings import load_settings

    rt = open_runtime(load_settings(data_dir))
    warm_up()
    c0, t0 = time.process_time(), time.perf_counter()
    report = run_import(rt.gate, src, page_max=rt.settings.page_size_max, keep_going=True)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rt.engine.dispose()
    return {"seconds": seconds, "cpu_s": cpu, "resources": report.resources,
            "bundles": report.units, "files": report.files,
            "failed": [{"kind": kind_of(f), "reason": f.split(": ", 1)[-1][:160]}
                       for f in report.failed],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def in_process(backend: str, src: Path) -> dict[str, Any]:
    with instance(backend) as inst, tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--worker", str(inst.data_dir), str(src),
                        out.name], check=True, timeout=1800)
        r = json.loads(Path(out.name).read_text())
    r["resources_per_s"] = round(r["resources"] / r["seconds"], 1)
    r["cpu_per_resource_ms"] = round(r["cpu_s"] / r["resources"] * 1e3, 3)
    log(f"import in-process ({backend}): {r['resources']} resources in {r['seconds']:.1f} s = "
        f"{r['resources_per_s']}/s; failed bundles: {[f['kind'] for f in r['failed']]}")
    return r


def cli(backend: str, src: Path) -> dict[str, Any]:
    with instance(backend) as inst:
        t0 = time.perf_counter()
        proc = subprocess.run([HYGIE, "import", str(src), "--data-dir", str(inst.data_dir),
                               "--keep-going", "--json"], capture_output=True, text=True,
                              timeout=1800, check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"hygie import exited {proc.returncode}")
        doc = json.loads(proc.stdout)
        t0 = time.perf_counter()  # a second run: every unit is in the journal already
        subprocess.run([HYGIE, "import", str(src), "--data-dir", str(inst.data_dir),
                        "--keep-going", "--json"], capture_output=True, timeout=1800,
                       check=False)
        resume_s = time.perf_counter() - t0
    r = {"seconds": round(seconds, 2), "resources": doc["resources"],
         "bundles": doc["bundles_imported"], "exit_code": proc.returncode,
         "failed_kinds": [kind_of(f) for f in doc["failed"]],
         "resources_per_s": round(doc["resources"] / seconds, 1),
         "rerun_all_skipped_s": round(resume_s, 2)}
    log(f"hygie import CLI ({backend}): {r['resources']} resources in {seconds:.1f} s = "
        f"{r['resources_per_s']}/s (exit {proc.returncode}); re-run {resume_s:.1f} s")
    return r


def _rewrite(node: Any, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in refs:
                node[k] = refs[v]
            elif isinstance(v, dict | list):
                _rewrite(v, refs)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, refs)


def raw(files: list[Path], skip: set[str]) -> dict[str, Any]:
    """Baseline: the same bundles into plain SQLite, single thread."""
    with tempfile.TemporaryDirectory(prefix="hygie-bench-raw-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE res (id TEXT PRIMARY KEY, json BLOB NOT NULL)")
        n = 0
        t0 = time.perf_counter()
        for f in files:
            if f.name.startswith(tuple(skip)):
                continue
            doc = orjson.loads(f.read_bytes())
            refs: dict[str, str] = {}
            rows = []
            for e in doc.get("entry") or []:
                r = e["resource"]
                rid = str(uuid.uuid4())
                if str(e.get("fullUrl", "")).startswith("urn:uuid:"):
                    refs[e["fullUrl"]] = f"{r['resourceType']}/{rid}"
                rows.append((rid, r))
            conn.execute("BEGIN IMMEDIATE")
            for rid, r in rows:
                _rewrite(r, refs)
                r["id"] = rid
                conn.execute("INSERT INTO res (id, json) VALUES (?, ?)", (rid, orjson.dumps(r)))
            conn.execute("COMMIT")
            n += len(rows)
        seconds = time.perf_counter() - t0
        conn.close()
    out = {"resources": n, "seconds": round(seconds, 3),
           "resources_per_s": round(n / seconds, 1)}
    log(f"raw sqlite import: {n} resources in {seconds:.2f} s = {out['resources_per_s']}/s")
    return out



def _relative(path: Path) -> str:
    """The path relative to the repository's parent (no machine path in the results)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return "../" + str(path.resolve().relative_to(root))
    except ValueError:
        return path.name

def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--worker":
        Path(sys.argv[4]).write_text(json.dumps(worker(Path(sys.argv[2]), Path(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the 8 smallest patient bundles, in-process only")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI wall-time runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    src, files, tmp = pick_sources(args.quick)
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not pg_available():
        backends.remove("postgresql")
    log(f"importing {len(files)} bundle files from {src}")
    results: dict[str, Any] = {}
    try:
        for backend in backends:
            results[backend] = {"in_process": in_process(backend, src)}
            if not (args.quick or args.no_cli):
                results[backend]["cli"] = cli(backend, src)
        failed = {f["kind"] for b in results.values() for f in b["in_process"]["failed"]}
        results["raw_sqlite"] = raw(files, {k for k in failed if k in DIRECTORY_BUNDLES})
    finally:
        if tmp is not None:
            for f in tmp.iterdir():
                f.unlink()
            os.rmdir(tmp)
    figures: dict[str, Any] = {"raw_sqlite.resources_per_s": results["raw_sqlite"][
        "resources_per_s"]}
    for backend in backends:
        ip = results[backend]["in_process"]
        figures[f"{backend}.in_process.resources"] = ip["resources"]
        figures[f"{backend}.in_process.resources_per_s"] = ip["resources_per_s"]
        figures[f"{backend}.in_process.cpu_per_resource_ms"] = ip["cpu_per_resource_ms"]
        figures[f"{backend}.in_process.peak_rss_mb"] = ip["peak_rss_mb"]
        figures[f"{backend}.in_process.failed_bundles"] = len(ip["failed"])
        figures[f"{backend}.in_process.vs_raw_ratio"] = ratio(
            ip["resources_per_s"], results["raw_sqlite"]["resources_per_s"])
        if "cli" in results[backend]:
            c = results[backend]["cli"]
            figures[f"{backend}.cli.seconds_s"] = c["seconds"]
            figures[f"{backend}.cli.resources_per_s"] = c["resources_per_s"]
            figures[f"{backend}.cli.rerun_all_skipped_s"] = c["rerun_all_skipped_s"]
    doc = {"benchmark": "import", "quick": args.quick, "source": _relative(synthea_dir()),
           "files": len(files), "machine": machine(),
           "method": "in_process = run_import() timed alone in a child process after "
                     "warm_up(); cli = wall time of 'hygie import --keep-going --json'",
           "baseline": "plain sqlite3 (id TEXT PRIMARY KEY, json BLOB), WAL, synchronous="
                       "NORMAL, one transaction per bundle, single thread, same files",
           "results": results, "figures": figures}
    write_result("import", doc, args.out)
    emit("import", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
