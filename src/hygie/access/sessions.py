"""Sign-in for people: password, then a second factor, then a session with rotating tokens.

- ``login`` checks the password and returns an opaque, single-use MFA challenge (5 minutes).
  An unknown username, a wrong password, a pending or disabled account all get the same
  answer at the same cost (a dummy hash is verified for unknown usernames).
- ``complete_mfa`` takes the challenge and a TOTP or recovery code, and opens a *new* session
  (nothing presented before sign-in is ever adopted): an access token and a refresh token,
  random 256-bit values stored as SHA-256 digests.
- ``refresh`` rotates the refresh token. Presenting a refresh token that was already rotated
  means it was copied: the whole session (every token of the family) is revoked.
- ``authenticate`` is called on every request: the session must be unrevoked, within its idle
  timeout and its absolute lifetime, and the account active.
- Failures are counted per username and per client address (keys are digests, so a username
  that does not exist is counted — and locked — exactly like one that does). Failed answers
  are delayed progressively; past a threshold the username or address is locked for a while.

Every step leaves an audit entry (actions ``login``, ``mfa``, ``lockout``, ``refresh``,
``token-reuse``, ``logout``); none holds a password, code or token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hygie.access.accounts import (
    ACTIVE,
    Refused,
    check_second_factor,
    record,
    revoke_sessions,
)
from hygie.access.actor import Actor, RequestContext
from hygie.crypto import new_token, token_digest, verify_secret
from hygie.errors import TooManyAttempts, Unauthenticated
from hygie.ledger import audit
from hygie.settings import Settings
from hygie.store.db import now_us
from hygie.store.keys import KeyStore
from hygie.store.tables_accounts import (
    login_throttle,
    mfa_challenge,
    session_token,
    user_account,
    user_session,
)

SECOND = 1_000_000  # stored times are epoch microseconds
MFA_CHALLENGE_SECONDS = 300
TOUCH_EVERY_SECONDS = 30  # last-seen is written at most this often (not on every request)
MAX_DELAY_SECONDS = 2.0
BAD_CREDENTIALS = "invalid username or password"
BAD_CHALLENGE = "the sign-in has expired or the code is not valid: sign in again"
NO_SESSION = "the access token is invalid, expired or revoked"
NO_REFRESH = "the refresh token is invalid, expired or revoked: sign in again"
LOCKED = "too many failed sign-in attempts: try again later"


@dataclass(frozen=True)
class AuthLimits:
    idle_seconds: int = 900
    absolute_seconds: int = 43200
    access_seconds: int = 900
    lockout_threshold: int = 5
    lockout_address_threshold: int = 20
    lockout_seconds: int = 900
    delay_ms: int = 250

    @classmethod
    def from_settings(cls, s: Settings) -> AuthLimits:
        return cls(s.session_idle_seconds, s.session_absolute_seconds, s.access_token_seconds,
                   s.lockout_threshold, s.lockout_address_threshold, s.lockout_seconds,
                   s.login_delay_ms)

    def delay(self, failures: int) -> float:
        """Seconds to hold a failed answer: none for the first, then doubling, capped."""
        if failures <= 1 or self.delay_ms <= 0:
            return 0.0
        return min(self.delay_ms / 1000 * 2 ** (failures - 2), MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str

    def __repr__(self) -> str:
        return f"Tokens(session={self.session_id}, <hidden>)"


@dataclass(frozen=True)
class Challenge:
    token: str

    def __repr__(self) -> str:
        return "Challenge(<hidden>)"


@dataclass(frozen=True)
class Authenticated:
    actor: Actor
    session_id: str
    expires_at: int  # absolute end of the session
    needs_touch: bool  # last-seen is old enough to be written again


# -- throttle -----------------------------------------------------------------------------------
def _subjects(tenant: str, username: str, address: str | None) -> dict[str, bytes]:
    return {"user": token_digest(f"user\x00{tenant}\x00{username}"),
            "addr": token_digest(f"addr\x00{tenant}\x00{address or '-'}")}


def _locked_until(conn: Connection, tenant: str, subjects: dict[str, bytes], now: int) -> int:
    rows = conn.execute(select(login_throttle.c.locked_until).where(
        login_throttle.c.tenant == tenant,
        login_throttle.c.subject.in_(list(subjects.values())))).all()
    return max((r.locked_until for r in rows if r.locked_until and r.locked_until > now),
               default=0)


def _fail(conn: Connection, tenant: str, subjects: dict[str, bytes], limits: AuthLimits,
          now: int) -> tuple[int, list[str]]:
    """Count a failure; returns (failures of the username, subjects that became locked)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    window = limits.lockout_seconds * SECOND
    user_failures = 0
    locked: list[str] = []
    # Forget counters nobody has fed for a whole window (unknown usernames included), skipping
    # rows a concurrent sign-in holds (no lock waits, no deadlock).
    stale_rows = select(login_throttle.c.subject).where(
        login_throttle.c.tenant == tenant, login_throttle.c.last_failure_at < now - window,
        login_throttle.c.locked_until.is_(None) | (login_throttle.c.locked_until <= now)
    ).with_for_update(skip_locked=True)
    conn.execute(delete(login_throttle).where(login_throttle.c.tenant == tenant,
                                              login_throttle.c.subject.in_(stale_rows)))
    for kind, subject in subjects.items():
        conn.execute(insert(login_throttle).values(
            tenant=tenant, subject=subject, failures=0, last_failure_at=now,
            locked_until=None).on_conflict_do_nothing())
        row = conn.execute(select(login_throttle).where(
            login_throttle.c.tenant == tenant, login_throttle.c.subject == subject)
            .with_for_update()).one()
        stale = row.last_failure_at < now - window and not (
            row.locked_until and row.locked_until > now)
        failures = 1 if stale else row.failures + 1
        threshold = (limits.lockout_threshold if kind == "user"
                     else limits.lockout_address_threshold)
        lock = row.locked_until if row.locked_until and row.locked_until > now else None
        if lock is None and failures >= threshold:
            lock = now + window
            locked.append(kind)
        conn.execute(update(login_throttle).where(
            login_throttle.c.tenant == tenant, login_throttle.c.subject == subject)
            .values(failures=failures, last_failure_at=now, locked_until=lock))
        if kind == "user":
            user_failures = failures
    return user_failures, locked


def _forget_failures(conn: Connection, tenant: str, subject: bytes) -> None:
    conn.execute(delete(login_throttle).where(login_throttle.c.tenant == tenant,
                                              login_throttle.c.subject == subject))


def _refuse_failure(conn: Connection, tenant: str, ctx: RequestContext, limits: AuthLimits,
                    subjects: dict[str, bytes], now: int, *, action: str, user_id: str | None,
                    code: str, message: str) -> Refused:
    failures, locked = _fail(conn, tenant, subjects, limits, now)
    record(conn, tenant, ctx, action, audit.DENIED, user_id=user_id, code=code)
    for kind in locked:
        record(conn, tenant, ctx, "lockout", audit.DENIED,
               user_id=user_id if kind == "user" else None,
               code="account-locked" if kind == "user" else "address-locked")
    return Refused(Unauthenticated(message), delay=limits.delay(failures))


def _refuse_locked(conn: Connection, tenant: str, ctx: RequestContext, until: int, now: int, *,
                   action: str, user_id: str | None) -> Refused:
    record(conn, tenant, ctx, action, audit.DENIED, user_id=user_id, code="locked")
    return Refused(TooManyAttempts(LOCKED, retry_after=max(1, -(-(until - now) // SECOND))))


# -- sign-in ------------------------------------------------------------------------------------
def login(*, conn: Connection, tenant: str, limits: AuthLimits, username: str, password: str,
          ctx: RequestContext, now: int | None = None) -> Challenge | Refused:
    """First factor. Every failure answers the same, whether the account exists or not."""
    now = now or now_us()
    name = username.strip().lower()[:128]
    subjects = _subjects(tenant, name, ctx.client_address)
    row = conn.execute(select(user_account.c.id, user_account.c.status,
                              user_account.c.password_hash).where(
        user_account.c.tenant == tenant, user_account.c.username == name)).first()
    user_id = row.id if row is not None else None
    until = _locked_until(conn, tenant, subjects, now)
    if until:
        return _refuse_locked(conn, tenant, ctx, until, now, action="login", user_id=user_id)
    ok = verify_secret(row.password_hash if row is not None else None, password)
    if row is None or not ok or row.status != ACTIVE:
        code = ("unknown-user" if row is None else f"account-{row.status}"
                if row.status != ACTIVE else "bad-password")
        return _refuse_failure(conn, tenant, ctx, limits, subjects, now, action="login",
                               user_id=user_id, code=code, message=BAD_CREDENTIALS)
    token = new_token(32)
    conn.execute(delete(mfa_challenge).where(mfa_challenge.c.expires_at <= now))
    conn.execute(mfa_challenge.insert().values(
        digest=token_digest(token), tenant=tenant, user_id=row.id, created_at=now,
        expires_at=now + MFA_CHALLENGE_SECONDS * SECOND))
    record(conn, tenant, ctx, "login", audit.SUCCESS, user_id=row.id, code="mfa-required")
    return Challenge(token)


def complete_mfa(*, conn: Connection, keys: KeyStore, limits: AuthLimits, challenge: str,
                 code: str, ctx: RequestContext, now: int | None = None) -> Tokens | Refused:
    """Second factor (TOTP or a recovery code); opens a new session."""
    tenant = keys.tenant
    now = now or now_us()
    digest = token_digest(challenge)
    found = conn.execute(select(mfa_challenge).where(
        mfa_challenge.c.digest == digest, mfa_challenge.c.tenant == tenant)).first()
    if found is not None:  # single use, whatever happens next
        conn.execute(delete(mfa_challenge).where(mfa_challenge.c.digest == digest))
    row = None if found is None or found.expires_at <= now else conn.execute(
        select(user_account).where(user_account.c.id == found.user_id)).first()
    if row is None or row.status != ACTIVE:
        record(conn, tenant, ctx, "mfa", audit.DENIED,
               user_id=found.user_id if found is not None else None, code="bad-challenge")
        return Refused(Unauthenticated(BAD_CHALLENGE))
    subjects = _subjects(tenant, row.username, ctx.client_address)
    until = _locked_until(conn, tenant, subjects, now)
    if until:
        return _refuse_locked(conn, tenant, ctx, until, now, action="mfa", user_id=row.id)
    factor = check_second_factor(conn=conn, keys=keys, user_id=row.id, code=code, now=now)
    if factor is None:
        return _refuse_failure(conn, tenant, ctx, limits, subjects, now, action="mfa",
                               user_id=row.id, code="bad-code", message=BAD_CHALLENGE)
    _forget_failures(conn, tenant, subjects["user"])
    _purge_ended(conn, row.id, now)
    session_id = uuid.uuid4().hex
    conn.execute(user_session.insert().values(
        id=session_id, tenant=tenant, user_id=row.id, created_at=now, last_seen_at=now,
        expires_at=now + limits.absolute_seconds * SECOND))
    tokens = _issue(conn, session_id, now + limits.absolute_seconds * SECOND, limits, now)
    record(conn, tenant, ctx, "mfa", audit.SUCCESS, user_id=row.id, code=factor,
           detail=session_id)
    return tokens


def _purge_ended(conn: Connection, user_id: str, now: int) -> None:
    """Forget the user's sessions that ended (their audit entries stay)."""
    ended = [r[0] for r in conn.execute(select(user_session.c.id).where(
        user_session.c.user_id == user_id,
        user_session.c.revoked_at.is_not(None) | (user_session.c.expires_at <= now)))]
    if ended:
        conn.execute(delete(session_token).where(session_token.c.session_id.in_(ended)))
        conn.execute(delete(user_session).where(user_session.c.id.in_(ended)))


def _issue(conn: Connection, session_id: str, session_end: int, limits: AuthLimits,
           now: int) -> Tokens:
    access, refresh = new_token(32), new_token(32)
    access_end = min(now + limits.access_seconds * SECOND, session_end)
    conn.execute(session_token.insert(), [
        {"digest": token_digest(access), "session_id": session_id, "kind": "access",
         "created_at": now, "expires_at": access_end, "used_at": None},
        {"digest": token_digest(refresh), "session_id": session_id, "kind": "refresh",
         "created_at": now, "expires_at": session_end, "used_at": None}])
    return Tokens(access, refresh, max(1, (access_end - now) // SECOND), session_id)


# -- sessions -----------------------------------------------------------------------------------
def _live(session: Row[Any], account: Row[Any] | None, limits: AuthLimits, now: int) -> bool:
    return (session.revoked_at is None and session.expires_at > now
            and session.last_seen_at + limits.idle_seconds * SECOND > now
            and account is not None and account.status == ACTIVE)


def _session_of(conn: Connection, tenant: str, token: str, kind: str
                ) -> tuple[Row[Any], Row[Any], Row[Any] | None] | None:
    tok = conn.execute(select(session_token).where(
        session_token.c.digest == token_digest(token), session_token.c.kind == kind)).first()
    if tok is None:
        return None
    session = conn.execute(select(user_session).where(
        user_session.c.id == tok.session_id, user_session.c.tenant == tenant)).first()
    if session is None:
        return None
    account = conn.execute(select(user_account).where(
        user_account.c.id == session.user_id)).first()
    return tok, session, account


def refresh(*, conn: Connection, tenant: str, limits: AuthLimits, refresh_token: str,
            ctx: RequestContext, now: int | None = None) -> Tokens | Refused:
    """Rotate: new access and refresh tokens; the old refresh token is spent.

    A spent refresh token presented again was copied: the session is revoked, so the thief's
    tokens and the legitimate holder's newest ones all stop.
    """
    now = now or now_us()
    found = _session_of(conn, tenant, refresh_token, "refresh")
    if found is None:
        record(conn, tenant, ctx, "refresh", audit.DENIED, user_id=None, code="bad-token")
        return Refused(Unauthenticated(NO_REFRESH))
    tok, session, account = found
    spent = tok.used_at is not None or not conn.execute(update(session_token).where(
        session_token.c.digest == tok.digest, session_token.c.used_at.is_(None))
        .values(used_at=now)).rowcount
    if spent:
        if session.revoked_at is None:
            revoke_sessions(conn, user_id=session.user_id, reason="token-reuse",
                            session_id=session.id)
        record(conn, tenant, ctx, "token-reuse", audit.DENIED, user_id=session.user_id,
               code="refresh-token-reuse", detail=session.id)
        return Refused(Unauthenticated(NO_REFRESH))
    if not _live(session, account, limits, now) or tok.expires_at <= now:
        record(conn, tenant, ctx, "refresh", audit.DENIED, user_id=session.user_id,
               code="session-ended", detail=session.id)
        return Refused(Unauthenticated(NO_REFRESH))
    # Older access tokens of the session stop: only the newest pair works.
    conn.execute(delete(session_token).where(session_token.c.session_id == session.id,
                                             session_token.c.kind == "access"))
    conn.execute(update(user_session).where(user_session.c.id == session.id)
                 .values(last_seen_at=now))
    tokens = _issue(conn, session.id, session.expires_at, limits, now)
    record(conn, tenant, ctx, "refresh", audit.SUCCESS, user_id=session.user_id,
           detail=session.id)
    return tokens


def authenticate(*, conn: Connection, tenant: str, limits: AuthLimits, access_token: str,
                 now: int | None = None) -> Authenticated:
    """The person behind an access token, or Unauthenticated (checked on every request)."""
    now = now or now_us()
    found = _session_of(conn, tenant, access_token, "access")
    if found is None:
        raise Unauthenticated(NO_SESSION)
    tok, session, account = found
    if tok.expires_at <= now or account is None or not _live(session, account, limits, now):
        raise Unauthenticated(NO_SESSION)
    actor = Actor.user(account.id, account.role, username=account.username,
                       practitioner_id=account.practitioner_id, patient_id=account.patient_id,
                       session_id=session.id)
    return Authenticated(actor, session.id, session.expires_at,
                         session.last_seen_at + TOUCH_EVERY_SECONDS * SECOND <= now)


def touch(*, conn: Connection, session_id: str, now: int | None = None) -> None:
    """Record activity (for the idle timeout), at most every TOUCH_EVERY_SECONDS."""
    now = now or now_us()
    conn.execute(update(user_session).where(
        user_session.c.id == session_id, user_session.c.revoked_at.is_(None),
        user_session.c.last_seen_at <= now - TOUCH_EVERY_SECONDS * SECOND)
        .values(last_seen_at=now))


def logout(*, conn: Connection, tenant: str, actor: Actor, ctx: RequestContext) -> None:
    """End the actor's session: its access and refresh tokens stop at once."""
    if actor.kind != "user" or actor.session_id is None:
        raise Unauthenticated("only a person's session can be signed out")
    revoke_sessions(conn, user_id=actor.id, reason="logout", session_id=actor.session_id)
    record(conn, tenant, ctx, "logout", audit.SUCCESS, user_id=actor.id,
           detail=actor.session_id)


def session_expiry(*, conn: Connection, tenant: str, session_id: str) -> int:
    row = conn.execute(select(user_session.c.expires_at).where(
        user_session.c.id == session_id, user_session.c.tenant == tenant)).first()
    if row is None:
        raise Unauthenticated(NO_SESSION)
    return int(row.expires_at)



# -- the person's own sessions and sign-ins (the web app's "Sécurité" panel) ---------------------
@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: int
    last_seen_at: int
    expires_at: int


@dataclass(frozen=True)
class SignInEvent:
    at: int
    action: str  # login | mfa | lockout
    outcome: str  # success | denied
    code: str | None
    client_address: str | None
    session_id: str | None  # the session a successful sign-in opened


SIGN_IN_ACTIONS = ("login", "mfa", "lockout")
HISTORY_WINDOW = 200_000  # audit entries looked back through for sign-ins (bounded cost)


def list_sessions(*, conn: Connection, tenant: str, user_id: str, limits: AuthLimits,
                  now: int | None = None) -> list[SessionInfo]:
    """The user's live sessions (unrevoked, within their idle and absolute limits), newest
    first."""
    now = now or now_us()
    rows = conn.execute(select(user_session).where(
        user_session.c.tenant == tenant, user_session.c.user_id == user_id,
        user_session.c.revoked_at.is_(None), user_session.c.expires_at > now,
        user_session.c.last_seen_at > now - limits.idle_seconds * SECOND)
        .order_by(user_session.c.created_at.desc())).all()
    return [SessionInfo(r.id, r.created_at, r.last_seen_at, r.expires_at) for r in rows]


def end_session(*, conn: Connection, tenant: str, actor: Actor, session_id: str,
                ctx: RequestContext) -> bool:
    """End one of the actor's own sessions (another device); False if there was none."""
    if actor.kind != "user":
        raise Unauthenticated("only a person's session can be ended")
    ended = revoke_sessions(conn, user_id=actor.id, reason="ended-by-user",
                            session_id=session_id)
    if ended:
        record(conn, tenant, ctx, "logout", audit.SUCCESS, user_id=actor.id,
               code="ended-by-user", detail=session_id)
    return bool(ended)


def end_other_sessions(*, conn: Connection, tenant: str, actor: Actor,
                       ctx: RequestContext) -> int:
    """End every session of the actor but the current one; how many were ended."""
    if actor.kind != "user" or actor.session_id is None:
        raise Unauthenticated("only a person's session can end the others")
    ids = [r[0] for r in conn.execute(select(user_session.c.id).where(
        user_session.c.user_id == actor.id, user_session.c.revoked_at.is_(None),
        user_session.c.id != actor.session_id))]
    for sid in ids:
        revoke_sessions(conn, user_id=actor.id, reason="ended-by-user", session_id=sid)
    if ids:
        record(conn, tenant, ctx, "logout", audit.SUCCESS, user_id=actor.id,
               code="ended-others", detail=f"{len(ids)} session(s)")
    return len(ids)


def sign_in_history(*, conn: Connection, tenant: str, user_id: str, limit: int = 20
                    ) -> list[SignInEvent]:
    """The user's recent sign-in events from the audit trail: passwords refused, second
    factors accepted or refused, lockouts (newest first; ids and codes, never a secret).

    Looks back through the last :data:`HISTORY_WINDOW` audit entries only, so the cost stays
    bounded however long the ledger grows."""
    from hygie.store.tables import audit_event

    top = conn.execute(select(audit_event.c.seq).order_by(audit_event.c.seq.desc()).limit(1)
                       ).scalar()
    if top is None:
        return []
    rows = conn.execute(select(audit_event.c.at, audit_event.c.action, audit_event.c.outcome,
                               audit_event.c.code, audit_event.c.client_address,
                               audit_event.c.detail).where(
        audit_event.c.seq > top - HISTORY_WINDOW, audit_event.c.tenant == tenant,
        audit_event.c.rid == user_id, audit_event.c.action.in_(SIGN_IN_ACTIONS))
        .order_by(audit_event.c.seq.desc()).limit(limit * 3)).all()
    out: list[SignInEvent] = []
    for r in rows:
        if r.action == "login" and r.outcome == audit.SUCCESS:
            continue  # the password step of a sign-in: its second factor tells the outcome
        out.append(SignInEvent(r.at, r.action, r.outcome, r.code, r.client_address,
                               r.detail if r.action == "mfa" and r.outcome == audit.SUCCESS
                               else None))
        if len(out) >= limit:
            break
    return out


def regenerate_recovery_codes(*, conn: Connection, keys: KeyStore, limits: AuthLimits,
                              actor: Actor, totp_code: str, ctx: RequestContext,
                              now: int | None = None) -> tuple[str, ...] | Refused:
    """New recovery codes (the old ones stop), after re-authentication with a TOTP code.

    A wrong code counts as a failed sign-in of the account (same throttle and lockout), so a
    stolen session cannot guess its way to codes that outlive it."""
    from hygie.access.accounts import RECOVERY_CODES, check_totp, code_digest, new_code
    from hygie.store.tables_accounts import recovery_code

    tenant = keys.tenant
    now = now or now_us()
    if actor.kind != "user" or actor.username is None:
        raise Unauthenticated("only a person has recovery codes")
    subjects = _subjects(tenant, actor.username, ctx.client_address)
    until = _locked_until(conn, tenant, subjects, now)
    if until:
        return _refuse_locked(conn, tenant, ctx, until, now, action="recovery-codes",
                              user_id=actor.id)
    code = totp_code.strip()
    ok = (code.isascii() and code.isdigit() and len(code) <= 10
          and check_totp(conn=conn, keys=keys, user_id=actor.id, code=code, now=now) is not None)
    if not ok:
        return _refuse_failure(conn, tenant, ctx, limits, subjects, now,
                               action="recovery-codes", user_id=actor.id, code="bad-totp",
                               message="the code from the authenticator app is not valid")
    _forget_failures(conn, tenant, subjects["user"])
    codes = tuple(new_code(10) for _ in range(RECOVERY_CODES))
    conn.execute(delete(recovery_code).where(recovery_code.c.user_id == actor.id))
    conn.execute(recovery_code.insert(), [
        {"user_id": actor.id, "digest": code_digest(c), "used_at": None} for c in codes])
    record(conn, tenant, ctx, "recovery-codes", audit.SUCCESS, user_id=actor.id,
           code="regenerated")
    return codes


@dataclass(frozen=True)
class MfaStatus:
    totp: bool
    recovery_codes_left: int
    activated_at: int | None


def mfa_status(*, conn: Connection, user_id: str) -> MfaStatus:
    from sqlalchemy import func

    from hygie.store.tables_accounts import recovery_code

    row = conn.execute(select(user_account.c.totp_secret, user_account.c.activated_at)
                       .where(user_account.c.id == user_id)).first()
    left = conn.execute(select(func.count()).select_from(recovery_code).where(
        recovery_code.c.user_id == user_id, recovery_code.c.used_at.is_(None))).scalar_one()
    return MfaStatus(row is not None and row.totp_secret is not None, int(left),
                     row.activated_at if row is not None else None)
