"""The raw baseline: the same FHIR calls on plain SQLite, served by the same uvicorn.

No framework, no validation, no encryption, no audit, no authentication, no history: a bare
ASGI app that stores the same JSON bodies through Python's ``sqlite3`` (WAL,
``synchronous=NORMAL`` like Hygie's default) and answers like the FHIR API does:

* ``res(id TEXT PRIMARY KEY, json BLOB)``: POST /fhir/{type} (create), GET /fhir/{type}/{id}
  (read), PUT /fhir/{type}/{id} (update in place);
* ``pat(id TEXT PRIMARY KEY, json BLOB, identifier TEXT, family TEXT)`` with an index on each
  clear-text column: POST /fhir (transaction Bundle of Patients) and
  GET /fhir/Patient?identifier=system|value or ?family=prefix (a searchset Bundle with total);
* ``GET /fhir/metadata`` so the harness can tell it is up.

Each uvicorn worker has its own connection and runs SQL on the event loop thread (the leanest
way to serve SQLite). Run: ``python bench/raw_server.py --db PATH --port N --workers 2``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import unicodedata
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS res (id TEXT PRIMARY KEY, json BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pat (id TEXT PRIMARY KEY, json BLOB NOT NULL, identifier TEXT,
                                family TEXT);
CREATE INDEX IF NOT EXISTS pat_identifier ON pat (identifier);
CREATE INDEX IF NOT EXISTS pat_family ON pat (family);
"""
_HEADERS = [(b"content-type", b"application/fhir+json")]
PAGE = 50


def fold(text: str) -> str:
    t = unicodedata.normalize("NFKD", text)
    return "".join(c for c in t if not unicodedata.combining(c)).lower()


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def init_db(path: str) -> None:
    conn = connect(path)
    conn.executescript(SCHEMA)
    conn.close()


def _stamp(doc: dict[str, Any], rid: str) -> bytes:
    doc["id"] = rid
    meta = dict(doc.get("meta") or {})
    meta["versionId"] = "1"
    meta["lastUpdated"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc["meta"] = meta
    return orjson.dumps(doc)


def search_columns(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    ident = next((f"{i.get('system')}|{i.get('value')}" for i in doc.get("identifier") or []),
                 None)
    family = next((n.get("family") for n in doc.get("name") or [] if n.get("family")), None)
    return ident, fold(family) if family else None


class RawApp:
    def __init__(self, db: str) -> None:
        self.db = db
        self.conn = connect(db)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    self.conn.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        status, out = self.handle(scope["method"], scope["path"], scope["query_string"], body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_HEADERS, (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    def handle(self, method: str, path: str, query: bytes, body: bytes) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        if parts[0] != "fhir":
            return 404, b"{}"
        c = self.conn
        if len(parts) == 2 and parts[1] == "metadata":
            return 200, b'{"resourceType":"CapabilityStatement"}'
        if len(parts) == 1 and method == "POST":
            return self.transaction(body)
        if len(parts) == 2 and method == "POST":
            rid = str(uuid.uuid4())
            data = _stamp(orjson.loads(body), rid)
            c.execute("INSERT INTO res (id, json) VALUES (?, ?)", (rid, data))
            return 201, data
        if len(parts) == 2 and method == "GET":
            return self.search(parts[1], query)
        if len(parts) == 3 and method == "GET":
            row = c.execute("SELECT json FROM res WHERE id = ?", (parts[2],)).fetchone()
            return (200, row[0]) if row else (404, b'{"resourceType":"OperationOutcome"}')
        if len(parts) == 3 and method == "PUT":
            data = _stamp(orjson.loads(body), parts[2])
            cur = c.execute("UPDATE res SET json = ? WHERE id = ?", (data, parts[2]))
            if cur.rowcount == 0:
                c.execute("INSERT INTO res (id, json) VALUES (?, ?)", (parts[2], data))
                return 201, data
            return 200, data
        return 405, b'{"resourceType":"OperationOutcome"}'

    def transaction(self, body: bytes) -> tuple[int, bytes]:
        doc = orjson.loads(body)
        rows, entries = [], []
        for e in doc.get("entry") or []:
            r = e["resource"]
            rid = str(uuid.uuid4())
            ident, family = search_columns(r)
            rows.append((rid, _stamp(r, rid), ident, family))
            entries.append({"response": {"status": "201 Created",
                                         "location": f"{r['resourceType']}/{rid}/_history/1"}})
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT INTO pat (id, json, identifier, family) VALUES (?, ?, ?, ?)",
                          rows)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return 200, orjson.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                  "entry": entries})

    def search(self, rtype: str, query: bytes) -> tuple[int, bytes]:
        params = parse_qsl(query.decode())
        if rtype != "Patient" or len(params) != 1:
            return 400, b'{"resourceType":"OperationOutcome"}'
        name, value = params[0]
        if name == "identifier":
            where, args = "identifier = ?", (value,)
        elif name == "family":
            low = fold(value)
            where, args = "family >= ? AND family < ?", (low, low + "\U0010ffff")
        else:
            return 400, b'{"resourceType":"OperationOutcome"}'
        c = self.conn
        c.execute("BEGIN")
        try:
            total = c.execute(f"SELECT count(*) FROM pat WHERE {where}", args).fetchone()[0]
            rows = c.execute(f"SELECT id, json FROM pat WHERE {where} ORDER BY id LIMIT {PAGE}",
                             args).fetchall()
        finally:
            c.execute("COMMIT")
        bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset",
                  "total": total,
                  "entry": [{"fullUrl": f"Patient/{rid}", "resource": orjson.Fragment(js),
                             "search": {"mode": "match"}} for rid, js in rows]}
        return 200, orjson.dumps(bundle)


def create_app() -> RawApp:
    return RawApp(os.environ["RAW_SQLITE_DB"])


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    init_db(str(args.db))
    os.environ["RAW_SQLITE_DB"] = str(args.db)
    uvicorn.run("raw_server:create_app", factory=True, host="127.0.0.1", port=args.port,
                workers=args.workers, log_level="warning", access_log=False,
                server_header=False, app_dir=str(Path(__file__).parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
