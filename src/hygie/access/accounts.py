"""People's accounts: creation, activation (password + TOTP enrolment), second factor.

Life of an account: ``pending`` (created by an operator, who hands over a one-time activation
code) → ``enrolling`` (the person chose a password and received a TOTP secret and ten recovery
codes) → ``active`` (a first TOTP code confirmed the enrolment) → ``disabled``.
``reset_mfa`` sends an account back to ``pending`` with a new activation code.

Secrets at rest: passwords as argon2id hashes; the TOTP secret sealed with the tenant's data
key, the associated data naming the user; activation and recovery codes as SHA-256 digests
(they are high-entropy random values). Every refusal message is free of secrets.

Services take the connection and never commit: the caller owns the transaction. A refusal
that must leave a trace (an audit entry, a failure counter) is *returned* as :class:`Refused`,
so the caller commits that trace before raising the error.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from hygie.access.actor import ROLES, Actor, RequestContext
from hygie.access.passwords import check_password
from hygie.crypto import (
    hash_secret,
    new_totp_secret,
    provisioning_uri,
    token_digest,
    verify_totp,
)
from hygie.errors import Conflict, HygieError, InvalidRequest, NotFound
from hygie.ledger import audit
from hygie.ledger.audit import AuditEntry
from hygie.store.db import now_us
from hygie.store.keys import TENANT_OWNER, KeyStore
from hygie.store.tables_accounts import (
    recovery_code,
    session_token,
    user_account,
    user_session,
)

PENDING, ENROLLING, ACTIVE, DISABLED = "pending", "enrolling", "active", "disabled"
USERNAME = re.compile(r"^[a-z0-9._-]{3,64}$")
RECOVERY_CODES = 10
MAX_CONFIRM_ATTEMPTS = 5
CLI_ACTOR = "cli:user"
_BAD_ACTIVATION = "the activation code is invalid, already used or expired"


@dataclass(frozen=True)
class Refused:
    """A refusal whose trace (audit entry, failure counter) the caller commits, then raises."""

    error: HygieError
    delay: float = 0.0  # seconds to wait before answering (progressive delay)


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    role: str
    status: str
    practitioner_id: str | None
    patient_id: str | None
    created_at: int
    activated_at: int | None
    disabled_at: int | None


@dataclass(frozen=True)
class ActivationCode:
    account: Account
    code: str  # shown once, stored only as a digest
    expires_at: int


@dataclass(frozen=True)
class Enrolment:
    totp_uri: str
    recovery_codes: tuple[str, ...]  # shown once, stored only as digests

    def __repr__(self) -> str:
        return "Enrolment(<hidden>)"


# -- codes ------------------------------------------------------------------------------------
def new_code(nbytes: int) -> str:
    """A random code for people to type: base32 in groups of four (``ABCD-EFGH-...``)."""
    text = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def code_digest(code: str) -> bytes:
    """Digest of a typed code: case, spaces and dashes do not matter."""
    return token_digest(re.sub(r"[\s-]", "", code).upper())


def totp_context(tenant: str, user_id: str) -> bytes:
    return f"hygie/totp/1\x00{tenant}\x00{user_id}".encode()


def label(user_id: str | None) -> str:
    return f"user:{user_id}" if user_id else "anonymous"


def record(conn: Connection, tenant: str, ctx: RequestContext, action: str, outcome: str, *,
           user_id: str | None, code: str | None = None, detail: str | None = None,
           actor: str | None = None, actor_kind: str = "user",
           actor_role: str | None = None) -> None:
    """One audit entry about an account (ids and codes only, never a secret)."""
    audit.append(conn, tenant, [AuditEntry(
        actor=actor or label(user_id), actor_kind=actor_kind, action=action, outcome=outcome,
        rid=user_id, code=code, request_id=ctx.request_id, client_address=ctx.client_address,
        detail=detail, actor_role=actor_role)])


def _operator(conn: Connection, tenant: str, ctx: RequestContext | None, action: str, *,
              user_id: str, actor: str | Actor) -> None:
    """The audit entry of an account operation, naming who did it: an administrator signed in
    to the web app (an :class:`Actor`: kind ``user``, role ``admin``) or the operator's CLI (a
    label such as ``cli:user``: kind ``system``)."""
    if isinstance(actor, Actor):
        record(conn, tenant, ctx or RequestContext(), action, audit.SUCCESS, user_id=user_id,
               actor=actor.label, actor_kind=actor.kind, actor_role=actor.role)
    else:
        record(conn, tenant, ctx or RequestContext(), action, audit.SUCCESS, user_id=user_id,
               actor=actor, actor_kind="system")


def _account(r: Row[Any]) -> Account:
    return Account(r.id, r.username, r.role, r.status, r.practitioner_id, r.patient_id,
                   r.created_at, r.activated_at, r.disabled_at)


def _find(conn: Connection, tenant: str, username: str) -> Account:
    row = conn.execute(select(user_account).where(
        user_account.c.tenant == tenant, user_account.c.username == username)).first()
    if row is None:
        raise NotFound("no account with this username")
    return _account(row)


def revoke_sessions(conn: Connection, *, user_id: str, reason: str,
                    session_id: str | None = None) -> int:
    """End the user's sessions (or one of them): their tokens stop at once."""
    where = [user_session.c.user_id == user_id, user_session.c.revoked_at.is_(None)]
    if session_id is not None:
        where.append(user_session.c.id == session_id)
    ids = [r[0] for r in conn.execute(select(user_session.c.id).where(*where))]
    if ids:
        conn.execute(update(user_session).where(user_session.c.id.in_(ids))
                     .values(revoked_at=now_us(), revoked_reason=reason))
        conn.execute(delete(session_token).where(session_token.c.session_id.in_(ids)))
    return len(ids)


# -- operator commands --------------------------------------------------------------------------
def add_user(*, conn: Connection, tenant: str, username: str, role: str,
             practitioner_id: str | None = None, patient_id: str | None = None,
             activation_days: int, actor: str | Actor = CLI_ACTOR,
             ctx: RequestContext | None = None) -> ActivationCode:
    """Create an inactive account; returns its one-time activation code.

    ``actor``: who creates it, for the audit entry (an :class:`Actor`, or a CLI label)."""
    if not USERNAME.match(username):
        raise InvalidRequest("a username is 3 to 64 characters among a-z 0-9 . _ -")
    if role not in ROLES:
        raise InvalidRequest(f"unknown role; choose one of: {', '.join(ROLES)}")
    if role == "practitioner" and not practitioner_id:
        raise InvalidRequest("a practitioner account needs --practitioner-id")
    if role == "patient" and not patient_id:
        raise InvalidRequest("a patient account needs --patient-id")
    if practitioner_id and role != "practitioner":
        raise InvalidRequest("only a practitioner account takes --practitioner-id")
    if patient_id and role != "patient":
        raise InvalidRequest("only a patient account takes --patient-id")
    for value in (practitioner_id, patient_id):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
            raise InvalidRequest("a resource id is 1 to 64 characters among A-Z a-z 0-9 - .")
    exists = conn.execute(select(user_account.c.id).where(
        user_account.c.tenant == tenant, user_account.c.username == username)).first()
    if exists is not None:
        raise Conflict("an account with this username already exists")
    now = now_us()
    code = new_code(15)
    expires = now + activation_days * 86_400_000_000
    user_id = str(uuid.uuid4())
    conn.execute(user_account.insert().values(
        id=user_id, tenant=tenant, username=username, role=role,
        practitioner_id=practitioner_id, patient_id=patient_id, status=PENDING,
        activation_digest=code_digest(code), activation_expires_at=expires,
        activation_attempts=0, created_at=now))
    _operator(conn, tenant, ctx, "user-add", user_id=user_id, actor=actor)
    return ActivationCode(_find(conn, tenant, username), code, expires)


def list_users(*, conn: Connection, tenant: str) -> list[Account]:
    rows = conn.execute(select(user_account).where(user_account.c.tenant == tenant)
                        .order_by(user_account.c.username)).all()
    return [_account(r) for r in rows]


def disable_user(*, conn: Connection, tenant: str, username: str,
                 actor: str | Actor = CLI_ACTOR, ctx: RequestContext | None = None) -> Account:
    """Disable an account: its sessions end at once and it can no longer sign in."""
    account = _find(conn, tenant, username)
    if account.status == DISABLED:
        raise Conflict("the account is already disabled")
    conn.execute(update(user_account).where(user_account.c.id == account.id).values(
        status=DISABLED, disabled_at=now_us(), activation_digest=None,
        activation_expires_at=None))
    revoke_sessions(conn, user_id=account.id, reason="disabled")
    _operator(conn, tenant, ctx, "user-disable", user_id=account.id, actor=actor)
    return _find(conn, tenant, username)


def reset_mfa(*, conn: Connection, tenant: str, username: str, activation_days: int,
              actor: str | Actor = CLI_ACTOR, ctx: RequestContext | None = None
              ) -> ActivationCode:
    """Forget the password, TOTP secret and recovery codes; issue a new activation code.

    The person enrols again (password and second factor). Their sessions end at once.
    """
    account = _find(conn, tenant, username)
    if account.status == DISABLED:
        raise Conflict("the account is disabled")
    now = now_us()
    code = new_code(15)
    expires = now + activation_days * 86_400_000_000
    conn.execute(update(user_account).where(user_account.c.id == account.id).values(
        status=PENDING, password_hash=None, totp_secret=None, totp_last_step=None,
        activation_digest=code_digest(code), activation_expires_at=expires,
        activation_attempts=0, activated_at=None))
    conn.execute(delete(recovery_code).where(recovery_code.c.user_id == account.id))
    revoke_sessions(conn, user_id=account.id, reason="reset-mfa")
    _operator(conn, tenant, ctx, "user-reset-mfa", user_id=account.id, actor=actor)
    return ActivationCode(_find(conn, tenant, username), code, expires)


# -- activation (by the person) ---------------------------------------------------------------
def _by_activation(conn: Connection, tenant: str, code: str, status: str, now: int
                   ) -> Row[Any] | None:
    row = conn.execute(select(user_account).where(
        user_account.c.tenant == tenant,
        user_account.c.activation_digest == code_digest(code))).first()
    if (row is None or row.status != status or row.activation_expires_at is None
            or row.activation_expires_at <= now):
        return None
    return row


def begin_activation(*, conn: Connection, keys: KeyStore, activation_code: str, password: str,
                     ctx: RequestContext, now: int | None = None) -> Enrolment | Refused:
    """Set the password; create the TOTP secret and the recovery codes (shown once).

    The activation code then serves only to confirm the enrolment with a first TOTP code.
    """
    tenant = keys.tenant
    now = now or now_us()
    row = _by_activation(conn, tenant, activation_code, PENDING, now)
    if row is None:
        record(conn, tenant, ctx, "activate", audit.DENIED, user_id=None, code="bad-code")
        return Refused(InvalidRequest(_BAD_ACTIVATION))
    user_id: str = row.id
    username: str = row.username
    try:
        check_password(password, username=username)
    except HygieError as exc:
        record(conn, tenant, ctx, "activate", audit.DENIED, user_id=user_id, code=exc.code)
        return Refused(exc)
    secret = new_totp_secret()
    _, key = keys.ensure(conn, TENANT_OWNER)
    codes = tuple(new_code(10) for _ in range(RECOVERY_CODES))
    claimed = conn.execute(update(user_account).where(
        user_account.c.id == user_id, user_account.c.status == PENDING).values(
        status=ENROLLING, password_hash=hash_secret(password),
        totp_secret=key.seal(secret, totp_context(tenant, user_id)), totp_last_step=None,
        activation_attempts=0)).rowcount
    if not claimed:  # a concurrent activation with the same code won
        return Refused(InvalidRequest(_BAD_ACTIVATION))
    conn.execute(delete(recovery_code).where(recovery_code.c.user_id == user_id))
    conn.execute(recovery_code.insert(), [
        {"user_id": user_id, "digest": code_digest(c), "used_at": None} for c in codes])
    record(conn, tenant, ctx, "activate", audit.SUCCESS, user_id=user_id, code="enrolled")
    return Enrolment(provisioning_uri(secret, account=username), codes)


def confirm_activation(*, conn: Connection, keys: KeyStore, activation_code: str,
                       totp_code: str, ctx: RequestContext, now: int | None = None
                       ) -> Account | Refused:
    """A first valid TOTP code proves the authenticator works: the account becomes active."""
    tenant = keys.tenant
    now = now or now_us()
    row = _by_activation(conn, tenant, activation_code, ENROLLING, now)
    if row is None or row.activation_attempts >= MAX_CONFIRM_ATTEMPTS:
        record(conn, tenant, ctx, "activate", audit.DENIED,
               user_id=row.id if row is not None else None,
               code="bad-code")
        return Refused(InvalidRequest(_BAD_ACTIVATION))
    user_id: str = row.id
    step = check_totp(conn=conn, keys=keys, user_id=user_id, code=totp_code, now=now)
    if step is None:
        conn.execute(update(user_account).where(user_account.c.id == user_id).values(
            activation_attempts=user_account.c.activation_attempts + 1))
        record(conn, tenant, ctx, "activate", audit.DENIED, user_id=user_id, code="bad-totp")
        return Refused(InvalidRequest("the code from the authenticator app is not valid; "
                                      "check the device's clock and try the next code"))
    conn.execute(update(user_account).where(
        user_account.c.id == user_id, user_account.c.status == ENROLLING).values(
        status=ACTIVE, activated_at=now, activation_digest=None, activation_expires_at=None,
        activation_attempts=0))
    record(conn, tenant, ctx, "activate", audit.SUCCESS, user_id=user_id, code="active")
    return _find(conn, tenant, row.username)


# -- second factor ------------------------------------------------------------------------------
def check_totp(*, conn: Connection, keys: KeyStore, user_id: str, code: str, now: int
               ) -> int | None:
    """The accepted time step, recorded so the code cannot be used again; None if refused."""
    row = conn.execute(select(user_account.c.totp_secret, user_account.c.totp_last_step)
                       .where(user_account.c.id == user_id)).first()
    if row is None or row.totp_secret is None:
        return None
    _, key = keys.ensure(conn, TENANT_OWNER)
    secret = key.open(row.totp_secret, totp_context(keys.tenant, user_id))
    step = verify_totp(secret, code, unix_time=now / 1e6, last_step=row.totp_last_step)
    if step is None:
        return None
    # Conditional update: of two concurrent uses of one code, only one wins.
    won = conn.execute(update(user_account).where(
        user_account.c.id == user_id,
        (user_account.c.totp_last_step.is_(None)) | (user_account.c.totp_last_step < step))
        .values(totp_last_step=step)).rowcount
    return step if won else None


def use_recovery_code(*, conn: Connection, user_id: str, code: str, now: int) -> bool:
    """Spend one recovery code (each works once)."""
    return bool(conn.execute(update(recovery_code).where(
        recovery_code.c.user_id == user_id, recovery_code.c.digest == code_digest(code),
        recovery_code.c.used_at.is_(None)).values(used_at=now)).rowcount)


def check_second_factor(*, conn: Connection, keys: KeyStore, user_id: str, code: str,
                        now: int) -> str | None:
    """``"totp"`` or ``"recovery-code"`` when ``code`` is accepted, else None."""
    code = code.strip()
    if len(code) > 64:
        return None
    if code.isascii() and code.isdigit():
        return "totp" if check_totp(conn=conn, keys=keys, user_id=user_id, code=code,
                                    now=now) is not None else None
    return "recovery-code" if use_recovery_code(conn=conn, user_id=user_id, code=code,
                                                now=now) else None
