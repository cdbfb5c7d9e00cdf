"""Backup and restore: ``hygie backup create|verify``, ``hygie restore`` and ``hygie ledger verify``
timed against a plain ``cp -r`` of the data dir (issue 5 item 9).

Data sets, each on a fresh instance made with ``hygie init``:

* ``synthea``: every Bundle of ../shared/data/synthea (else tests/fixtures/synthea), loaded
  with ``hygie import --keep-going``; skipped with a message when there is none;
* ``generated``: ``--patients`` (default 10,000) synthetic French patients (``make_patients``
  identities) with ``--per-patient`` (default 100) resources each — Patient, Encounters,
  Observations, DiagnosticReports, Conditions, Procedures, MedicationRequests, Immunizations,
  with Synthea-like sizes — written in-process through the gate (``Door.create``: validated,
  sealed under each patient's key, indexed, one ledger entry per resource, exactly as an import
  does) in transactions of ``BATCH_PATIENTS`` patients. Generation time is reported, it is
  not a figure. The generated instance is cached (SQLite: a copy of the data dir; PostgreSQL:
  a template database) under ``$TMPDIR/hygie-bench-cache`` keyed by schema revision,
  generator version, N and per-patient count, so reruns skip the generation
  (``--no-cache`` regenerates; the result file says whether the cache was used).

Per data set and backend, all as the operator runs them (CLI subprocesses, wall time, process
start included):

* ``cp -r`` of the data dir, ``--repeat`` times before and ``--repeat`` times after the
  backups (median of each; the page cache is warm for both: dropping it needs root, so every
  run is a warm-cache run, and running cp on both sides of the backups keeps it fair);
* PostgreSQL only: ``pg_dump -Fc`` of the same database (the raw floor of a dump), median;
* ``hygie backup create --json`` (median of ``--repeat``), ``hygie backup verify`` (median),
  ``hygie restore`` into a new data dir (PostgreSQL: a new, empty database) — which checks the
  key, the manifest and recomputes the whole ledger before it answers — and
  ``hygie ledger verify`` of the restored instance (median of ``--repeat`` restores);
* bytes of the data dir (SQLite: database, WAL and all; PostgreSQL: ``pg_database_size``)
  and of the backup, and throughputs in MB/s (MB = 10^6 bytes) over the data's bytes.

Ratios in the same run: backup_throughput / cp_throughput (SQLite) and
backup_throughput / pg_dump_throughput (PostgreSQL). Goals (issue 5): restore + verify of
10,000 patients <= 60 s; backup >= 0.5 x cp. Writes bench/results/backup.json; no health
data is printed or written.

    .venv/bin/python bench/bench_backup.py                 # full: both data sets, both backends
    .venv/bin/python bench/bench_backup.py --quick         # 8 Synthea bundles + 200 patients
    .venv/bin/python bench/bench_backup.py --datasets generated --backends sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import (
    HYGIE,
    PG_ADMIN,
    Instance,
    create_instance,
    emit,
    log,
    machine,
    make_patients,
    pg_admin,
    pg_available,
    pg_in,
    pg_url,
    ratio,
    run_cli,
    synthea_dir,
    write_result,
)

GEN_VERSION = 1  # bump when the generated resources change (invalidates the cache)
BATCH_PATIENTS = 10  # patients per gate transaction while generating
MB = 1_000_000

# -- the generated data set -------------------------------------------------------------------
LOINC = [("8302-2", "Body Height", "cm", 150, 195), ("29463-7", "Body Weight", "kg", 45, 110),
         ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 35),
         ("8462-4", "Diastolic Blood Pressure", "mm[Hg]", 60, 95),
         ("8480-6", "Systolic Blood Pressure", "mm[Hg]", 100, 160),
         ("8867-4", "Heart rate", "/min", 50, 110), ("9279-1", "Respiratory rate", "/min", 12, 22),
         ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 140),
         ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260),
         ("2571-8", "Triglycerides", "mg/dL", 60, 250), ("4548-4", "Hemoglobin A1c", "%", 4, 9),
         ("6299-2", "Urea nitrogen [Mass/volume] in Blood", "mg/dL", 7, 25),
         ("38483-4", "Creatinine [Mass/volume] in Blood", "mg/dL", 0.6, 1.4)]
CONDITIONS = [("44054006", "Diabetes"), ("38341003", "Hypertension"),
              ("195662009", "Acute viral pharyngitis"), ("10509002", "Acute bronchitis"),
              ("40055000", "Chronic sinusitis"), ("55822004", "Hyperlipidemia"),
              ("444814009", "Viral sinusitis"), ("162864005", "Body mass index 30+ - obesity"),
              ("59621000", "Essential hypertension"), ("15777000", "Prediabetes")]
PROCEDURES = [("430193006", "Medication reconciliation (procedure)"),
              ("710824005", "Assessment of health and social care needs (procedure)"),
              ("171207006", "Depression screening (procedure)"),
              ("428191000124101", "Documentation of current medications (procedure)"),
              ("73761001", "Colonoscopy"), ("117015009", "Throat culture (procedure)")]
MEDICATIONS = [("314076", "lisinopril 10 MG Oral Tablet"),
               ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
               ("197361", "amlodipine 5 MG Oral Tablet"),
               ("310965", "Ibuprofen 200 MG Oral Tablet"),
               ("313782", "Acetaminophen 325 MG Oral Tablet"),
               ("308136", "amLODIPine 2.5 MG Oral Tablet")]
VACCINES = [("140", "Influenza, seasonal, injectable, preservative free"),
            ("113", "Td (adult) preservative free"), ("133", "Pneumococcal conjugate PCV 13"),
            ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, 30 mcg/0.3mL")]
ENCOUNTER_TYPES = [("162673000", "General examination of patient (procedure)"),
                   ("185345009", "Encounter for symptom"), ("410620009", "Well child visit"),
                   ("185347001", "Encounter for problem (procedure)")]
SNOMED, LOINC_SYS = "http://snomed.info/sct", "http://loinc.org"
RXNORM, CVX = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/cvx"


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _when(rng: random.Random, year: int) -> tuple[str, str]:
    y = rng.randint(max(year, 2000), 2024)
    base = f"{y:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 18):02d}"
    return f"{base}:00:00+01:00", f"{base}:45:00+01:00"


def patient_resources(body: dict[str, Any], per_patient: int, rng: random.Random
                      ) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, id, resource) of one patient: the Patient first, then ``per_patient - 1`` more
    (about 10% Encounters, 55% Observations, 5% DiagnosticReports, the rest Conditions,
    Procedures, MedicationRequests and Immunizations)."""
    pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    out: list[tuple[str, str, dict[str, Any]]] = [("Patient", pid, dict(body))]
    subject = {"reference": f"Patient/{pid}"}
    year = int(body["birthDate"][:4])
    n_enc = max(1, per_patient // 10)
    rest = per_patient - 1 - n_enc
    n_obs, n_rep = rest * 61 // 100, rest * 6 // 100
    n_other = rest - n_obs - n_rep
    encounters = []
    for _ in range(n_enc):
        eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start, end = _when(rng, year)
        code, display = rng.choice(ENCOUNTER_TYPES)
        encounters.append((eid, start, end))
        out.append(("Encounter", eid, {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "type": [_cc(SNOMED, code, display)], "subject": subject,
            "participant": [{"type": [_cc(
                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF",
                "primary performer")], "period": {"start": start, "end": end}}],
            "period": {"start": start, "end": end},
            "serviceProvider": {"display": "Cabinet médical du centre"}}))
    obs_ids: list[str] = []
    for _ in range(n_obs):
        oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        obs_ids.append(oid)
        eid, start, _end = rng.choice(encounters)
        code, display, unit, lo, hi = rng.choice(LOINC)
        category = "vital-signs" if lo >= 12 and unit != "mg/dL" else "laboratory"
        out.append(("Observation", oid, {
            "resourceType": "Observation", "status": "final",
            "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category",
                             category, category.replace("-", " ").title())],
            "code": _cc(LOINC_SYS, code, display), "subject": subject,
            "encounter": {"reference": f"Encounter/{eid}"}, "effectiveDateTime": start,
            "issued": start[:19] + ".000+01:00",
            "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}}))
    for i in range(n_rep):
        eid, start, _end = rng.choice(encounters)
        results = obs_ids[i * 5:(i + 1) * 5] or obs_ids[:1]
        out.append(("DiagnosticReport", str(uuid.UUID(int=rng.getrandbits(128), version=4)), {
            "resourceType": "DiagnosticReport", "status": "final",
            "category": [_cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB",
                             "Laboratory")],
            "code": _cc(LOINC_SYS, "51990-0", "Basic metabolic panel - Blood"),
            "subject": subject, "encounter": {"reference": f"Encounter/{eid}"},
            "effectiveDateTime": start, "issued": start[:19] + ".000+01:00",
            "result": [{"reference": f"Observation/{o}"} for o in results]}))
    for i in range(n_other):
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        eid, start, end = rng.choice(encounters)
        enc = {"reference": f"Encounter/{eid}"}
        kind = i % 4
        if kind == 0:
            code, display = rng.choice(CONDITIONS)
            out.append(("Condition", rid, {
                "resourceType": "Condition",
                "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                      rng.choice(["active", "resolved"]), "Clinical status"),
                "verificationStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed",
                    "Confirmed"),
                "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category",
                                 "encounter-diagnosis", "Encounter Diagnosis")],
                "code": _cc(SNOMED, code, display), "subject": subject, "encounter": enc,
                "onsetDateTime": start, "recordedDate": start}))
        elif kind == 1:
            code, display = rng.choice(PROCEDURES)
            out.append(("Procedure", rid, {
                "resourceType": "Procedure", "status": "completed",
                "code": _cc(SNOMED, code, display), "subject": subject, "encounter": enc,
                "performedPeriod": {"start": start, "end": end}}))
        elif kind == 2:
            code, display = rng.choice(MEDICATIONS)
            out.append(("MedicationRequest", rid, {
                "resourceType": "MedicationRequest", "status": rng.choice(["active", "stopped"]),
                "intent": "order", "medicationCodeableConcept": _cc(RXNORM, code, display),
                "subject": subject, "encounter": enc, "authoredOn": start,
                "dosageInstruction": [{"sequence": 1, "text": "1 comprimé matin et soir",
                                       "timing": {"repeat": {"frequency": 2, "period": 1,
                                                             "periodUnit": "d"}},
                                       "asNeededBoolean": False}]}))
        else:
            code, display = rng.choice(VACCINES)
            out.append(("Immunization", rid, {
                "resourceType": "Immunization", "status": "completed",
                "vaccineCode": _cc(CVX, code, display), "patient": subject, "encounter": enc,
                "occurrenceDateTime": start, "primarySource": True}))
    return out


def generate_worker(data_dir: Path, patients: int, per_patient: int, seed: int) -> dict[str, Any]:
    """Child process: write the generated set through the gate; returns counts and timings."""
    from hygie.access.actor import Actor, RequestContext
    from hygie.api.app import open_runtime
    from hygie.fhir.validation import warm_up
    from hygie.settings import load_settings

    rt = open_runtime(load_settings(data_dir))
    warm_up()
    people = make_patients(patients, seed=seed).bodies
    rng = random.Random(seed)
    actor = Actor.system("import")
    resources = 0
    t0 = time.perf_counter()
    last = t0
    for start in range(0, patients, BATCH_PATIENTS):
        batch = [r for body in people[start:start + BATCH_PATIENTS]
                 for r in patient_resources(body, per_patient, rng)]
        with rt.gate.open(actor, RequestContext()) as door:
            for rtype, rid, res in batch:
                door.create(rtype, res, rid=rid)
        resources += len(batch)
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            log(f"generated {start + len(people[start:start + BATCH_PATIENTS])}/{patients} "
                f"patients, {resources} resources, {resources / (last - t0):.0f}/s")
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    rt.ledger.checkpoint()  # what the server does every ledger_checkpoint_seconds
    checkpoint_s = time.perf_counter() - t1
    rt.engine.dispose()
    return {"patients": patients, "resources": resources, "seconds": round(seconds, 1),
            "resources_per_s": round(resources / seconds, 1),
            "checkpoint_s": round(checkpoint_s, 2)}


# -- instances: fresh, imported, generated (cached) ----------------------------------------
CACHE = Path(os.environ.get("HYGIE_BENCH_CACHE")
             or Path(tempfile.gettempdir()) / "hygie-bench-cache")


def cache_key(backend: str, patients: int, per_patient: int, seed: int) -> str:
    """The cached set's name. A set made under an older schema revision is migrated on use
    (``alembic upgrade head``, as an operator upgrades an instance), so new migrations do not
    force a new generation."""
    return f"backup-{backend}-gen{GEN_VERSION}-{patients}x{per_patient}-s{seed}"


def _migrate(url: str) -> str | None:
    """Upgrade a copied instance's schema to head; the revision it had (None: up to date)."""
    from hygie.store.db import current_revision, head_revision, make_engine, migrate

    engine = make_engine(url, pool=False)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision == head_revision():
        return None
    migrate(url)
    return revision


def _cache_db(key: str) -> str:
    return "hygie_bench_cache_" + key.replace("-", "_").replace("backup_", "")[:40]


def _rewrite_config(data_dir: Path, old_dir: str, database_url: str | None = None) -> None:
    """Point a copied instance's hygie.toml at its new place (and database)."""
    cfg = data_dir / "hygie.toml"
    text = cfg.read_text().replace(old_dir, str(data_dir))
    if database_url is not None:
        text = "\n".join(f'database_url = "{database_url}"' if ln.startswith("database_url")
                         else ln for ln in text.splitlines()) + "\n"
    cfg.write_text(text)


def generate(inst: Instance, patients: int, per_patient: int, seed: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--generate-worker", str(inst.data_dir),
                        str(patients), str(per_patient), str(seed), out.name], check=True,
                       timeout=6 * 3600)
        return json.loads(Path(out.name).read_text())


def generated_instance(backend: str, patients: int, per_patient: int, seed: int, *,
                       use_cache: bool) -> tuple[Instance, dict[str, Any]]:
    """A fresh instance holding the generated set: from the cache when it is there (a copy:
    the benchmark writes to it), else generated (and cached when ``use_cache``)."""
    key = cache_key(backend, patients, per_patient, seed)
    cached = CACHE / key
    meta_file = cached / "generation.json"
    if not (use_cache and meta_file.is_file()):
        inst = create_instance(backend)
        log(f"generating {patients} patients x {per_patient} resources ({backend}) ...")
        gen = generate(inst, patients, per_patient, seed)
        gen["machine"] = machine()
        log(f"generated {gen['resources']} resources in {gen['seconds']} s "
            f"({gen['resources_per_s']}/s)")
        if not use_cache:
            return inst, {**gen, "from_cache": False}
        shutil.rmtree(cached, ignore_errors=True)
        cached.mkdir(parents=True, mode=0o700)
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", str(inst.data_dir), str(cached / "data")], check=True)
        if backend == "postgresql":
            db = _cache_db(key)
            pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            pg_admin(f'CREATE DATABASE "{db}" TEMPLATE "{inst.dbname}"')
            gen["cache_db"] = db
        gen["cached_from"] = str(inst.data_dir)
        meta_file.write_text(json.dumps(gen))
        log(f"cached in {time.perf_counter() - t0:.1f} s")
        return inst, {**gen, "from_cache": False}
    gen = json.loads(meta_file.read_text())
    root = Path(tempfile.mkdtemp(prefix=f"hygie-bench-{backend}-"))
    inst = Instance(backend, root / "data", root)
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", str(cached / "data"), str(inst.data_dir)], check=True)
    url = None
    if backend == "postgresql":
        inst.dbname = f"hygie_bench_{uuid.uuid4().hex[:10]}"
        pg_admin(f'CREATE DATABASE "{inst.dbname}" TEMPLATE "{gen["cache_db"]}"')
        url = pg_url(inst.dbname)
    _rewrite_config(inst.data_dir, gen["cached_from"], url)
    log(f"generated set ({backend}) copied from the cache in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    old = _migrate(url or f"sqlite:///{inst.data_dir / 'hygie.db'}")
    if old is not None:
        gen["migrated_from_revision"] = old
        gen["migration_s"] = round(time.perf_counter() - t0, 1)
        log(f"schema migrated from revision {old} in {gen['migration_s']} s")
    return inst, {**gen, "from_cache": True}


# -- measures ---------------------------------------------------------------------------------
def _cpu_children() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], what: str, timeout: float = 3600) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process, stdout) of one command; raises on failure
    with the command's last stderr line (Hygie's one-line errors: no health data)."""
    c0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    seconds, cpu = time.perf_counter() - t0, _cpu_children() - c0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{what} failed ({proc.returncode}): {last[:300]}")
    return seconds, cpu, proc.stdout


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def mb_per_s(nbytes: int, seconds: float) -> float:
    return round(nbytes / MB / seconds, 1) if seconds else 0.0


@contextlib.contextmanager
def scratch(root: Path, name: str) -> Iterator[Path]:
    path = root / name
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cp_runs(inst: Instance, repeat: int) -> tuple[list[float], list[float]]:
    """``repeat`` x ``cp -r`` of the data dir; then ``repeat`` x ``cp -r`` followed by an
    fsync of every copied file (a durable copy, as the backup makes)."""
    plain, durable = [], []
    for i in range(repeat):
        with scratch(inst.root, f"cp-{i}") as dest:
            seconds, _cpu, _ = timed(["cp", "-r", str(inst.data_dir), str(dest)], "cp -r")
            plain.append(seconds)
    for i in range(repeat):
        with scratch(inst.root, f"cp-fsync-{i}") as dest:
            t0 = time.perf_counter()
            timed(["cp", "-r", str(inst.data_dir), str(dest)], "cp -r")
            for f in [dest, *dest.rglob("*")]:
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            durable.append(time.perf_counter() - t0)
    return plain, durable


def startup_floor(repeat: int) -> float:
    """Wall time of 'hygie backup --help': the CLI's process start, in every command below."""
    return median([timed([HYGIE, "backup", "--help"], "hygie --help")[0]
                   for _ in range(max(repeat, 3))])


def pg_dump_runs(inst: Instance, repeat: int) -> tuple[list[float], int]:
    dburl = PG_ADMIN.rsplit("/", 1)[0] + "/" + str(inst.dbname)
    out, size = [], 0
    for i in range(repeat):
        dest = inst.root / f"floor-{i}.pgdump"
        try:
            seconds, _cpu, _ = timed(["pg_dump", "--format=custom", "--no-owner",
                                      "--no-privileges", "--file", str(dest), "--dbname", dburl],
                                     "pg_dump")
            size = dest.stat().st_size
        finally:
            dest.unlink(missing_ok=True)
        out.append(seconds)
    return out, size


def measure(inst: Instance, repeat: int, ledger_verify: bool) -> dict[str, Any]:
    """cp (before), pg_dump, then ``repeat`` x (backup create, verify, restore, ledger verify),
    then cp (after): medians, bytes, throughputs and ratios."""
    d = str(inst.data_dir)
    r: dict[str, Any] = {}
    if inst.backend == "sqlite":
        data_bytes = tree_bytes(inst.data_dir)
    else:
        data_bytes = int(pg_in(str(inst.dbname), "SELECT pg_database_size(current_database())"
                               )[0][0])
    r["data_bytes"] = data_bytes
    r["data_dir_bytes"] = tree_bytes(inst.data_dir)
    cp_before, cpf_before = cp_runs(inst, repeat)
    if inst.backend == "postgresql":
        dumps, dump_size = pg_dump_runs(inst, repeat)
        r["pg_dump_s"] = median(dumps)
        r["pg_dump_runs_s"] = [round(x, 3) for x in dumps]
        r["pg_dump_bytes"] = dump_size
    runs: dict[str, list[float]] = {k: [] for k in (
        "backup_s", "backup_cpu_s", "verify_s", "restore_s", "restore_cpu_s",
        "ledger_verify_s", "ledger_verify_cpu_s")}
    for i in range(repeat):
        with scratch(inst.root, f"backups-{i}") as to, scratch(inst.root, f"restored-{i}") as rd:
            seconds, cpu, out = timed([HYGIE, "backup", "create", "--data-dir", d, "--to",
                                       str(to), "--json"], "hygie backup create")
            made = json.loads(out)
            backup = Path(made["backup"])
            runs["backup_s"].append(seconds)
            runs["backup_cpu_s"].append(cpu)
            r["backup_bytes"] = tree_bytes(backup)
            r["resources"] = made["resources"]
            r["ledger_size"] = made["ledger_size"]
            seconds, _cpu, _ = timed([HYGIE, "backup", "verify", str(backup), "--json"],
                                     "hygie backup verify")
            runs["verify_s"].append(seconds)
            cmd = [HYGIE, "restore", str(backup), "--data-dir", str(rd), "--key-file",
                   str(inst.data_dir / "kek.json"), "--json"]
            target_db = None
            if inst.backend == "postgresql":
                target_db = f"hygie_bench_{uuid.uuid4().hex[:10]}"
                pg_admin(f'CREATE DATABASE "{target_db}"')
                cmd += ["--database-url", pg_url(target_db)]
            try:
                seconds, cpu, out = timed(cmd, "hygie restore")
                runs["restore_s"].append(seconds)
                runs["restore_cpu_s"].append(cpu)
                r["restored_ledger_size"] = json.loads(out)["ledger_size"]
                if ledger_verify:
                    seconds, cpu, out = timed([HYGIE, "ledger", "verify", "--data-dir",
                                               str(rd), "--json"], "hygie ledger verify")
                    if not json.loads(out)["ok"]:
                        raise RuntimeError("the restored ledger does not verify")
                    runs["ledger_verify_s"].append(seconds)
                    runs["ledger_verify_cpu_s"].append(cpu)
            finally:
                if target_db:
                    pg_admin(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
        log(f"  run {i + 1}/{repeat}: backup {runs['backup_s'][-1]:.2f} s, verify "
            f"{runs['verify_s'][-1]:.2f} s, restore {runs['restore_s'][-1]:.2f} s"
            + (f", ledger verify {runs['ledger_verify_s'][-1]:.2f} s" if ledger_verify
               else ""))
    cp_after, cpf_after = cp_runs(inst, repeat)
    for k, v in runs.items():
        if v:
            r[k] = median(v)
            r[k.replace("_s", "_runs_s", 1) if k.endswith("_s") else k] = [round(x, 3)
                                                                         for x in v]
    r["cp_before_s"], r["cp_after_s"] = median(cp_before), median(cp_after)
    r["cp_runs_s"] = [round(x, 3) for x in cp_before + cp_after]
    r["cp_s"] = median(cp_before + cp_after)
    r["cp_mb_per_s"] = mb_per_s(data_bytes, r["cp_s"])
    r["cp_fsync_runs_s"] = [round(x, 3) for x in cpf_before + cpf_after]
    r["cp_fsync_s"] = median(cpf_before + cpf_after)
    r["cp_fsync_mb_per_s"] = mb_per_s(data_bytes, r["cp_fsync_s"])
    r["backup_vs_cp_fsync_ratio"] = ratio(r["cp_fsync_s"], r["backup_s"])
    r["backup_mb_per_s"] = mb_per_s(data_bytes, r["backup_s"])
    r["restore_mb_per_s"] = mb_per_s(r["backup_bytes"], r["restore_s"])
    r["backup_vs_cp_ratio"] = ratio(r["cp_s"], r["backup_s"])
    if "pg_dump_s" in r:
        r["pg_dump_mb_per_s"] = mb_per_s(data_bytes, r["pg_dump_s"])
        r["backup_vs_pg_dump_ratio"] = ratio(r["pg_dump_s"], r["backup_s"])
    if "ledger_verify_s" in r:
        r["restore_plus_ledger_verify_s"] = round(r["restore_s"] + r["ledger_verify_s"], 3)
    return r


def _top(prof: Any, n: int = 12) -> list[dict[str, Any]]:
    """The ``n`` functions with the most own time: name and seconds (no paths, no data)."""
    import pstats

    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": f"{Path(file).name}:{line}({name})" if file != "~" else name,
             "calls": nc, "own_s": round(tt, 3), "cumulative_s": round(ct, 3)}
            for (file, line, name), (_cc, nc, tt, ct, _callers) in rows]


def profile_worker(data_dir: Path, root: Path) -> dict[str, Any]:
    """Child process: create_backup and restore_backup in-process under cProfile."""
    import cProfile

    t0 = time.perf_counter()
    import hygie.api.app  # noqa: F401 - imported before profiling: the figure is the data work
    from hygie.resilience.backup import create_backup, restore_backup

    out: dict[str, Any] = {"imports_s": round(time.perf_counter() - t0, 2)}
    for what in ("create_backup", "restore_backup"):
        prof = cProfile.Profile()
        c0, t0 = time.process_time(), time.perf_counter()
        prof.enable()
        if what == "create_backup":
            made = create_backup(data_dir, root / "profile-backups")
        else:
            restore_backup(made.path, root / "profile-restored", data_dir / "kek.json")
        prof.disable()
        out[what] = {"wall_s": round(time.perf_counter() - t0, 2),
                     "cpu_s": round(time.process_time() - c0, 2), "top_own_time": _top(prof)}
    return out


def profile(inst: Instance) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        try:
            subprocess.run([sys.executable, __file__, "--profile-worker", str(inst.data_dir),
                            str(inst.root), out.name], check=True, timeout=3600)
            return json.loads(Path(out.name).read_text())
        finally:
            for d in ("profile-backups", "profile-restored"):
                shutil.rmtree(inst.root / d, ignore_errors=True)


def load_synthea(backend: str, quick: bool) -> tuple[Instance, dict[str, Any]] | None:
    try:
        src = synthea_dir()
    except SystemExit:
        return None
    files = sorted(src.glob("*.json"))
    tmp = None
    if quick:
        tmp = Path(tempfile.mkdtemp(prefix="hygie-bench-src-"))
        for f in sorted((f for f in files if not f.name.startswith(
                ("hospitalInformation", "practitionerInformation"))),
                key=lambda f: f.stat().st_size)[:8]:
            (tmp / f.name).symlink_to(f)
    inst = create_instance(backend)
    try:
        seconds, _cpu, out = timed([HYGIE, "import", str(tmp or src), "--data-dir",
                                    str(inst.data_dir), "--keep-going", "--json"],
                                   "hygie import", timeout=3600)
        doc = json.loads(out)
        run_cli("ledger", "checkpoint", "--data-dir", str(inst.data_dir))
    except BaseException:
        inst.drop()
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    load = {"files": 8 if quick else len(files), "resources": doc["resources"],
            "failed_bundles": len(doc["failed"]), "seconds": round(seconds, 1),
            "source": _relative(src)}
    log(f"synthea ({backend}): {doc['resources']} resources imported in {seconds:.1f} s")
    return inst, load


def _relative(path: Path) -> str:
    """The path relative to the repository's parent (no machine path in the results)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return "../" + str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def goals(results: dict[str, Any], patients: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend, r in (results.get("generated") or {}).items():
        size = f"{patients}_patients"
        out[f"generated.{backend}.restore_le_60s_{size}"] = (
            "met" if r["restore_s"] <= 60 else "not met")
        if "restore_plus_ledger_verify_s" in r:
            out[f"generated.{backend}.restore_plus_ledger_verify_le_60s_{size}"] = (
                "met" if r["restore_plus_ledger_verify_s"] <= 60 else "not met")
    for dataset, per in results.items():
        for backend, r in (per or {}).items():
            if backend == "sqlite":
                out[f"{dataset}.{backend}.backup_ge_half_cp"] = (
                    "met" if r["backup_vs_cp_ratio"] >= 0.5 else "not met")
            elif "backup_vs_pg_dump_ratio" in r:
                out[f"{dataset}.{backend}.backup_ge_half_pg_dump"] = (
                    "met" if r["backup_vs_pg_dump_ratio"] >= 0.5 else "not met")
    return out


FIGURES = ("data_bytes", "backup_bytes", "resources", "ledger_size", "cp_s", "cp_before_s",
           "cp_after_s", "cp_mb_per_s", "cp_fsync_s", "cp_fsync_mb_per_s", "pg_dump_s",
           "pg_dump_mb_per_s", "backup_s",
           "backup_cpu_s", "backup_mb_per_s", "verify_s", "restore_s", "restore_cpu_s",
           "restore_mb_per_s", "ledger_verify_s", "ledger_verify_cpu_s",
           "restore_plus_ledger_verify_s", "backup_vs_cp_ratio", "backup_vs_cp_fsync_ratio",
           "backup_vs_pg_dump_ratio")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 7 and sys.argv[1] == "--generate-worker":
        doc = generate_worker(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                              int(sys.argv[5]))
        Path(sys.argv[6]).write_text(json.dumps(doc))
        return 0
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--profile-worker":
        doc = profile_worker(Path(sys.argv[2]), Path(sys.argv[3]))
        Path(sys.argv[4]).write_text(json.dumps(doc))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="8 Synthea bundles and 200 generated patients, 1 run each")
    parser.add_argument("--datasets", default="synthea,generated")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="backends of the Synthea set")
    parser.add_argument("--generated-backends", default="sqlite",
                        help="backends of the generated set (PostgreSQL generation is slow)")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--per-patient", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1789)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cache", action="store_true",
                        help="generate the data set afresh (and do not cache it)")
    parser.add_argument("--no-ledger-verify", action="store_true",
                        help="skip 'hygie ledger verify' of the restored instances")
    parser.add_argument("--cache-only", action="store_true",
                        help="only fill the generated set's cache, measure nothing")
    parser.add_argument("--profile", action="store_true",
                        help="also profile create_backup and restore_backup in-process "
                             "(cProfile) on the generated set")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.patients = min(args.patients, 200)
        args.repeat = 1
    datasets = [x for x in args.datasets.split(",") if x]
    pg_ok = None

    def backends_of(spec: str) -> list[str]:
        nonlocal pg_ok
        out = [b for b in spec.split(",") if b]
        if "postgresql" in out:
            pg_ok = pg_available() if pg_ok is None else pg_ok
            if not pg_ok:
                out.remove("postgresql")
        return out

    if args.cache_only:
        for backend in backends_of(args.generated_backends):
            inst, _ = generated_instance(backend, args.patients, args.per_patient, args.seed,
                                         use_cache=True)
            inst.drop()
        return 0
    started = machine()
    floor = startup_floor(args.repeat)
    log(f"CLI start ('hygie backup --help'): {floor:.2f} s")
    results: dict[str, Any] = {}
    loads: dict[str, Any] = {}
    notes: list[str] = []
    for dataset in datasets:
        spec = args.backends if dataset == "synthea" else args.generated_backends
        for backend in backends_of(spec):
            if dataset == "synthea":
                made = load_synthea(backend, args.quick)
                if made is None:
                    msg = "no Synthea bundles (../shared/data/synthea): Synthea set skipped"
                    log(msg)
                    notes.append(msg)
                    break
            else:
                made = generated_instance(backend, args.patients, args.per_patient, args.seed,
                                          use_cache=not args.no_cache)
            inst, load = made
            loads.setdefault(dataset, {})[backend] = {
                k: v for k, v in load.items() if k not in ("cached_from", "cache_db")}
            try:
                log(f"{dataset} ({backend}): measuring, {args.repeat} run(s) ...")
                r = measure(inst, args.repeat, not args.no_ledger_verify)
                if args.profile and dataset == "generated":
                    log(f"{dataset} ({backend}): profiling ...")
                    r["profile"] = profile(inst)
            finally:
                inst.drop()
            results.setdefault(dataset, {})[backend] = r
            log(f"{dataset} ({backend}): {r['data_bytes'] / MB:.0f} MB, backup "
                f"{r['backup_s']} s ({r['backup_mb_per_s']} MB/s, {r['backup_vs_cp_ratio']} x "
                f"cp), restore {r['restore_s']} s, ledger verify {r.get('ledger_verify_s')} s")
    figures: dict[str, Any] = {"cli_start_s": floor}
    for dataset, per in results.items():
        for backend, r in per.items():
            for k in FIGURES:
                if k in r:
                    name = k.replace("_bytes", "_mb") if k.endswith("_bytes") else k
                    value = round(r[k] / MB, 1) if k.endswith("_bytes") else r[k]
                    figures[f"{dataset}.{backend}.{name}"] = value
    verdicts = goals(results, args.patients)
    doc = {"benchmark": "backup", "quick": args.quick, "machine": started,
           "loadavg_at_end": list(os.getloadavg()),
           "params": {"patients": args.patients, "per_patient": args.per_patient,
                      "seed": args.seed, "repeat": args.repeat,
                      "batch_patients": BATCH_PATIENTS, "gen_version": GEN_VERSION},
           "method": "wall time of each CLI command as a subprocess (process start included): "
                     "'hygie backup create --json', 'hygie backup verify', 'hygie restore' "
                     "(verifies the backup, the key and the whole ledger before answering), "
                     "'hygie ledger verify' of the restored instance; median of 'repeat' "
                     "runs. Warm page cache (dropping it needs root): 'cp -r' of the data dir "
                     "runs 'repeat' times before and after the backups; the backup fsyncs "
                     "its files, cp does not. MB = 10^6 bytes; throughputs over the data's "
                     "bytes (SQLite: the data dir; PostgreSQL: pg_database_size); restore "
                     "throughput over the backup's bytes.",
           "goals": {"restore_s_10000_patients": 60, "backup_vs_cp_ratio": 0.5},
           "loads": loads, "results": results, "verdicts": verdicts, "notes": notes,
           "figures": figures}
    write_result("backup", doc, args.out)
    emit("backup", figures)
    for k, v in verdicts.items():
        print(f"backup.{k} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
