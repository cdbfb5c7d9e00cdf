"""Shared fixtures: real instances on SQLite and PostgreSQL, and an authenticated API client.

Every test that takes ``instance`` (or ``api``) runs twice: on an SQLite data dir and on a
fresh PostgreSQL database (the server on 127.0.0.1:5432, or ``HYGIE_TEST_PG_URL``). Each test
gets its own copy of a template instance made once per session with ``hygie init``'s code.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from hygie.access.clients import create_client
from hygie.api.app import create_app
from hygie.instance import init_instance
from hygie.settings import Settings, load_settings
from hygie.store.db import make_engine, transaction

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PG_ADMIN = os.environ.get("HYGIE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # fail loudly: PostgreSQL is part of the suite
        pytest.fail(f"PostgreSQL is required for the test suite ({PG_ADMIN}): {exc}",
                    pytrace=False)


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def _set_database_url(data_dir: Path, url: str) -> None:
    cfg = data_dir / "hygie.toml"
    lines = [f'database_url = "{url}"' if ln.startswith("database_url") else ln
             for ln in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")


@dataclass
class Instance:
    backend: str
    data_dir: Path
    settings: Settings
    dbname: str | None = None


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    """One initialised instance per backend, copied for each test."""
    root = tmp_path_factory.mktemp("templates")
    made: dict[str, Path | str] = {}
    sqlite_dir = root / "sqlite"
    init_instance(sqlite_dir)
    made["sqlite"] = sqlite_dir
    admin = _pg_admin()
    tpl = f"hygie_tpl_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{tpl}"')
    pg_dir = root / "postgresql"
    init_instance(pg_dir, database_url=_pg_url(tpl))
    made["postgresql"] = pg_dir
    made["pg_template"] = tpl
    yield made
    admin.execute(f'DROP DATABASE IF EXISTS "{tpl}" WITH (FORCE)')
    admin.close()


@contextmanager
def _make_instance(backend: str, templates: dict[str, Any], tmp_path: Path
                   ) -> Iterator[Instance]:
    """A private copy of the template instance of ``backend`` (dropped afterwards)."""
    data_dir = tmp_path / "data"
    shutil.copytree(templates[backend], data_dir)
    os.chmod(data_dir, 0o700)
    dbname = None
    if backend == "sqlite":
        _set_database_url(data_dir, f"sqlite:///{data_dir / 'hygie.db'}")
    else:
        dbname = f"hygie_t_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{templates["pg_template"]}"')
        _set_database_url(data_dir, _pg_url(dbname))
    _set_key_file(data_dir)
    try:
        yield Instance(backend, data_dir, load_settings(data_dir), dbname)
    finally:
        if dbname:
            with _pg_admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def instance(request: pytest.FixtureRequest, templates: dict[str, Any],
             tmp_path: Path) -> Iterator[Instance]:
    with _make_instance(request.param, templates, tmp_path) as inst:
        yield inst


def _set_key_file(data_dir: Path) -> None:
    cfg = data_dir / "hygie.toml"
    lines = [f'key_source = "file:{data_dir / "kek.json"}"' if ln.startswith("key_source")
             else ln for ln in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")


class Api:
    """A TestClient with a bearer token for a client holding ``scopes``."""

    def __init__(self, client: TestClient, app: Any, token: str, client_id: str,
                 secret: str) -> None:
        self.client = client
        self.app = app
        self.token = token
        self.client_id = client_id
        self.secret = secret

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        if "json" in kw:
            import json

            kw["content"] = json.dumps(kw.pop("json"))
            headers.setdefault("Content-Type", "application/fhir+json")
        return self.client.request(method, path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    @property
    def gate(self) -> Any:
        return self.app.state.runtime.gate

    @property
    def engine(self) -> Any:
        return self.app.state.runtime.engine


def get_token(client: TestClient, client_id: str, secret: str, **form: str) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post("/auth/token", data={"grant_type": "client_credentials", **form},
                       headers={"Authorization": f"Basic {basic}"})


def make_api(instance: Instance, scopes: str = "system/*.*") -> tuple[Api, Any]:
    app = create_app(instance.settings)
    client = TestClient(app, raise_server_exceptions=False)
    with transaction(app.state.runtime.engine) as conn:
        cid, secret = create_client(conn, tenant="default", name="tests", scopes=scopes)
    resp = get_token(client, cid, secret)
    assert resp.status_code == 200, resp.text
    return Api(client, app, resp.json()["access_token"], cid, secret), app


@pytest.fixture
def api(instance: Instance) -> Iterator[Api]:
    a, app = make_api(instance)
    yield a
    a.client.close()
    app.state.runtime.engine.dispose()


@pytest.fixture
def synthea_bundles() -> list[Path]:
    return sorted((FIXTURES / "synthea").glob("*.json"))


def fresh_engine(instance: Instance) -> Any:
    return make_engine(instance.settings.database_url, pool=False)
