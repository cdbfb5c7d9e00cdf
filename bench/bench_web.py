"""Latency of the web app's main pages (issue 6 goal: each <= 100 ms p95) on a real
``hygie serve`` (2 workers, SQLite) holding 20 Synthea patients' records.

1. ``hygie init``, then ``hygie import`` of the 20 largest Synthea patient bundles of
   ``../shared/data/synthea`` (skipped, with a message, when that folder is absent);
2. three accounts enrolled through the real activation path (``hygie.demo.enrol``): a
   practitioner in the CareTeam of every patient, a secretary, an administrator; 60
   appointments this week (the secretary's calendar);
3. each person signs in over HTTP like a browser (sign-in form, CSRF token, TOTP code) and
   keeps the session cookies;
4. for each page, ``--clients`` keep-alive clients request it for ``--duration`` seconds
   (closed loop, after a warm-up): the sign-in page, home (my patients), a search by family
   name (POST with the CSRF token), a patient record (the 20 patients in turn: identity,
   summary and timeline), a document view, the secretary's calendar week, the admin's
   accounts list. Every answer must be 200.

Writes bench/results/web.json (p50/p95/p99 in ms, req/s per page); one line per figure on
stdout.

    .venv/bin/python bench/bench_web.py            # 20 patients, 4 clients, 8 s per page
    .venv/bin/python bench/bench_web.py --quick    # 5 patients, 2 clients, 2 s per page
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from common import (
    HOST,
    ROOT,
    Request,
    create_instance,
    emit,
    hygie_server,
    log,
    machine,
    percentile,
    run_cli,
    run_load,
    write_result,
)

SYNTHEA = ROOT.parent / "shared" / "data" / "synthea"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GOAL_P95_MS = 100.0


def largest_bundles(n: int) -> list[Path]:
    files = [p for p in SYNTHEA.glob("*.json")
             if not p.name.startswith(("hospital", "practitioner"))]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:n]


def seed(data_dir: Path) -> dict[str, Any]:
    """Accounts (real activation path), care relationships, appointments; ids for the pages."""
    import base64
    from datetime import UTC, datetime, timedelta

    from hygie.access.actor import Actor
    from hygie.api.app import open_runtime
    from hygie.demo import DEMO_PRACTITIONER, _care_team, enrol
    from hygie.fhir.search import SearchQuery, parse_search
    from hygie.settings import load_settings

    rt = open_runtime(load_settings(data_dir))
    try:
        _care_team(rt)
        people = {role: enrol(rt, name, role, **({"practitioner_id": DEMO_PRACTITIONER}
                                                  if role == "practitioner" else {}))
                  for name, role in (("dr.bench", "practitioner"), ("secretariat", "secretary"),
                                     ("admin", "admin"))}
        with rt.gate.open(Actor.system("bench")) as door:
            patients, _ = door.search(SearchQuery(rtype="Patient", count=100, total="none"))
            families = []
            for p in patients:
                doc = orjson.loads(p.body or b"{}")
                families.append(str((doc.get("name") or [{}])[0].get("family") or ""))
            docs, _ = door.search(parse_search("DocumentReference", [], lenient=False,
                                               page_default=50, page_max=50))
            document = None
            for d in docs:
                body = orjson.loads(d.body or b"{}")
                ref = str((body.get("subject") or {}).get("reference") or "")
                if ref.startswith("Patient/") and body.get("content"):
                    document = (ref.split("/", 1)[1], d.rid)
                    break
            if document is None:  # these Synthea bundles hold none: a small PDF report
                pdf = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages"
                       b"/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
                note = door.create("DocumentReference", {
                    "resourceType": "DocumentReference", "status": "current",
                    "type": {"text": "Compte rendu"},
                    "subject": {"reference": f"Patient/{patients[0].rid}"},
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "description": "Compte rendu",
                    "content": [{"attachment": {
                        "contentType": "application/pdf",
                        "data": base64.b64encode(pdf).decode()}}]})
                document = (patients[0].rid, note.rid)
            monday = datetime.now(UTC).date() - timedelta(days=datetime.now(UTC).weekday())
            for i in range(60):
                start = datetime(monday.year, monday.month, monday.day, 8, 0, tzinfo=UTC) + \
                    timedelta(days=i % 5, minutes=30 * (i // 5))
                door.create("Appointment", {
                    "resourceType": "Appointment", "status": "booked",
                    "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "end": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "participant": [
                        {"actor": {"reference": f"Patient/{patients[i % len(patients)].rid}"},
                         "status": "accepted"},
                        {"actor": {"reference": f"Practitioner/{DEMO_PRACTITIONER}",
                                   "display": "dr.bench"}, "status": "accepted"}]})
        return {"people": people, "patients": [p.rid for p in patients],
                "families": [f for f in families if f], "document": document}
    finally:
        rt.engine.dispose()


def forget_last_step(data_dir: Path) -> None:
    """The activation used the current TOTP code; a sign-in in the same 30 s needs it free."""
    from sqlalchemy import update

    from hygie.api.app import open_runtime
    from hygie.settings import load_settings
    from hygie.store.db import transaction
    from hygie.store.tables_accounts import user_account

    rt = open_runtime(load_settings(data_dir))
    with transaction(rt.engine) as conn:
        conn.execute(update(user_account).values(totp_last_step=None))
    rt.engine.dispose()


def sign_in(base: str, person: dict[str, str]) -> tuple[str, str]:
    """Like a browser: the sign-in form, the code form; (Cookie header, CSRF token of /app)."""
    import base64

    import httpx

    from hygie.crypto import totp_at

    text = person["totp_secret"]
    secret = base64.b32decode(text + "=" * (-len(text) % 8))
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as c:
        token = CSRF.search(c.get("/").text)
        assert token, "no CSRF token on the sign-in page"
        r = c.post("/signin", data={"username": person["username"],
                                    "password": person["password"], "csrf_token": token[1]})
        assert r.status_code == 303, f"sign-in refused ({r.status_code})"
        token = CSRF.search(c.get("/signin/code").text)
        assert token
        r = c.post("/signin/code", data={"code": totp_at(secret, time.time()),
                                         "csrf_token": token[1]})
        assert r.status_code == 303 and r.headers["location"] == "/app", "code refused"
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        page = c.get("/app")
        token = CSRF.search(page.text)
        assert page.status_code == 200 and token
        return cookie, token[1]


def get(port: int, path: str, cookie: str | None) -> Request:
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/html\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    return Request((head + "\r\n").encode())


def post(port: int, path: str, cookie: str, form: dict[str, str]) -> Request:
    body = urlencode(form).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/html\r\n"
            f"Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return Request(head.encode() + body)


def measure(port: int, server: Any, name: str, requests: list[Request], clients: int,
            duration: float, warmup: float) -> dict[str, Any]:
    result = run_load(port, lambda ci, n: requests[(ci * 7 + n) % len(requests)],
                      clients=clients, duration=duration, warmup=warmup, server=server)
    lat = sorted(result.latencies_ns)
    figures = {
        "rps": round(result.requests / result.duration_s, 1),
        "p50_ms": round(percentile(lat, 50) / 1e6, 2),
        "p95_ms": round(percentile(lat, 95) / 1e6, 2),
        "p99_ms": round(percentile(lat, 99) / 1e6, 2),
        "max_ms": round(lat[-1] / 1e6, 2) if lat else None,
        "requests": len(lat), "errors": result.errors,
        "server_cpu_cores": round((result.server_cpu_s or 0) / result.duration_s, 2),
        "other_cpu_cores": round(max(0.0, (result.machine_busy_s or 0) - result.loadgen_cpu_s
                                     - (result.server_cpu_s or 0)) / result.duration_s, 2),
    }
    if result.error_codes:
        figures["error_codes"] = result.error_codes
    figures["meets_goal"] = bool(lat) and figures["p95_ms"] <= GOAL_P95_MS and not result.errors
    emit(f"web.{name}", figures)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--patients", type=int)
    ap.add_argument("--clients", type=int)
    ap.add_argument("--duration", type=float)
    args = ap.parse_args()
    n = args.patients or (5 if args.quick else 20)
    clients = args.clients or (2 if args.quick else 4)
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 1.0 if args.quick else 2.0
    if not SYNTHEA.is_dir() or not largest_bundles(1):
        print(f"bench_web: skipped: no Synthea bundles in {SYNTHEA} (the benchmark needs "
              "real Synthea-sized records)", file=sys.stderr)
        return
    bundles = largest_bundles(n)
    doc: dict[str, Any] = {"benchmark": "web", "quick": args.quick, "machine": machine(),
                           "patients": len(bundles), "clients": clients,
                           "duration_s": duration, "goal_p95_ms": GOAL_P95_MS,
                           "bundle_mb": round(sum(p.stat().st_size for p in bundles) / 1e6, 1),
                           "pages": {}}
    inst = create_instance("sqlite")
    try:
        with tempfile.TemporaryDirectory(prefix="hygie-bench-web-") as tmp:
            folder = Path(tmp)
            for p in bundles:
                (folder / p.name).symlink_to(p)
            t0 = time.perf_counter()
            report = orjson.loads(run_cli("import", str(folder), "--data-dir",
                                          str(inst.data_dir), "--json", timeout=1800))
            doc["import_s"] = round(time.perf_counter() - t0, 1)
            doc["resources"] = report.get("resources")
            log(f"imported {doc['resources']} resources in {doc['import_s']} s")
        ids = seed(inst.data_dir)
        forget_last_step(inst.data_dir)
        with hygie_server(inst, workers=2) as server:
            port = server.port
            sessions = {role: sign_in(server.base, person)
                        for role, person in ids["people"].items()}
            doctor, doctor_csrf = sessions["practitioner"]
            pages: dict[str, list[Request]] = {
                "signin_page": [get(port, "/", None)],
                "home": [get(port, "/app", doctor)],
                "search": [post(port, "/app/patients/search", doctor,
                                {"name": fam, "csrf_token": doctor_csrf})
                           for fam in ids["families"]],
                "patient_record": [get(port, f"/app/patients/{pid}", doctor)
                                   for pid in ids["patients"]],
                "calendar_week": [get(port, "/app/calendar", sessions["secretary"][0])],
                "admin_accounts": [get(port, "/app/admin/accounts", sessions["admin"][0])],
            }
            if ids["document"]:
                pid, did = ids["document"]
                pages["document_view"] = [get(port, f"/app/patients/{pid}/documents/{did}",
                                              doctor)]
            for name, requests in pages.items():
                log(f"{name}: {len(requests)} distinct request(s), {clients} clients, "
                    f"{duration} s")
                doc["pages"][name] = measure(port, server, name, requests, clients, duration,
                                             warmup)
            doc["server_problems"] = server.problems()
    finally:
        inst.drop()
    doc["all_meet_goal"] = all(p["meets_goal"] for p in doc["pages"].values())
    path = write_result("web", doc)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
