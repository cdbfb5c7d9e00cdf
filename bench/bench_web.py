"""Latency of the web app's main pages (issue 6 goal: each <= 100 ms p95) on a real
``hygie serve`` (2 workers, SQLite) holding 20 Synthea patients' records.

1. ``hygie init``, then ``hygie import`` of the 20 largest Synthea patient bundles of
   ``../shared/data/synthea`` (skipped, with a message, when that folder is absent);
2. three accounts enrolled through the real activation path (``hygie.demo.enrol``): a
   practitioner in the CareTeam of every patient, a secretary, an administrator; the
   secretary's calendar: 60 appointments this week and 8 a week in the 40 weeks before and
   the 12 weeks after it (476 appointments of the 20 patients; ``appointment_slots``);
3. each person signs in over HTTP like a browser (sign-in form, CSRF token, TOTP code) and
   keeps the session cookies;
4. for each page, ``--clients`` keep-alive clients request it for ``--duration`` seconds
   (closed loop, after a warm-up): the sign-in page, home (my patients), a search by family
   name (POST with the CSRF token), a patient record (the 20 patients in turn: identity,
   summary and timeline), a document view, the secretary's calendar week, other weeks of the
   calendar (the HTMX fragment of weeks -30, -1, +1, +8), the admin's accounts list. Every
   answer must be 200.

Writes bench/results/web.json (p50/p95/p99 in ms, req/s per page); one line per figure on
stdout.

    .venv/bin/python bench/bench_web.py            # 20 patients, 4 clients, 8 s per page
    .venv/bin/python bench/bench_web.py --quick    # 5 patients, 2 clients, 2 s per page
    .venv/bin/python bench/bench_web.py --pages calendar_week --out web-calendar.json
    .venv/bin/python bench/bench_web.py --past-appointments 20000 --pages calendar_week \
        --out web-history.json     # six years of a busy practice's appointments
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
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
# The secretary's calendar: a busy current week and a practice's past year and next quarter.
THIS_WEEK, OTHER_WEEKS_EACH, PAST_WEEKS, FUTURE_WEEKS = 60, 8, 40, 12
HISTORY_PER_WEEK = 64  # --past-appointments: a busy practice's week


def largest_bundles(n: int) -> list[Path]:
    files = [p for p in SYNTHEA.glob("*.json")
             if not p.name.startswith(("hospital", "practitioner"))]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:n]


def appointment_slots(now: Any) -> list[tuple[Any, str, int]]:
    """(start, status, n) of the calendar's appointments: THIS_WEEK in the current week (12 a
    weekday, 30 min apart from 08:00 UTC), OTHER_WEEKS_EACH in each of the PAST_WEEKS weeks
    before and the FUTURE_WEEKS weeks after it (fulfilled in the past, one in ten cancelled)."""
    from datetime import UTC, datetime, timedelta

    today = now.date()
    monday = today - timedelta(days=today.weekday())
    base = datetime(monday.year, monday.month, monday.day, 8, 0, tzinfo=UTC)
    out = [(base + timedelta(days=i % 5, minutes=30 * (i // 5)), "booked", i)
           for i in range(THIS_WEEK)]
    n = THIS_WEEK
    for week in range(-PAST_WEEKS, FUTURE_WEEKS + 1):
        if week == 0:
            continue
        for j in range(OTHER_WEEKS_EACH):
            start = base + timedelta(weeks=week, days=j % 5, minutes=45 * j)
            status = "cancelled" if n % 10 == 0 else "fulfilled" if week < 0 else "booked"
            out.append((start, status, n))
            n += 1
    return out


def other_weeks() -> list[str]:
    """Days (ISO) in weeks -30, -1, +1 and +8 from the current one."""
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()
    return [(today + timedelta(weeks=w)).isoformat() for w in (-30, -1, 1, 8)]


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
            for start, status, i in appointment_slots(datetime.now(UTC)):
                door.create("Appointment", {
                    "resourceType": "Appointment", "status": status,
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


def add_history(data_dir: Path, ids: dict[str, Any], count: int) -> int:
    """``count`` more past appointments (fulfilled), HISTORY_PER_WEEK a week going back from
    the oldest of ``bench_web.appointment_slots`` (20,000: about six years of a busy practice),
    created through the gate like the others. Returns the count (profile_web keeps it with
    its ids for --keep reruns)."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.engine import make_url

    from hygie.access.actor import Actor
    from hygie.api.app import open_runtime
    from hygie.demo import DEMO_PRACTITIONER
    from hygie.settings import load_settings

    done = int(ids.get("history", 0))
    if done >= count:
        return done
    now = datetime.now(UTC)
    monday = datetime(now.year, now.month, now.day, 8, 0, tzinfo=UTC) - timedelta(
        days=now.weekday())
    oldest = monday - timedelta(weeks=PAST_WEEKS + 1)
    patients = ids["patients"]
    rt = open_runtime(load_settings(data_dir))
    try:
        for first in range(done, count, 1000):
            with rt.gate.open(Actor.system("bench")) as door:
                for n in range(first, min(first + 1000, count)):
                    week, slot = divmod(n, HISTORY_PER_WEEK)
                    start = oldest - timedelta(weeks=week) + timedelta(
                        days=slot % 5, minutes=7 * (slot // 5))
                    door.create("Appointment", {
                        "resourceType": "Appointment", "status": "fulfilled",
                        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "end": (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "participant": [
                            {"actor": {"reference": f"Patient/{patients[n % len(patients)]}"},
                             "status": "accepted"},
                            {"actor": {"reference": f"Practitioner/{DEMO_PRACTITIONER}",
                                       "display": "dr.bench"}, "status": "accepted"}]})
            log(f"history: {min(first + 1000, count)} past appointments added")
    finally:
        rt.engine.dispose()
    path = make_url(rt.settings.database_url).database
    if path:  # SQLite: a steady state, not a WAL full of bulk inserts, for the server to find
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()
    return count


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


def get(port: int, path: str, cookie: str | None, htmx: bool = False) -> Request:
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/html\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    if htmx:
        head += "HX-Request: true\r\n"
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
    ap.add_argument("--pages", help="comma-separated page names to measure (default: all)")
    ap.add_argument("--out", type=Path, help="write the JSON there (default: bench/results)")
    ap.add_argument("--past-appointments", type=int, default=0,
                    help="add that many older appointments (64 a week: a practice's history)")
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
        if args.past_appointments:
            t0 = time.perf_counter()
            add_history(inst.data_dir, ids, args.past_appointments)
            log(f"{args.past_appointments} past appointments added in "
                f"{time.perf_counter() - t0:.0f} s")
        doc["appointments"] = len(appointment_slots(datetime.now(UTC))) + args.past_appointments
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
                # moving between weeks (the HTMX fragment): a past, the previous, the next and
                # a later week, in turn
                "calendar_other_weeks": [
                    get(port, f"/app/calendar?week={day}", sessions["secretary"][0], htmx=True)
                    for day in other_weeks()],
                "admin_accounts": [get(port, "/app/admin/accounts", sessions["admin"][0])],
            }
            if ids["document"]:
                pid, did = ids["document"]
                pages["document_view"] = [get(port, f"/app/patients/{pid}/documents/{did}",
                                              doctor)]
            if args.pages:
                wanted = args.pages.split(",")
                unknown = sorted(set(wanted) - set(pages))
                if unknown:
                    raise SystemExit(f"bench_web: unknown page(s): {', '.join(unknown)}")
                pages = {k: v for k, v in pages.items() if k in wanted}
            for name, requests in pages.items():
                log(f"{name}: {len(requests)} distinct request(s), {clients} clients, "
                    f"{duration} s")
                doc["pages"][name] = measure(port, server, name, requests, clients, duration,
                                             warmup)
            doc["server_problems"] = server.problems()
    finally:
        inst.drop()
    doc["all_meet_goal"] = all(p["meets_goal"] for p in doc["pages"].values())
    path = write_result("web", doc, args.out)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
