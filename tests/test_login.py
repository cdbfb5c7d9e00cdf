"""People's sign-in: password + MFA, tokens, refresh rotation, logout, timeouts, lockout."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from hygie.access.sessions import AuthLimits
from hygie.crypto import token_digest
from hygie.crypto.totp import b32, totp_at
from hygie.store.tables import audit_event
from hygie.store.tables_accounts import login_throttle, session_token, user_session

from .conftest import Instance
from .people import PASSWORD, People, Person, bearer, make_people

AUTH_ACTIONS = ("login", "mfa", "lockout", "refresh", "token-reuse", "logout", "activate")


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


@pytest.fixture
def alice(people: People) -> Person:
    return people.person("alice", "secretary")


def now_us() -> int:
    return time.time_ns() // 1000


def assert_outcome(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == code
    return body


# -- the happy path -----------------------------------------------------------------------------
def test_login_then_mfa_gives_tokens_and_a_session_cookie(people: People, alice: Person) -> None:
    first = people.login("alice", PASSWORD)
    assert first.status_code == 200 and set(first.json()) == {"mfa_challenge"}
    assert first.headers["cache-control"] == "no-store"
    people.forget_last_step(alice)
    resp = people.mfa(first.json()["mfa_challenge"], totp_at(alice.secret, time.time()))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert len(body["access_token"]) >= 43 and body["access_token"] != body["refresh_token"]
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"hygie_session={body['access_token']};")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict", "secure"} <= flags
    assert resp.headers["cache-control"] == "no-store"
    # Bearer and cookie both authenticate.
    me = people.client.get("/auth/session", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    info = me.json()
    assert info["username"] == "alice" and info["role"] == "secretary"
    assert info["idle_timeout_seconds"] == 900 and info["expires_at"].endswith("Z")
    assert people.client.get("/auth/session").json() == info  # the cookie
    # Tokens are stored as digests only.
    with people.engine.connect() as conn:
        digests = conn.execute(select(session_token.c.digest)).scalars().all()
    assert token_digest(body["access_token"]) in digests
    assert all(body["access_token"].encode() not in d for d in digests)


def test_cookie_is_not_secure_over_plain_http(people: People, alice: Person) -> None:
    plain = people.other_client("198.51.100.4", https=False)
    resp = people.sign_in(alice, plain)
    flags = {f.strip().lower() for f in resp.headers["set-cookie"].split(";")[1:]}
    assert "secure" not in flags and "httponly" in flags and "samesite=strict" in flags


def test_cookie_secure_always_setting(instance: Instance) -> None:
    p = make_people(instance, cookie_secure="always")
    try:
        person = p.person("zoe")
        resp = p.sign_in(person, p.other_client("198.51.100.5", https=False))
        assert "secure" in resp.headers["set-cookie"].lower()
    finally:
        p.close()


def test_people_tokens_reach_the_fhir_api(people: People, alice: Person) -> None:
    tokens = people.tokens(alice)
    resp = people.client.get("/fhir/Patient", headers=bearer(tokens["access_token"]))
    assert resp.status_code == 200, resp.text  # a secretary may search patients
    assert people.client.get("/fhir/Patient").status_code == 200  # the cookie too


def test_api_clients_have_no_session(people: People) -> None:
    from hygie.access.clients import create_client, issue_token
    from hygie.store.db import transaction

    with transaction(people.engine) as conn:
        cid, secret = create_client(conn, tenant="default", name="t", scopes="system/*.*")
        token = issue_token(conn, tenant="default", client_id=cid, secret=secret,
                            ttl=60).access_token
    assert_outcome(people.client.get("/auth/session", headers=bearer(token)), 403, "forbidden")
    assert_outcome(people.client.post("/auth/logout", headers=bearer(token)), 401,
                   "unauthenticated")


# -- identical failures ---------------------------------------------------------------------------
def test_failures_answer_the_same_whatever_the_reason(people: People, alice: Person) -> None:
    pending_code = people.add("pending.user")
    del pending_code
    disabled = people.person("disabled.user")
    from hygie.access.accounts import disable_user
    from hygie.store.db import transaction

    with transaction(people.engine) as conn:
        disable_user(conn=conn, tenant="default", username="disabled.user")
    answers = [
        people.login("alice", "wrong password here"),  # wrong password
        people.login("nobody", PASSWORD),  # unknown user
        people.login("pending.user", PASSWORD),  # not activated
        people.login("disabled.user", disabled.password),  # disabled, right password
    ]
    bodies = {r.content for r in answers}
    assert len(bodies) == 1, bodies
    for r in answers:
        assert_outcome(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == "Bearer"
        assert PASSWORD not in r.text
    codes = [(r.code, r.actor) for r in people.audit(action="login", outcome="denied")]
    assert codes == [("bad-password", f"user:{alice.user_id}"), ("unknown-user", "anonymous"),
                     ("account-pending", f"user:{people.user_id('pending.user')}"),
                     ("account-disabled", f"user:{disabled.user_id}")]


def test_unknown_users_cost_a_password_hash_too(people: People, alice: Person,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from hygie.access import sessions

    calls: list[str | None] = []
    real = sessions.verify_secret

    def spy(stored: str | None, secret: str) -> bool:
        calls.append(stored)
        return real(stored, secret)

    monkeypatch.setattr(sessions, "verify_secret", spy)
    people.login("nobody", PASSWORD)
    people.login("alice", "wrong password here")
    assert calls[0] is None and calls[1] is not None and calls[1].startswith("$argon2id$")
    # The dummy verification really runs argon2: comparable time for both answers.
    t0 = time.perf_counter()
    people.login("nobody", PASSWORD)
    unknown = time.perf_counter() - t0
    t0 = time.perf_counter()
    people.login("alice", "wrong password here")
    known = time.perf_counter() - t0
    assert unknown > known / 4 and known > unknown / 4


# -- second factor ----------------------------------------------------------------------------
def test_mfa_challenge_is_single_use_and_expires(people: People, alice: Person) -> None:
    challenge = people.login("alice", PASSWORD).json()["mfa_challenge"]
    wrong = people.mfa(challenge, "000000" if totp_at(alice.secret, time.time()) != "000000"
                       else "111111")
    assert_outcome(wrong, 401, "unauthenticated")
    people.forget_last_step(alice)
    # Even with a good code, a challenge once tried is gone.
    assert_outcome(people.mfa(challenge, totp_at(alice.secret, time.time())), 401,
                   "unauthenticated")
    challenge = people.login("alice", PASSWORD).json()["mfa_challenge"]
    from hygie.store.tables_accounts import mfa_challenge

    with people.engine.begin() as conn:
        conn.execute(update(mfa_challenge).values(expires_at=now_us() - 1))
    assert_outcome(people.mfa(challenge, totp_at(alice.secret, time.time())), 401,
                   "unauthenticated")
    assert_outcome(people.mfa("made-up-challenge", "123456"), 401, "unauthenticated")
    rows = people.audit(action="mfa", outcome="denied")
    assert [r.code for r in rows] == ["bad-code", "bad-challenge", "bad-challenge",
                                      "bad-challenge"]


def test_totp_code_cannot_be_replayed(people: People, alice: Person) -> None:
    people.forget_last_step(alice)
    code = totp_at(alice.secret, time.time())
    assert people.sign_in(alice, code=code).status_code == 200
    replay = people.sign_in(alice, code=code)
    assert_outcome(replay, 401, "unauthenticated")
    # The next time step's code still works (within the ±1 step window).
    assert people.sign_in(alice, code=totp_at(alice.secret, time.time() + 30)).status_code == 200


def test_recovery_code_works_once(people: People, alice: Person) -> None:
    code = alice.recovery_codes[3]
    resp = people.sign_in(alice, code=code.lower().replace("-", " "))  # forgiving input
    assert resp.status_code == 200, resp.text
    assert_outcome(people.sign_in(alice, code=code), 401, "unauthenticated")
    assert people.sign_in(alice, code=alice.recovery_codes[4]).status_code == 200
    rows = people.audit(action="mfa", outcome="success")
    assert [r.code for r in rows] == ["recovery-code", "recovery-code"]


# -- refresh rotation and reuse -------------------------------------------------------------------
def test_refresh_rotates_and_reuse_revokes_the_family(people: People, alice: Person) -> None:
    first = people.tokens(alice)
    rotated = people.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert rotated.headers["set-cookie"].startswith(f"hygie_session={second['access_token']}")
    # Only the newest access token works.
    assert people.client.get("/auth/session", headers=bearer(first["access_token"])
                             ).status_code == 401
    assert people.client.get("/auth/session", headers=bearer(second["access_token"])
                             ).status_code == 200
    # The spent refresh token comes back: someone copied it. The whole session stops.
    reuse = people.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_outcome(reuse, 401, "unauthenticated")
    assert people.client.get("/auth/session", headers=bearer(second["access_token"])
                             ).status_code == 401
    assert_outcome(people.client.post("/auth/refresh",
                                      json={"refresh_token": second["refresh_token"]}),
                   401, "unauthenticated")
    rows = people.audit(action="token-reuse")
    assert len(rows) == 1 and rows[0].outcome == "denied" and rows[0].rid == alice.user_id
    with people.engine.connect() as conn:
        session = conn.execute(select(user_session)).one()
    assert session.revoked_reason == "token-reuse" and rows[0].detail == session.id
    # Another session of the same person is not affected.
    other = people.tokens(alice)
    assert people.client.get("/auth/session", headers=bearer(other["access_token"])
                             ).status_code == 200


def test_unknown_refresh_token(people: People) -> None:
    assert_outcome(people.client.post("/auth/refresh", json={"refresh_token": "nope"}), 401,
                   "unauthenticated")


# -- logout ---------------------------------------------------------------------------------------
def test_logout_revokes_at_once(people: People, alice: Person) -> None:
    tokens = people.tokens(alice)
    out = people.client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 204
    assert "hygie_session=" in out.headers["set-cookie"]
    assert "max-age=0" in out.headers["set-cookie"].lower()
    # Token reuse after logout: 401 everywhere.
    assert_outcome(people.client.get("/auth/session", headers=bearer(tokens["access_token"])),
                   401, "unauthenticated")
    assert_outcome(people.client.get("/fhir/Patient", headers=bearer(tokens["access_token"])),
                   401, "unauthenticated")
    assert_outcome(people.client.post("/auth/refresh",
                                      json={"refresh_token": tokens["refresh_token"]}),
                   401, "unauthenticated")
    assert_outcome(people.client.post("/auth/logout", headers=bearer(tokens["access_token"])),
                   401, "unauthenticated")
    rows = people.audit(action="logout")
    assert [(r.outcome, r.rid) for r in rows] == [("success", alice.user_id)]


def test_logout_with_the_cookie(people: People, alice: Person) -> None:
    client = people.other_client("198.51.100.7")
    people.sign_in(alice, client)
    assert client.get("/auth/session").status_code == 200
    assert client.post("/auth/logout").status_code == 204
    assert client.get("/auth/session").status_code == 401


def test_disabling_an_account_stops_its_sessions(people: People, alice: Person) -> None:
    from hygie.access.accounts import disable_user
    from hygie.store.db import transaction

    tokens = people.tokens(alice)
    with transaction(people.engine) as conn:
        disable_user(conn=conn, tenant="default", username="alice")
    assert people.client.get("/auth/session", headers=bearer(tokens["access_token"])
                             ).status_code == 401


# -- session fixation -----------------------------------------------------------------------------
def test_session_fixation_a_planted_cookie_is_never_adopted(people: People,
                                                            alice: Person) -> None:
    victim = people.other_client("198.51.100.20")
    victim.cookies.set("hygie_session", "attacker-chosen-value")
    resp = people.sign_in(alice, victim)
    assert resp.status_code == 200
    issued = resp.json()["access_token"]
    assert issued != "attacker-chosen-value"
    assert resp.headers["set-cookie"].startswith(f"hygie_session={issued};")
    attacker = people.other_client("198.51.100.21")
    attacker.cookies.set("hygie_session", "attacker-chosen-value")
    assert attacker.get("/auth/session").status_code == 401


def test_session_fixation_a_planted_valid_session_is_replaced(people: People,
                                                              alice: Person) -> None:
    mallory = people.person("mallory")
    planted = people.tokens(mallory)["access_token"]
    victim = people.other_client("198.51.100.22")
    victim.cookies.set("hygie_session", planted)
    resp = people.sign_in(alice, victim)
    assert resp.json()["access_token"] != planted
    victim.cookies.clear()
    victim.cookies.set("hygie_session", resp.json()["access_token"])
    assert victim.get("/auth/session").json()["username"] == "alice"
    with people.engine.connect() as conn:
        assert len(conn.execute(select(user_session)).all()) == 2  # a new session was made


# -- idle timeout and absolute lifetime -----------------------------------------------------------
def _set_session(people: People, **values: int) -> None:
    with people.engine.begin() as conn:
        conn.execute(update(user_session).values(**values))


def test_idle_timeout(people: People, alice: Person) -> None:
    tokens = people.tokens(alice)
    _set_session(people, last_seen_at=now_us() - 899 * 1_000_000)
    assert people.client.get("/auth/session", headers=bearer(tokens["access_token"])
                             ).status_code == 200  # and this request counts as activity
    _set_session(people, last_seen_at=now_us() - 901 * 1_000_000)
    assert people.client.get("/auth/session", headers=bearer(tokens["access_token"])
                             ).status_code == 401
    assert people.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
                              ).status_code == 401


def test_absolute_lifetime(people: People, alice: Person) -> None:
    tokens = people.tokens(alice)
    _set_session(people, expires_at=now_us() - 1)
    assert people.client.get("/auth/session", headers=bearer(tokens["access_token"])
                             ).status_code == 401
    assert people.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
                              ).status_code == 401


def test_short_settings_end_sessions(instance: Instance) -> None:
    p = make_people(instance, session_idle_seconds=1, session_absolute_seconds=3,
                    access_token_seconds=60)
    try:
        person = p.person("yann")
        tokens = p.tokens(person)
        assert tokens["expires_in"] == 3  # never beyond the session's absolute end
        assert p.client.get("/auth/session", headers=bearer(tokens["access_token"])
                            ).json()["idle_timeout_seconds"] == 1
        time.sleep(1.2)
        assert p.client.get("/auth/session", headers=bearer(tokens["access_token"])
                            ).status_code == 401
    finally:
        p.close()


def test_last_seen_is_written_at_most_every_30_seconds(people: People, alice: Person) -> None:
    tokens = people.tokens(alice)
    old = now_us() - 60 * 1_000_000
    _set_session(people, last_seen_at=old)
    people.client.get("/auth/session", headers=bearer(tokens["access_token"]))
    with people.engine.connect() as conn:
        touched = conn.execute(select(user_session.c.last_seen_at)).scalar_one()
    assert touched > old + 59 * 1_000_000
    recent = now_us() - 10 * 1_000_000
    _set_session(people, last_seen_at=recent)
    people.client.get("/auth/session", headers=bearer(tokens["access_token"]))
    with people.engine.connect() as conn:
        assert conn.execute(select(user_session.c.last_seen_at)).scalar_one() == recent


# -- lockout and delays ---------------------------------------------------------------------------
def test_lockout_per_account_looks_the_same_for_unknown_users(people: People,
                                                              alice: Person) -> None:
    def attack(username: str) -> list[Any]:
        return [people.login(username, f"guess number {i:02d}") for i in range(6)]

    known, unknown = attack("alice"), attack("nobody")
    assert [r.status_code for r in known] == [401] * 5 + [429]
    assert [r.status_code for r in unknown] == [401] * 5 + [429]
    assert [r.content for r in known] == [r.content for r in unknown]
    assert_outcome(known[-1], 429, "too-many-attempts")
    assert 890 <= int(known[-1].headers["retry-after"]) <= 900
    assert 890 <= int(unknown[-1].headers["retry-after"]) <= 900
    # Locked: even the right password is refused, without checking it.
    assert_outcome(people.login("alice", PASSWORD), 429, "too-many-attempts")
    locks = people.audit(action="lockout")
    assert [(r.code, r.actor) for r in locks] == [
        ("account-locked", f"user:{alice.user_id}"), ("account-locked", "anonymous")]
    # The lock ends after lockout_seconds.
    with people.engine.begin() as conn:
        conn.execute(update(login_throttle).values(locked_until=now_us() - 1,
                                                   last_failure_at=now_us() - 901_000_000))
    assert people.login("alice", PASSWORD).status_code == 200


def test_mfa_failures_count_towards_the_lockout(people: People, alice: Person) -> None:
    good = totp_at(alice.secret, time.time())
    bad = f"{(int(good) + 7) % 1_000_000:06d}"
    for _ in range(5):
        challenge = people.login("alice", PASSWORD).json()["mfa_challenge"]
        assert people.mfa(challenge, bad).status_code == 401
    assert_outcome(people.login("alice", PASSWORD), 429, "too-many-attempts")


def test_success_resets_the_account_counter(people: People, alice: Person) -> None:
    for _ in range(4):
        people.login("alice", "wrong password here")
    assert people.sign_in(alice).status_code == 200
    for _ in range(4):
        assert people.login("alice", "wrong password here").status_code == 401
    assert people.login("alice", PASSWORD).status_code == 200


def test_lockout_per_client_address(instance: Instance) -> None:
    p = make_people(instance, lockout_address_threshold=3)
    try:
        bob = p.person("bob")
        attacker = p.other_client("192.0.2.66")
        answers = [p.login(name, "password spraying!", attacker)
                   for name in ("bob", "carl", "dora", "bob")]
        assert [r.status_code for r in answers] == [401, 401, 401, 429]
        # From that address, nobody signs in, not even with the right password...
        assert_outcome(p.login("bob", PASSWORD, attacker), 429, "too-many-attempts")
        # ...while the same account works from elsewhere.
        assert p.sign_in(bob, p.other_client("192.0.2.1")).status_code == 200
        locks = p.audit(action="lockout")
        assert [(r.code, r.client_address) for r in locks] == [("address-locked",
                                                                "192.0.2.66")]
    finally:
        p.close()


def test_progressive_delay() -> None:
    limits = AuthLimits(delay_ms=250)
    assert [limits.delay(n) for n in range(1, 8)] == [0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert AuthLimits(delay_ms=0).delay(5) == 0.0


def test_failed_answers_are_delayed(instance: Instance) -> None:
    p = make_people(instance, login_delay_ms=200)
    try:
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            assert p.login("nobody", "wrong password here").status_code == 401
            timings.append(time.perf_counter() - t0)
        assert timings[2] >= 0.4 and timings[1] >= 0.2
        assert timings[0] < timings[2]
    finally:
        p.close()


# -- secrets stay secret ---------------------------------------------------------------------------
def test_no_secret_in_responses_logs_or_audit(people: People,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    code = people.add("ines")
    enrol = people.client.post("/auth/activate", json={"activation_code": code,
                                                       "password": PASSWORD})
    secret_text = enrol.json()["totp_uri"].split("secret=")[1].split("&")[0]
    from .people import secret_of

    secret = secret_of(enrol.json()["totp_uri"])
    people.client.post("/auth/activate/confirm", json={
        "activation_code": code, "totp_code": totp_at(secret, time.time())})
    people.login("ines", "wrong password here")
    challenge = people.login("ines", PASSWORD).json()["mfa_challenge"]
    with people.engine.begin() as conn:
        from hygie.store.tables_accounts import user_account

        conn.execute(update(user_account).values(totp_last_step=None))
    tokens = people.mfa(challenge, totp_at(secret, time.time())).json()
    people.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    people.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    secrets = [PASSWORD, "wrong password here", code, secret_text, b32(secret), challenge,
               tokens["access_token"], tokens["refresh_token"],
               *enrol.json()["recovery_codes"]]
    logged = caplog.text
    with people.engine.connect() as conn:
        audit_text = repr(conn.execute(select(audit_event)).all())
    for s in secrets:
        assert s not in logged
        assert s not in audit_text
    actions = {r.action for r in people.audit()}
    assert {"activate", "login", "mfa", "refresh", "token-reuse"} <= actions
    for r in people.audit():
        if r.action in AUTH_ACTIONS:
            assert r.request_id and r.client_address == "testclient", r


def test_error_shape_of_every_people_route(people: People) -> None:
    """Errors of /auth/* people routes are OperationOutcomes; only /auth/token is OAuth2."""
    cases = [
        ("POST", "/auth/activate", {"activation_code": "x", "password": PASSWORD}, 400),
        ("POST", "/auth/activate", {"activation_code": "x"}, 400),  # missing field
        ("POST", "/auth/activate/confirm", {"activation_code": "x", "totp_code": "1"}, 400),
        ("POST", "/auth/login", {"username": "x", "password": "y"}, 401),
        ("POST", "/auth/login", {"username": "x", "password": "y", "extra": 1}, 400),
        ("POST", "/auth/mfa", {"mfa_challenge": "x", "code": "1"}, 401),
        ("POST", "/auth/refresh", {"refresh_token": "x"}, 401),
        ("POST", "/auth/logout", None, 401),
        ("GET", "/auth/session", None, 401),
    ]
    for method, path, payload, status in cases:
        resp = people.client.request(method, path, json=payload)
        assert resp.status_code == status, (path, resp.text)
        body = resp.json()
        assert body["resourceType"] == "OperationOutcome", path
        assert body["issue"][0]["diagnostics"], path
    oauth = people.client.post("/auth/token", data={"grant_type": "client_credentials"})
    assert oauth.json()["error"] == "invalid_client"


def test_old_failure_counters_and_ended_sessions_are_forgotten(people: People,
                                                               alice: Person) -> None:
    with people.engine.begin() as conn:
        conn.execute(login_throttle.insert().values(
            tenant="default", subject=b"s" * 32, failures=3,
            last_failure_at=now_us() - 2000 * 1_000_000, locked_until=None))
    people.login("somebody", "wrong password here")
    with people.engine.connect() as conn:
        subjects = conn.execute(select(login_throttle.c.subject)).scalars().all()
    assert b"s" * 32 not in subjects and len(subjects) == 2  # that username, that address
    first = people.tokens(alice)
    people.client.post("/auth/logout", headers=bearer(first["access_token"]))
    people.tokens(alice)
    with people.engine.connect() as conn:
        assert len(conn.execute(select(user_session)).all()) == 1
