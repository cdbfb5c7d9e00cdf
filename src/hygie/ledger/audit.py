"""The audit trail (append-only table): who did what, to which record, when, with what outcome.

Entries are written in the same transaction as the data they describe; a failed or denied
attempt is written in a transaction of its own. Nothing here holds health data: ids, types,
actions and stable reason codes only. (The tamper-evident Merkle ledger replaces this table.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from hygie.store.db import now_us
from hygie.store.tables import audit_event

SUCCESS = "success"
DENIED = "denied"
ERROR = "error"


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    actor_kind: str
    action: str
    outcome: str
    rtype: str | None = None
    rid: str | None = None
    patient: str | None = None
    code: str | None = None
    request_id: str | None = None
    client_address: str | None = None
    detail: str | None = None  # e.g. the id of a break-glass grant
    actor_role: str | None = None


# PostgreSQL advisory lock serialising audit appends until commit, so that sequence numbers
# are committed in order and the ledger's sequencer never skips a late commit. (SQLite write
# transactions are already serialised by the store's write lock.)
LEDGER_LOCK = 0x48594749  # "HYGI"


def append(conn: Connection, tenant: str, entries: Iterable[AuditEntry]) -> None:
    at = now_us()
    rows = [{"at": at, "tenant": tenant, **e.__dict__} for e in entries]
    if rows:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LEDGER_LOCK})
        conn.execute(audit_event.insert(), rows)


def record_system_event(engine: Engine, tenant: str, action: str, *, actor: str,
                        rid: str | None = None, detail: str | None = None) -> None:
    """One audit entry, in its own transaction, for an operator command (``actor`` names it:
    ``cli:backup``, ``cli:client``...): backups, restores, client and account changes."""
    from hygie.store.db import transaction

    with transaction(engine) as conn:
        append(conn, tenant, [AuditEntry(actor=actor, actor_kind="system", action=action,
                                         outcome=SUCCESS, rid=rid, detail=detail)])
