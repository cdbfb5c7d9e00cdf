"""The database schema (SQLAlchemy Core). Changes go through Alembic migrations.

Nothing identifying or clinical is stored in clear: resource bodies are AES-256-GCM
ciphertext; searchable identifying values are blind-index tags; only opaque ids, resource
types, versions, timestamps, clinical event date ranges and references (``Type/id``) are clear.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Integer primary keys that autoincrement on both SQLite (INTEGER PRIMARY KEY) and PostgreSQL.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

instance_meta = Table(
    "instance_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

kek_version = Table(
    "kek_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("check_value", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
)

data_key = Table(
    "data_key",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    # "patient:<id>", "tenant" (resources outside any patient compartment) or "index".
    Column("owner", String(96), nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("wrapped", LargeBinary, nullable=True),  # NULL once destroyed (crypto-shredding)
    Column("created_at", BigInteger, nullable=False),
    Column("destroyed_at", BigInteger, nullable=True),
    UniqueConstraint("tenant", "owner"),
)

resource = Table(
    "resource",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("rtype", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("lu", BigInteger, nullable=False),  # lastUpdated, epoch microseconds
    Column("current", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("patient", String(64), nullable=True),  # compartment (opaque Patient id)
    Column("dek_id", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=True),  # ciphertext; NULL for a deletion
    # Marked by a practitioner as not yet disclosable to the patient (migration 0003).
    Column("undisclosed", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("tenant", "rtype", "rid", "version"),
    Index(None, "tenant", "rtype", "current", "lu"),
    # Lookups by id of the current version (searches join matched ids on it: migration 0005).
    Index(None, "tenant", "rtype", "rid", "current"),
    Index(None, "tenant", "patient", "current"),
    Index(None, "dek_id"),
)

search_hash = Table(
    "search_hash",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("rtype", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("tag", LargeBinary(16), nullable=False),
    Index(None, "tenant", "rtype", "tag", "rid"),
    Index(None, "tenant", "rtype", "rid"),
)

search_date = Table(
    "search_date",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("rtype", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Index(None, "tenant", "rtype", "param", "lo"),
    Index(None, "tenant", "rtype", "rid"),
    # Date searches from a lower bound ("from this day on": ge, gt, eq, ap) read only the rows
    # from that day on (repository._date_ids; migration 0006).
    Index(None, "tenant", "rtype", "param", "hi"),
)

search_ref = Table(
    "search_ref",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("rtype", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("target", String(160), nullable=False),
    Index(None, "tenant", "rtype", "param", "target"),
    Index(None, "tenant", "rtype", "rid"),
)

audit_event = Table(
    "audit_event",
    metadata,
    Column("seq", AutoId, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),  # epoch microseconds
    Column("tenant", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("actor_role", String(16), nullable=True),  # people's role (migration 0004)
    Column("action", String(32), nullable=False),
    Column("rtype", String(64), nullable=True),
    Column("rid", String(64), nullable=True),
    Column("patient", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),  # success | denied | error
    Column("code", String(64), nullable=True),  # stable reason code
    Column("request_id", String(64), nullable=True),
    Column("client_address", String(64), nullable=True),
    Column("detail", String(64), nullable=True),  # e.g. the break-glass grant id (0003)
    Index(None, "tenant", "patient"),
)

api_client = Table(
    "api_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(256), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

access_token = Table(
    "access_token",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index(None, "client_id"),
)

import_journal = Table(
    "import_journal",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("unit", String(160), nullable=False),  # sha256 of the file + ":" + unit index
    Column("done_at", BigInteger, nullable=False),
    Column("resources", Integer, nullable=False),
    PrimaryKeyConstraint("tenant", "unit"),
)

# -- access: care relationships, consent rules, break-glass, alerts (migration 0003) -----------
care_relationship = Table(
    "care_relationship",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("practitioner", String(64), nullable=False),  # Practitioner id
    Column("patient", String(64), nullable=False),  # Patient id
    Column("kind", String(16), nullable=False),  # creator | careteam | referral | share
    Column("source", String(160), nullable=False),  # the resource granting it, Type/id
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "practitioner", "patient", "kind", "source"),
    Index(None, "tenant", "patient"),
    Index(None, "tenant", "source"),
)

consent_rule = Table(
    "consent_rule",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("patient", String(64), nullable=False),
    Column("source", String(160), nullable=False),  # Consent/id
    Column("actor", String(64), nullable=False),  # Practitioner id, or "*" (all but care team)
    PrimaryKeyConstraint("tenant", "source", "actor"),
    Index(None, "tenant", "patient", "actor"),
)

break_glass = Table(
    "break_glass",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("practitioner", String(64), nullable=False),
    Column("patient", String(64), nullable=False),
    Column("dek_id", BigInteger, nullable=False),
    Column("reason", LargeBinary, nullable=False),  # sealed with the patient's data key
    Column("granted_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index(None, "tenant", "practitioner", "patient", "expires_at"),
)

security_alert = Table(
    "security_alert",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # e.g. break-glass
    Column("actor", String(128), nullable=False),
    Column("patient", String(64), nullable=True),
    Column("ref", String(64), nullable=True),  # e.g. the break-glass grant id
    Column("acknowledged_at", BigInteger, nullable=True),
    Index(None, "tenant", "at"),
)

# -- the Merkle ledger over the audit trail (migration 0004) ------------------------------------
ledger_leaf = Table(
    "ledger_leaf",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),  # leaf index, 0-based
    Column("seq", BigInteger, nullable=False, unique=True),  # audit_event.seq
    Column("hash", LargeBinary(32), nullable=False),  # RFC 6962 leaf hash of the JCS entry
)

ledger_checkpoint = Table(
    "ledger_checkpoint",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),  # the C2SP signed note
    Column("created_at", BigInteger, nullable=False),
)
