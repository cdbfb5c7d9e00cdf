"""Where the time of a web page goes: the patient record (and home, calendar), in process.

The same 20 Synthea patients as ``bench_web.py`` (imported with ``hygie import``, accounts
enrolled through the real activation path, the same 476 appointments: 60 this week, 8 a week
in the 40 weeks before and the 12 after), then the real ASGI app is driven directly, one
request at a time, in one thread (sync routes run inline, as in ``profile_requests.py``): a
practitioner signs in like a browser (form, CSRF token, TOTP code) and opens each of the 20
records in turn; the secretary opens the calendar week, then other weeks in turn (the HTMX
fragment of weeks -30, -1, +1, +8).

Reported per page: ``ms_per_req`` (no profiler, sequential, no contention) and
``cpu_ms_per_req`` (the process's CPU time: less sensitive to a busy machine), the audit entries
one view writes, the HTML size, and under ``cProfile`` the share of time by category and the
functions with the most own time. Writes bench/results/profile_web.json.
``--past-appointments N`` first adds N older appointments through the gate (64 a week going
back from the oldest): the calendar's cost as a practice's history grows.

    .venv/bin/python bench/profile_web.py                    # 20 patients, 10 rounds
    .venv/bin/python bench/profile_web.py --keep ./pw-instance   # keep/reuse the instance there
    .venv/bin/python bench/profile_web.py --past-appointments 20000 --out pw.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import profile_requests
from bench_web import (
    SYNTHEA,
    add_history,
    forget_last_step,
    largest_bundles,
    other_weeks,
    seed,
)
from common import emit, log, machine, run_cli, write_result
from profile_requests import categorize, inline_threadpool, top

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# Two more categories before profile_requests' ones: template rendering and the web layer.
profile_requests.CATEGORIES[:0] = [
    ("templates", ("/jinja2/", "/markupsafe/", "hygie/web/templates/", "hygie/web/templating.py",
                   "hygie/web/i18n.py", "/babel/", "/gettext.py"), ("markupsafe",)),
    ("web", ("hygie/web/",), ()),
]


class Browser:
    """A minimal ASGI client with a cookie jar (one person)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.loop = app, loop
        self.cookies: dict[str, str] = {}

    def call(self, method: str, path: str, form: dict[str, str] | None = None,
             htmx: bool = False) -> tuple[int, dict[str, str], bytes]:
        return self.loop.run_until_complete(self._call(method, path, form, htmx))

    async def _call(self, method: str, path: str, form: dict[str, str] | None, htmx: bool
                    ) -> tuple[int, dict[str, str], bytes]:
        body = urlencode(form).encode() if form is not None else b""
        headers = [(b"host", b"127.0.0.1:8000"), (b"accept", b"text/html"),
                   (b"content-length", str(len(body)).encode())]
        if htmx:
            headers.append((b"hx-request", b"true"))
        if form is not None:
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        if self.cookies:
            headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in
                                                 self.cookies.items()).encode()))
        p, _, q = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": p, "raw_path": p.encode(),
                 "query_string": q.encode(), "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
        sent = False
        status, out_headers, chunks = 0, {}, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                for k, v in msg.get("headers", []):
                    name, value = k.decode().lower(), v.decode()
                    out_headers[name] = value
                    if name == "set-cookie":
                        cookie, _, _attrs = value.partition(";")
                        ck, _, cv = cookie.partition("=")
                        if cv and "max-age=0" not in value.lower():
                            self.cookies[ck.strip()] = cv.strip().strip('"')
                        else:
                            self.cookies.pop(ck.strip(), None)
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        await self.app(scope, receive, send)
        return status, out_headers, b"".join(chunks)

    def sign_in(self, person: dict[str, str]) -> None:
        from hygie.crypto import totp_at

        token = CSRF.search(self.call("GET", "/")[2].decode())
        assert token
        status, _h, _b = self.call("POST", "/signin", {
            "username": person["username"], "password": person["password"],
            "csrf_token": token[1]})
        assert status == 303, status
        token = CSRF.search(self.call("GET", "/signin/code")[2].decode())
        assert token
        text = person["totp_secret"]
        secret = base64.b32decode(text + "=" * (-len(text) % 8))
        status, headers, _b = self.call("POST", "/signin/code", {
            "code": totp_at(secret, time.time()), "csrf_token": token[1]})
        assert status == 303 and headers.get("location") == "/app", (status, headers)


def prepare(data_dir: Path, n: int) -> dict[str, Any]:
    """Init + import + seed once; the ids are kept next to the data for --keep reruns."""
    marker = data_dir.parent / "profile_web_ids.json"
    if marker.is_file():
        return dict(orjson.loads(marker.read_bytes()))
    run_cli("init", "--data-dir", str(data_dir), "--json")
    with tempfile.TemporaryDirectory(prefix="hygie-profile-web-") as tmp:
        folder = Path(tmp)
        for p in largest_bundles(n):
            (folder / p.name).symlink_to(p)
        run_cli("import", str(folder), "--data-dir", str(data_dir), "--json", timeout=1800)
    ids = seed(data_dir)
    forget_last_step(data_dir)
    marker.write_bytes(orjson.dumps(ids))
    return ids


def audit_count(rt: Any) -> int:
    from sqlalchemy import func, select

    from hygie.store.db import transaction
    from hygie.store.tables import audit_event

    with transaction(rt.engine, readonly=True) as conn:
        return int(conn.execute(select(func.count()).select_from(audit_event)).scalar_one())


def profile_page(rt: Any, name: str, fn: Callable[[int], tuple[int, dict[str, str], bytes]],
                 count: int, rounds: int) -> dict[str, Any]:
    sizes = []
    for i in range(count):  # warm up (templates compiled, caches filled)
        status, _h, body = fn(i)
        assert status == 200, (name, status)
        sizes.append(len(body))
    before = audit_count(rt)
    fn(0)
    time.sleep(0.05)
    entries = audit_count(rt) - before
    t0, c0 = time.perf_counter(), time.process_time()
    for _r in range(rounds):
        for i in range(count):
            fn(i)
    plain = (time.perf_counter() - t0) / (rounds * count)
    cpu = (time.process_time() - c0) / (rounds * count)
    per_item = []
    for i in range(count):
        t = time.perf_counter()
        for _r in range(3):
            fn(i)
        per_item.append((time.perf_counter() - t) / 3 * 1000)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(count):
        fn(i)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    out = {"views": count * rounds, "ms_per_req": round(plain * 1000, 2),
           "cpu_ms_per_req": round(cpu * 1000, 2),
           "ms_min": round(min(per_item), 2), "ms_max": round(max(per_item), 2),
           "profiled_ms_per_req": round(wall / count * 1000, 2),
           "audit_entries_per_view": entries,
           "html_kb_mean": round(sum(sizes) / len(sizes) / 1024, 1),
           "html_kb_max": round(max(sizes) / 1024, 1),
           "categories_pct": categorize(stats), "top": top(stats, 15)}
    log(f"{name}: {out['ms_per_req']} ms/request, {out['cpu_ms_per_req']} ms CPU "
        f"(min {out['ms_min']}, max {out['ms_max']}), "
        f"{entries} audit entries per view, {out['html_kb_mean']} KB; "
        f"{out['categories_pct']}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--keep", type=Path, help="a folder to keep (and reuse) the instance in")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--past-appointments", type=int, default=0,
                    help="add that many older appointments (the calendar's history)")
    args = ap.parse_args(argv)
    if not SYNTHEA.is_dir() or not largest_bundles(1):
        print(f"profile_web: skipped: no Synthea bundles in {SYNTHEA}", file=sys.stderr)
        return 0
    root = args.keep or Path(tempfile.mkdtemp(prefix="hygie-profile-web-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        ids = prepare(root / "data", args.patients)
        if args.past_appointments:
            ids["history"] = add_history(root / "data", ids, args.past_appointments)
            (root / "profile_web_ids.json").write_bytes(orjson.dumps(ids))
        inline_threadpool()
        from hygie.api.app import create_app
        from hygie.settings import load_settings

        app = create_app(load_settings(root / "data"))
        rt = app.state.runtime
        loop = asyncio.new_event_loop()
        doctor, secretary = Browser(app, loop), Browser(app, loop)
        forget_last_step(root / "data")
        doctor.sign_in(ids["people"]["practitioner"])
        forget_last_step(root / "data")
        secretary.sign_in(ids["people"]["secretary"])
        patients = ids["patients"]
        weeks = other_weeks()
        pages = {
            "patient_record": (lambda i: doctor.call("GET", f"/app/patients/{patients[i]}"),
                               len(patients)),
            "home": (lambda i: doctor.call("GET", "/app"), 1),
            "calendar_week": (lambda i: secretary.call("GET", "/app/calendar"), 1),
            "calendar_other_weeks": (lambda i: secretary.call(
                "GET", f"/app/calendar?week={weeks[i]}", htmx=True), len(weeks)),
        }
        results = {}
        for name, (fn, count) in pages.items():
            rounds = args.rounds if count > 1 else args.rounds * 10
            results[name] = profile_page(rt, name, fn, count, rounds)
        loop.close()
        rt.engine.dispose()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    figures = {f"{page}.{k}": v for page, r in results.items() for k, v in r.items()
               if isinstance(v, int | float)}
    doc = {"benchmark": "profile_web", "machine": machine(), "patients": args.patients,
           "past_appointments": args.past_appointments,
           "results": results, "figures": figures}
    write_result("profile_web", doc, args.out)
    emit("profile_web", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
