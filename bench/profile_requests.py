"""Where the time goes: read by id, create and search by identifier, profiled in-process.

The real ASGI app (``create_app(settings)`` on a fresh instance, SQLite by default) is driven
directly with ASGI messages, one request at a time, in one thread: the sync routes that FastAPI
would run in its threadpool are run inline (``anyio.to_thread.run_sync`` is replaced for this
process only), so one ``cProfile`` sees all the work of a request. No HTTP server, no network.

Reported per operation:

* ``us_per_req``: service time without the profiler (sequential, no contention);
* ``categories``: share of profiled time by what the code is doing — FHIR validation
  (fhir.resources/pydantic), crypto (AES-GCM, HMAC blind index), search-term extraction,
  SQLAlchemy, the DB driver (sqlite3/psycopg, where the SQL itself runs), audit, JSON, the
  framework (FastAPI/Starlette), Hygie's own code (gate, policy, repository, API layer) and the
  ASGI driver. Time in generic built-ins and stdlib helpers is charged to the category of the
  code that called them;
* ``inclusive``: share of the request spent inside some key functions (they overlap);
* ``top``: the functions with the most own time.

cProfile's overhead inflates pure-Python code relative to C (the driver, AES, orjson), so read
the shares as a ranking. Writes bench/results/profile.json.

    .venv/bin/python bench/profile_requests.py
    .venv/bin/python bench/profile_requests.py --backend postgresql --quick
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from common import (
    INS_NIR_SYSTEM,
    create_instance,
    emit,
    log,
    machine,
    make_patients,
    pg_available,
    search_path,
    transaction_bundle,
    write_result,
)

# (category, substrings of the file path, substrings of a built-in's name)
CATEGORIES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("validation", ("/fhir/resources/", "/fhir_core/", "/pydantic/", "/pydantic_core/",
                    "hygie/fhir/validation.py", "hygie/fhir/identifiers.py"),
     ("pydantic_core", "SchemaValidator", "SchemaSerializer")),
    ("crypto", ("/cryptography/", "hygie/crypto/", "/hmac.py", "/argon2/"),
     ("AESGCM", "_hashlib", "openssl", "posix.urandom", "_hmac")),
    ("search_terms", ("hygie/fhir/searchparams.py", "hygie/fhir/search.py"),
     ("unicodedata",)),
    ("db_driver", ("/psycopg/", "/psycopg_binary/", "/psycopg_pool/", "/sqlite3/"),
     ("sqlite3.", "psycopg")),
    ("sqlalchemy", ("/sqlalchemy/",), ()),
    # audit: the entries' INSERTs, and for reads the wait for the group-commit thread
    # (hygie/ledger/appender.py) whose own work cProfile does not see from this thread
    ("audit", ("hygie/ledger/",), ()),
    ("json", ("/json/",), ("orjson",)),
    ("framework", ("/fastapi/", "/starlette/", "/anyio/", "/typing_extensions", "/annotated_doc"),
     ()),
    ("hygie_core", ("hygie/gate.py", "hygie/access/", "hygie/store/", "hygie/records/",
                    "hygie/fhir/"), ()),
    ("hygie_api", ("hygie/api/",), ()),
    ("asgi_driver", ("profile_requests.py", "/asyncio/", "uvloop"), ()),
]
GENERIC = "other"
KEY_FUNCTIONS = [
    ("hygie/api/deps.py", "bearer_actor", "token check (own transaction)"),
    ("hygie/access/clients.py", "authenticate", "token lookup"),
    ("hygie/fhir/validation.py", "validate_resource", "FHIR validation"),
    ("hygie/fhir/validation.py", "parse_resource", "JSON parse of the body"),
    ("hygie/gate.py", "read", "Door.read"),
    ("hygie/gate.py", "create", "Door.create"),
    ("hygie/gate.py", "search", "Door.search"),
    ("hygie/store/repository.py", "put", "repository.put"),
    ("hygie/store/repository.py", "_reindex", "search index rows"),
    ("hygie/fhir/searchparams.py", "extract", "search-term extraction"),
    ("hygie/store/repository.py", "decrypt", "decrypt body"),
    ("hygie/crypto/envelope.py", "seal", "AES-GCM seal"),
    ("hygie/crypto/envelope.py", "open", "AES-GCM open"),
    ("hygie/crypto/blind_index.py", "tag", "blind-index HMAC"),
    ("hygie/ledger/audit.py", "append", "audit insert"),
    ("hygie/store/db.py", "transaction", "transaction (connect, begin, commit)"),
    ("sqlalchemy/engine/base.py", "_execute_context", "SQLAlchemy execute"),
    ("sqlalchemy/engine/base.py", "commit", "commit"),
    ("hygie/store/db.py", "_on_begin", "BEGIN IMMEDIATE"),
]


def inline_threadpool() -> None:
    """Run FastAPI's sync routes and dependencies in the calling thread (this process only)."""
    import anyio.to_thread

    async def run_sync(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]


class Driver:
    """Minimal ASGI client: one request, the whole answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def call(self, method: str, path: str, headers: dict[str, str],
                   body: bytes = b"") -> tuple[int, bytes]:
        p, _, q = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": p, "raw_path": p.encode(),
                 "query_string": q.encode(), "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                 + [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
        sent = False
        status = 0
        chunks: list[bytes] = []

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
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def categorize(stats: pstats.Stats) -> dict[str, float]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[str, float]] = {}

    def direct(func: Any) -> str | None:
        filename, _, name = func
        for cat, paths, names in CATEGORIES:
            if filename != "~" and any(s in filename for s in paths):
                return cat
            if filename == "~" and any(s in name for s in names):
                return cat
        return None

    def resolve(func: Any, depth: int = 0) -> dict[str, float]:
        if func in memo:
            return memo[func]
        cat = direct(func)
        if cat is not None:
            memo[func] = {cat: 1.0}
            return memo[func]
        callers = raw[func][4] if func in raw else {}
        total = sum(v[2] for v in callers.values())
        if depth > 30 or not callers or total <= 0:
            return {GENERIC: 1.0}
        memo[func] = {GENERIC: 1.0}  # cycle guard
        out: dict[str, float] = {}
        for caller, v in callers.items():
            w = v[2] / total
            for c, share in resolve(caller, depth + 1).items():
                out[c] = out.get(c, 0.0) + w * share
        memo[func] = out
        return out

    totals: dict[str, float] = {}
    for func, (_, _, tt, _, _) in raw.items():
        for c, share in resolve(func).items():
            totals[c] = totals.get(c, 0.0) + tt * share
    grand = sum(totals.values()) or 1.0
    return {k: round(100 * v / grand, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def inclusive(stats: pstats.Stats, wall: float) -> dict[str, float]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for path, name, label in KEY_FUNCTIONS:
        ct = sum(v[3] for (f, _, n), v in raw.items() if n == name and f.endswith(path))
        if ct > 0:
            out[label] = round(100 * ct / wall, 1)
    return out


def top(stats: pstats.Stats, n: int = 12) -> list[dict[str, Any]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    grand = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:n]
    out = []
    for (f, line, name), v in rows:
        where = f if f == "~" else "/".join(Path(f).parts[-3:])
        out.append({"function": f"{where}:{line}({name})" if f != "~" else name,
                    "own_pct": round(100 * v[2] / grand, 1), "calls": v[1]})
    return out


def run(backend: str, n: dict[str, int], seed: int = 1000) -> dict[str, Any]:
    inline_threadpool()
    from hygie.access.clients import create_client
    from hygie.api.app import create_app
    from hygie.settings import load_settings
    from hygie.store.db import transaction

    inst = create_instance(backend)
    try:
        settings = load_settings(inst.data_dir)
        app = create_app(settings)
        rt = app.state.runtime
        with transaction(rt.engine) as conn:
            cid, secret = create_client(conn, tenant=settings.tenant, name="profile",
                                        scopes="system/*.*")
        d = Driver(app)
        loop = asyncio.new_event_loop()
        call = loop.run_until_complete
        import base64

        basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
        status, body = call(d.call("POST", "/auth/token", {
            "authorization": f"Basic {basic}",
            "content-type": "application/x-www-form-urlencoded"},
            b"grant_type=client_credentials"))
        assert status == 200, status
        auth = {"authorization": f"Bearer {orjson.loads(body)['access_token']}",
                "content-type": "application/fhir+json", "accept": "application/fhir+json"}
        ps = make_patients(seed, seed=21)
        ids: list[str] = []
        for i in range(0, seed, 500):
            status, body = call(d.call("POST", "/fhir", auth, orjson.dumps(
                transaction_bundle(ps.bodies[i:i + 500]))))
            assert status == 200, status
            ids += [e["response"]["location"].split("/")[1] for e in orjson.loads(body)["entry"]]
        new = make_patients(max(n.values()) * 2 + 400, seed=22).bodies
        counter = iter(range(10**9))

        ops: dict[str, Callable[[int], Any]] = {
            "read": lambda i: d.call("GET", f"/fhir/Patient/{ids[i % len(ids)]}", auth),
            "create": lambda i: d.call("POST", "/fhir/Patient", auth,
                                       orjson.dumps(new[next(counter) % len(new)])),
            "search_identifier": lambda i: d.call("GET", search_path(
                "identifier", f"{INS_NIR_SYSTEM}|{ps.nirs[i % len(ps.nirs)]}"), auth),
        }
        expect = {"read": 200, "create": 201, "search_identifier": 200}
        out: dict[str, Any] = {}
        for op, fn in ops.items():
            count = n[op]

            async def loop_(k: int, fn: Callable[[int], Any] = fn, op: str = op) -> None:
                for i in range(k):
                    status, _ = await fn(i)
                    if status != expect[op]:
                        raise RuntimeError(f"{op}: HTTP {status}")

            call(loop_(min(200, count)))  # warm
            t0 = time.perf_counter()
            call(loop_(count))
            plain = time.perf_counter() - t0
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            call(loop_(count))
            prof.disable()
            wall = time.perf_counter() - t0
            stats = pstats.Stats(prof)
            out[op] = {"requests": count, "us_per_req": round(plain / count * 1e6, 1),
                       "profiled_us_per_req": round(wall / count * 1e6, 1),
                       "categories_pct": categorize(stats), "inclusive_pct": inclusive(stats, wall),
                       "top": top(stats)}
            log(f"profile {backend} {op}: {out[op]['us_per_req']} us/request; "
                f"{out[op]['categories_pct']}")
        loop.close()
        rt.engine.dispose()
        return out
    finally:
        inst.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.backend == "postgresql" and not pg_available():
        return 0
    n = ({"read": 300, "create": 150, "search_identifier": 150} if args.quick
         else {"read": 2000, "create": 800, "search_identifier": 1000})
    with tempfile.TemporaryDirectory():
        results = run(args.backend, n, seed=200 if args.quick else 1000)
    figures: dict[str, Any] = {}
    for op, r in results.items():
        figures[f"{args.backend}.{op}.us_per_req"] = r["us_per_req"]
        for cat, pct in r["categories_pct"].items():
            figures[f"{args.backend}.{op}.{cat}_pct"] = pct
    name = "profile" if args.backend == "sqlite" else f"profile_{args.backend}"
    doc = {"benchmark": name, "backend": args.backend, "quick": args.quick,
           "machine": machine(), "method": __doc__.split("\n\n")[1].replace("\n", " "),
           "results": results, "figures": figures}
    write_result(name, doc, args.out)
    emit("profile", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
