"""People's accounts, their second factor and their sessions (migration 0002).

Secrets never sit here in clear: passwords are argon2id hashes, the TOTP secret is sealed with
the tenant's data key (associated data names the user), activation codes, recovery codes,
MFA challenges and session tokens are SHA-256 digests of high-entropy random values, and the
failure counters of the throttle are keyed by a digest of the username or client address.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from hygie.store.tables import metadata

user_account = Table(
    "user_account",
    metadata,
    Column("id", String(64), primary_key=True),  # opaque UUID
    Column("tenant", String(64), nullable=False),
    Column("username", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("practitioner_id", String(64), nullable=True),
    Column("patient_id", String(64), nullable=True),
    # pending (activation code issued) | enrolling (password and TOTP set, not confirmed)
    # | active | disabled
    Column("status", String(16), nullable=False),
    Column("password_hash", String(256), nullable=True),
    Column("totp_secret", LargeBinary, nullable=True),  # sealed with the tenant's data key
    Column("totp_last_step", BigInteger, nullable=True),  # last accepted time step (replay)
    Column("activation_digest", LargeBinary(32), nullable=True),
    Column("activation_expires_at", BigInteger, nullable=True),
    Column("activation_attempts", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("activated_at", BigInteger, nullable=True),
    Column("disabled_at", BigInteger, nullable=True),
    UniqueConstraint("tenant", "username"),
    Index(None, "activation_digest"),
)

recovery_code = Table(
    "recovery_code",
    metadata,
    Column("user_id", String(64), nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("used_at", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "digest"),
)

user_session = Table(
    "user_session",
    metadata,
    Column("id", String(64), primary_key=True),  # opaque, not a secret (tokens are)
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # absolute lifetime
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_reason", String(32), nullable=True),  # logout | token-reuse | ...
    Index(None, "user_id"),
)

session_token = Table(
    "session_token",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("session_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # access | refresh
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),  # a refresh token, once rotated
    Index(None, "session_id"),
)

mfa_challenge = Table(
    "mfa_challenge",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index(None, "user_id"),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("subject", LargeBinary(32), nullable=False),  # digest of "user:NAME" / "addr:IP"
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", BigInteger, nullable=False),
    Column("locked_until", BigInteger, nullable=True),
    PrimaryKeyConstraint("tenant", "subject"),
)

ACCOUNT_TABLES = (user_account, recovery_code, user_session, session_token, mfa_challenge,
                  login_throttle)
