"""Helpers for tests of people's accounts and sign-in: an app, enrolled people, TOTP codes."""

from __future__ import annotations

import base64
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from hygie.access import accounts
from hygie.api.app import create_app
from hygie.crypto.totp import totp_at
from hygie.store.db import transaction
from hygie.store.tables import audit_event
from hygie.store.tables_accounts import user_account

from .conftest import Instance

PASSWORD = "violet kettle harbour 1987"


@dataclass
class Person:
    username: str
    password: str
    secret: bytes
    recovery_codes: list[str]
    user_id: str
    activation_code: str = ""


@dataclass
class People:
    """An app built from (possibly shortened) settings, with a TestClient over https."""

    app: Any
    client: TestClient
    settings: Any
    extra_clients: list[TestClient] = field(default_factory=list)

    @property
    def engine(self) -> Any:
        return self.app.state.runtime.engine

    @property
    def keys(self) -> Any:
        return self.app.state.runtime.gate.keys

    def other_client(self, address: str = "203.0.113.9", *, https: bool = True) -> TestClient:
        """A client calling from another address (per-address throttling)."""
        c = TestClient(self.app, base_url="https://testserver" if https else "http://testserver",
                       raise_server_exceptions=False, client=(address, 40000))
        self.extra_clients.append(c)
        return c

    def add(self, username: str, role: str = "secretary", **kw: Any) -> str:
        with transaction(self.engine) as conn:
            issued = accounts.add_user(conn=conn, tenant=self.settings.tenant,
                                       username=username, role=role,
                                       activation_days=self.settings.activation_days, **kw)
        return issued.code

    def enrol(self, code: str, password: str = PASSWORD) -> dict[str, Any]:
        resp = self.client.post("/auth/activate",
                                json={"activation_code": code, "password": password})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def person(self, username: str, role: str = "secretary", password: str = PASSWORD,
               **kw: Any) -> Person:
        """An active account: added, enrolled and confirmed with a real TOTP code."""
        code = self.add(username, role, **kw)
        body = self.enrol(code, password)
        secret = secret_of(body["totp_uri"])
        resp = self.client.post("/auth/activate/confirm", json={
            "activation_code": code, "totp_code": totp_at(secret, time.time())})
        assert resp.status_code == 204, resp.text
        return Person(username, password, secret, body["recovery_codes"],
                      self.user_id(username), code)

    def user_id(self, username: str) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(select(user_account.c.id).where(
                user_account.c.username == username)).scalar_one())

    def forget_last_step(self, person: Person) -> None:
        """Let the current TOTP code be used again (tests sign in several times a minute)."""
        with self.engine.begin() as conn:
            conn.execute(update(user_account).where(user_account.c.id == person.user_id)
                         .values(totp_last_step=None))

    def login(self, username: str, password: str, client: TestClient | None = None) -> Any:
        return (client or self.client).post("/auth/login", json={"username": username,
                                                                 "password": password})

    def mfa(self, challenge: str, code: str, client: TestClient | None = None) -> Any:
        return (client or self.client).post("/auth/mfa", json={"mfa_challenge": challenge,
                                                               "code": code})

    def sign_in(self, person: Person, client: TestClient | None = None,
                code: str | None = None) -> Any:
        """Password then TOTP (the current code, made usable again): the /auth/mfa answer."""
        resp = self.login(person.username, person.password, client)
        assert resp.status_code == 200, resp.text
        if code is None:
            self.forget_last_step(person)
            code = totp_at(person.secret, time.time())
        return self.mfa(resp.json()["mfa_challenge"], code, client)

    def tokens(self, person: Person, client: TestClient | None = None) -> dict[str, Any]:
        resp = self.sign_in(person, client)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def audit(self, **where: Any) -> list[Any]:
        stmt = select(audit_event).order_by(audit_event.c.seq)
        for k, v in where.items():
            stmt = stmt.where(audit_event.c[k] == v)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).all())

    def close(self) -> None:
        for c in [self.client, *self.extra_clients]:
            c.close()
        self.engine.dispose()


def secret_of(totp_uri: str) -> bytes:
    text = parse_qs(urlparse(totp_uri).query)["secret"][0]
    return base64.b32decode(text + "=" * (-len(text) % 8))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_people(instance: Instance, **settings: Any) -> People:
    values = {"login_delay_ms": 0, **settings}
    s = dataclasses.replace(instance.settings, **values)
    app = create_app(s)
    client = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
    return People(app, client, s)

