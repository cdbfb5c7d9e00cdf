"""What-if experiment (not part of run_all): the database connection pool under 16 concurrent reads.

In-process, the real app (``create_app``) is driven by 16 concurrent ASGI clients through
FastAPI's own threadpool (as under uvicorn), reading random Patients by id, and the engine's
``connect`` and ``checkout`` events are counted. Each variant runs in its own process:

* ``default``: the engine exactly as ``hygie.store.db.make_engine`` builds it;
* ``sqlite-pool40``: SQLite with ``pool_size=40, max_overflow=0`` (as many pooled connections
  as the threadpool has threads), instead of SQLAlchemy's default 5 + 10 overflow, whose
  overflow connections are opened and closed again and again under load;
* ``pg-no-pre-ping``: PostgreSQL without ``pool_pre_ping`` (which costs a round trip per
  checkout, two or three per request).

The variants patch ``create_engine``'s arguments in this process only; src/ is untouched.
Writes bench/results/whatif_pool.json.

    .venv/bin/python bench/whatif_pool.py
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import (
    create_instance,
    created_ids,
    emit,
    log,
    machine,
    make_patients,
    pg_available,
    transaction_bundle,
    write_result,
)

VARIANTS = {"sqlite": ("default", "sqlite-pool40"), "postgresql": ("default", "pg-no-pre-ping")}


def measure(backend: str, variant: str, clients: int, per_client: int) -> dict[str, Any]:
    import hygie.store.db as db

    original = db.create_engine

    def create_engine(url: str, **kw: Any) -> Any:
        if variant == "sqlite-pool40" and url.startswith("sqlite"):
            kw.update(pool_size=40, max_overflow=0)
        if variant == "pg-no-pre-ping":
            kw["pool_pre_ping"] = False
        return original(url, **kw)

    db.create_engine = create_engine  # type: ignore[assignment]
    from profile_requests import Driver
    from sqlalchemy import event

    from hygie.access.clients import create_client
    from hygie.api.app import create_app
    from hygie.settings import load_settings
    from hygie.store.db import transaction

    inst = create_instance(backend)
    try:
        app = create_app(load_settings(inst.data_dir))
        rt = app.state.runtime
        counts = {"connect": 0, "checkout": 0}

        @event.listens_for(rt.engine, "connect")
        def _connect(*_: Any) -> None:
            counts["connect"] += 1

        @event.listens_for(rt.engine, "checkout")
        def _checkout(*_: Any) -> None:
            counts["checkout"] += 1

        with transaction(rt.engine) as conn:
            cid, secret = create_client(conn, tenant=rt.settings.tenant, name="whatif",
                                        scopes="system/*.*")
        d = Driver(app)

        async def main() -> dict[str, Any]:
            basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
            _, body = await d.call("POST", "/auth/token", {
                "authorization": f"Basic {basic}",
                "content-type": "application/x-www-form-urlencoded"},
                b"grant_type=client_credentials")
            auth = {"authorization": f"Bearer {orjson.loads(body)['access_token']}",
                    "content-type": "application/fhir+json"}
            ps = make_patients(500, seed=1)
            _, body = await d.call("POST", "/fhir", auth,
                                   orjson.dumps(transaction_bundle(ps.bodies)))
            ids = created_ids(body)

            async def loop(ci: int, n: int) -> None:
                for i in range(n):
                    status, _ = await d.call("GET", f"/fhir/Patient/{ids[(ci * n + i) % 500]}",
                                             auth)
                    if status != 200:
                        raise RuntimeError(f"HTTP {status}")

            await asyncio.gather(*[loop(ci, 20) for ci in range(clients)])  # warm
            counts["connect"] = counts["checkout"] = 0
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*[loop(ci, per_client) for ci in range(clients)])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            n = clients * per_client
            return {"requests": n, "rps": round(n / wall, 1),
                    "cpu_per_req_ms": round(cpu / n * 1e3, 3),
                    "connects": counts["connect"], "checkouts": counts["checkout"]}

        result = asyncio.run(main())
        rt.engine.dispose()
        return result
    finally:
        inst.drop()


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        out = measure(sys.argv[2], sys.argv[3], 16, 100)
        Path(sys.argv[4]).write_text(json.dumps(out))
        return 0
    results: dict[str, Any] = {}
    backends = ["sqlite"] + (["postgresql"] if pg_available() else [])
    for backend in backends:
        for variant in VARIANTS[backend]:
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                subprocess.run([sys.executable, __file__, "--child", backend, variant, f.name],
                               check=True, timeout=600)
                r = json.loads(Path(f.name).read_text())
            results[f"{backend}.{variant}"] = r
            log(f"{backend} {variant}: {r}")
    figures = {f"{k}.{m}": v[m] for k, v in results.items()
               for m in ("rps", "cpu_per_req_ms", "connects")}
    write_result("whatif_pool", {"benchmark": "whatif_pool", "clients": 16,
                                 "requests_per_client": 100, "machine": machine(),
                                 "results": results, "figures": figures})
    emit("whatif_pool", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
