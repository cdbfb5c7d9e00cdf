"""Accounts: TOTP (RFC vectors), password rules, `hygie user` commands, activation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from hygie.access.passwords import check_password, common_passwords
from hygie.cli.main import app as cli_app
from hygie.crypto import token_digest
from hygie.crypto.totp import (
    b32,
    hotp_at,
    new_totp_secret,
    provisioning_uri,
    time_step,
    totp_at,
    verify_totp,
)
from hygie.errors import WeakPassword
from hygie.store.tables_accounts import recovery_code, user_account

from .conftest import Instance
from .people import PASSWORD, People, make_people, secret_of

VECTORS = Path(__file__).parent / "fixtures" / "vectors"
runner = CliRunner()


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


def cli(instance: Instance, *args: str) -> Any:
    return runner.invoke(cli_app, [*args, "--data-dir", str(instance.data_dir)],
                         catch_exceptions=False)


# -- TOTP: RFC 6238 and RFC 4226 vectors --------------------------------------------------------
def test_hotp_rfc4226_vectors() -> None:
    doc = json.loads((VECTORS / "hotp_rfc4226.json").read_text())
    secret = bytes.fromhex(doc["secret_hex"])
    for v in doc["vectors"]:
        assert hotp_at(secret, v["count"], digits=doc["digits"]) == v["hotp"]


def test_totp_rfc6238_vectors_for_every_digest() -> None:
    doc = json.loads((VECTORS / "totp_rfc6238.json").read_text())
    assert len(doc["vectors"]) == 18
    for v in doc["vectors"]:
        secret = bytes.fromhex(doc["seeds"][v["mode"]]["hex"])
        assert time_step(v["unix_time"]) == int(v["T_hex"], 16)
        assert totp_at(secret, v["unix_time"], digits=doc["digits"],
                       algorithm=v["mode"]) == v["totp"], v
        if v["mode"] == "SHA1":  # Hygie's own parameters: the last 6 of the 8 digits
            assert totp_at(secret, v["unix_time"]) == v["totp"][-6:]


def test_totp_window_and_replay() -> None:
    secret = new_totp_secret()
    assert len(secret) == 20
    now = 1_700_000_000.0
    step = time_step(now)
    assert verify_totp(secret, totp_at(secret, now), unix_time=now, last_step=None) == step
    for drift in (-30, 30):  # one step either side
        assert verify_totp(secret, totp_at(secret, now + drift), unix_time=now,
                           last_step=None) == step + drift // 30
    for drift in (-90, -60, 60, 90):  # further is refused
        code = totp_at(secret, now + drift)
        if code not in {totp_at(secret, now + d) for d in (-30, 0, 30)}:
            assert verify_totp(secret, code, unix_time=now, last_step=None) is None
    # Once a step was accepted, its code and older ones are refused (no replay).
    assert verify_totp(secret, totp_at(secret, now), unix_time=now, last_step=step) is None
    assert verify_totp(secret, totp_at(secret, now - 30), unix_time=now, last_step=step) is None
    assert verify_totp(secret, totp_at(secret, now + 30), unix_time=now,
                       last_step=step) == step + 1
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert verify_totp(secret, bad, unix_time=now, last_step=None) is None


def test_provisioning_uri() -> None:
    secret = new_totp_secret()
    uri = provisioning_uri(secret, account="dr.house")
    assert uri.startswith("otpauth://totp/Hygie:dr.house?")
    assert "issuer=Hygie" in uri and f"secret={b32(secret)}" in uri
    assert secret_of(uri) == secret


# -- password rules ----------------------------------------------------------------------------
def test_common_password_list_is_bundled() -> None:
    common = common_passwords()
    assert len(common) >= 10_000
    assert {"123456", "password", "iloveyou"} <= common


@pytest.mark.parametrize("password", [
    "Zq9!",  # too short
    "elevenchars",  # 11
    "aaaaaaaaaaaaaaaa",  # too few distinct characters
    "LeaveMeAlone",  # in the breached list (compared in lower case)
    "1qaz2wsx3edc",  # in the breached list
    "my name is dr.house!",  # contains the username
])
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword) as err:
        check_password(password, username="dr.house")
    assert password not in err.value.message


def test_good_password_is_accepted() -> None:
    check_password(PASSWORD, username="dr.house")
    check_password("x" * 11 + "yz€", username="dr.house")


# -- hygie user ... ----------------------------------------------------------------------------
def test_user_add_list_disable(instance: Instance, people: People) -> None:
    result = cli(instance, "user", "add", "dr.house", "--role", "practitioner",
                 "--practitioner-id", "pract-1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"username", "activation_code"} and doc["username"] == "dr.house"
    code = doc["activation_code"]
    assert len(code.replace("-", "")) == 24  # 120 bits of base32
    listed = json.loads(cli(instance, "user", "list", "--json").stdout)
    assert [(u["username"], u["role"], u["status"], u["practitioner_id"]) for u in listed] == [
        ("dr.house", "practitioner", "pending", "pract-1")]
    assert code not in json.dumps(listed)
    human = cli(instance, "user", "list")
    assert "dr.house" in human.stdout and "pending" in human.stdout
    with people.engine.connect() as conn:
        row = conn.execute(select(user_account)).one()
    assert row.activation_digest == token_digest(code.replace("-", ""))
    assert code.encode() not in repr(tuple(row)).encode()
    # disable
    assert cli(instance, "user", "disable", "dr.house").exit_code == 0
    listed = json.loads(cli(instance, "user", "list", "--json").stdout)
    assert listed[0]["status"] == "disabled" and listed[0]["disabled_at"]
    again = runner.invoke(cli_app, ["user", "disable", "dr.house", "--data-dir",
                                    str(instance.data_dir)])
    assert again.exit_code == 1 and "already disabled" in again.stderr
    # the activation code of a disabled account no longer works
    resp = people.client.post("/auth/activate", json={"activation_code": code,
                                                      "password": PASSWORD})
    assert resp.status_code == 400
    rows = people.audit(actor="cli:user")
    assert [(r.action, r.outcome, r.actor_kind, r.rid) for r in rows] == [
        ("user-add", "success", "system", row.id), ("user-disable", "success", "system", row.id)]


USER_ADD_REFUSALS = [
    (["Dr.House", "--role", "secretary"], "username"),
    (["ab", "--role", "secretary"], "username"),
    (["x" * 65, "--role", "secretary"], "username"),
    (["bob", "--role", "nurse"], "unknown role"),
    (["bob", "--role", "practitioner"], "--practitioner-id"),
    (["bob", "--role", "patient"], "--patient-id"),
    (["bob", "--role", "secretary", "--patient-id", "p1"], "only a patient"),
    (["bob", "--role", "patient", "--practitioner-id", "p1", "--patient-id", "p2"],
     "only a practitioner"),
    (["bob", "--role", "admin", "--practitioner-id", "p1"], "only a practitioner"),
]


def test_user_add_refusals(instance: Instance) -> None:
    for args, message in USER_ADD_REFUSALS:
        result = runner.invoke(cli_app, ["user", "add", *args, "--data-dir",
                                         str(instance.data_dir)])
        assert result.exit_code == 1, args
        assert result.stderr.startswith("hygie: error: ") and message in result.stderr, args
        assert "Traceback" not in result.output
    assert json.loads(cli(instance, "user", "list", "--json").stdout) == []


def test_usernames_are_unique(instance: Instance) -> None:
    assert cli(instance, "user", "add", "alice", "--role", "secretary").exit_code == 0
    again = runner.invoke(cli_app, ["user", "add", "alice", "--role", "admin", "--data-dir",
                                    str(instance.data_dir)])
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_reset_mfa_requires_a_new_enrolment(instance: Instance, people: People) -> None:
    alice = people.person("alice")
    tokens = people.tokens(alice)
    result = cli(instance, "user", "reset-mfa", "alice", "--json")
    assert result.exit_code == 0, result.output
    code = json.loads(result.stdout)["activation_code"]
    assert code != alice.activation_code
    # Sessions end at once; the old password and recovery codes are gone.
    me = people.client.get("/auth/session", headers={"Authorization":
                                                     f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401
    assert people.login("alice", PASSWORD).status_code == 401
    with people.engine.connect() as conn:
        assert conn.execute(select(recovery_code)).all() == []
    new_password = "orchard lantern quietly 42"
    body = people.enrol(code, new_password)
    assert secret_of(body["totp_uri"]) != alice.secret
    assert people.client.post("/auth/activate/confirm", json={
        "activation_code": code,
        "totp_code": totp_at(secret_of(body["totp_uri"]), time.time())}).status_code == 204
    assert people.login("alice", new_password).status_code == 200
    assert [r.action for r in people.audit(actor="cli:user")] == ["user-add", "user-reset-mfa"]


def test_reset_mfa_of_unknown_or_disabled_account(instance: Instance) -> None:
    unknown = runner.invoke(cli_app, ["user", "reset-mfa", "ghost", "--data-dir",
                                      str(instance.data_dir)])
    assert unknown.exit_code == 1 and "no account" in unknown.stderr
    cli(instance, "user", "add", "bob", "--role", "dpo")
    cli(instance, "user", "disable", "bob")
    disabled = runner.invoke(cli_app, ["user", "reset-mfa", "bob", "--data-dir",
                                       str(instance.data_dir)])
    assert disabled.exit_code == 1 and "disabled" in disabled.stderr


# -- activation ---------------------------------------------------------------------------------
def test_activation_enrols_password_totp_and_recovery_codes(people: People) -> None:
    code = people.add("carol", "patient", patient_id="pat-1")
    body = people.enrol(code)
    assert set(body) == {"totp_uri", "recovery_codes"}
    assert body["totp_uri"].startswith("otpauth://totp/Hygie:carol?")
    assert "issuer=Hygie" in body["totp_uri"]
    secret = secret_of(body["totp_uri"])
    assert len(secret) == 20
    codes = body["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    # Not active yet: the password alone does not open a session.
    assert people.login("carol", PASSWORD).status_code == 401
    confirm = people.client.post("/auth/activate/confirm", json={
        "activation_code": code, "totp_code": totp_at(secret, time.time())})
    assert confirm.status_code == 204 and confirm.content == b""
    assert people.login("carol", PASSWORD).status_code == 200
    # Secrets at rest: an argon2id hash, a sealed TOTP secret, digests of the codes.
    with people.engine.connect() as conn:
        row = conn.execute(select(user_account)).one()
        stored_codes = conn.execute(select(recovery_code.c.digest)).scalars().all()
    assert row.status == "active" and row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert secret not in row.totp_secret and b32(secret).encode() not in row.totp_secret
    assert sorted(stored_codes) == sorted(token_digest(c.replace("-", "")) for c in codes)
    assert row.activation_digest is None
    rows = people.audit(action="activate")
    assert [(r.outcome, r.code) for r in rows] == [("success", "enrolled"),
                                                   ("success", "active")]
    assert all(r.request_id and r.client_address for r in rows)


def test_activation_refuses_weak_passwords_without_echoing_them(people: People) -> None:
    code = people.add("dave")
    for password in ("Xy7#kq", "LeaveMeAlone", "ab" * 8, "dave is great!"):
        resp = people.client.post("/auth/activate", json={"activation_code": code,
                                                          "password": password})
        assert resp.status_code == 400, password
        issue = resp.json()["issue"][0]
        assert issue["details"]["coding"][0]["code"] in ("weak-password", "invalid-request")
        assert password not in resp.text
    # The code was not spent by the refusals.
    assert people.enrol(code)["recovery_codes"]
    denied = people.audit(action="activate", outcome="denied")
    assert len(denied) == 4 and all(r.code == "weak-password" for r in denied)


def test_activation_codes_are_single_use(people: People) -> None:
    code = people.add("erin")
    body = people.enrol(code)
    again = people.client.post("/auth/activate", json={"activation_code": code,
                                                       "password": "another long passphrase"})
    assert again.status_code == 400
    secret = secret_of(body["totp_uri"])
    ok = people.client.post("/auth/activate/confirm", json={
        "activation_code": code, "totp_code": totp_at(secret, time.time())})
    assert ok.status_code == 204
    for path, payload in (("/auth/activate/confirm", {"totp_code": totp_at(secret,
                                                                            time.time() + 30)}),
                          ("/auth/activate", {"password": "another long passphrase"})):
        resp = people.client.post(path, json={"activation_code": code, **payload})
        assert resp.status_code == 400
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_expired_activation_code_is_refused(people: People) -> None:
    code = people.add("frank")
    with people.engine.begin() as conn:
        conn.execute(update(user_account).values(activation_expires_at=int(time.time() * 1e6)
                                                 - 1))
    resp = people.client.post("/auth/activate", json={"activation_code": code,
                                                      "password": PASSWORD})
    assert resp.status_code == 400 and "expired" in resp.json()["issue"][0]["diagnostics"]


def test_activation_code_lifetime_follows_the_setting(people: People) -> None:
    before = int(time.time() * 1e6)
    people.add("gina")
    with people.engine.connect() as conn:
        expires = conn.execute(select(user_account.c.activation_expires_at)).scalar_one()
    assert abs(expires - before - 7 * 86_400_000_000) < 60_000_000


def test_confirmation_needs_a_valid_totp_and_gives_up_after_five_tries(people: People) -> None:
    code = people.add("hugo")
    secret = secret_of(people.enrol(code)["totp_uri"])
    good = totp_at(secret, time.time())
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(5):
        resp = people.client.post("/auth/activate/confirm", json={"activation_code": code,
                                                                  "totp_code": wrong})
        assert resp.status_code == 400
    resp = people.client.post("/auth/activate/confirm", json={"activation_code": code,
                                                              "totp_code": good})
    assert resp.status_code == 400  # too many tries: an operator must reset the account


def test_unknown_activation_code(people: People) -> None:
    resp = people.client.post("/auth/activate", json={"activation_code": "AAAA-BBBB",
                                                      "password": PASSWORD})
    assert resp.status_code == 400
    rows = people.audit(action="activate")
    assert [(r.actor, r.outcome, r.code) for r in rows] == [("anonymous", "denied",
                                                             "bad-code")]
