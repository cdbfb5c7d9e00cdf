"""The audit trail (append-only table): who did what, to which record, when, with what outcome.

Entries are written in the same transaction as the data they describe; a failed or denied
attempt is written in a transaction of its own. Nothing here holds health data: ids, types,
actions and stable reason codes only. (The tamper-evident Merkle ledger replaces this table.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from hygie.store.db import now_us

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


# Columns written by :func:`append`, in the order of :data:`_FIELDS` (the AuditEntry fields).
_FIELDS = ("actor", "actor_kind", "action", "outcome", "rtype", "rid", "patient", "code",
           "request_id", "client_address", "detail", "actor_role")
_COLUMNS = ("at", "tenant", *_FIELDS)


def insert_sql(dialect: str) -> str:
    """The driver-level INSERT of audit rows (qmark for sqlite3, format for psycopg)."""
    mark = "?" if dialect == "sqlite" else "%s"
    cols, marks = ", ".join(_COLUMNS), ", ".join([mark] * len(_COLUMNS))
    return f"INSERT INTO audit_event ({cols}) VALUES ({marks})"  # noqa: S608 - constants


_INSERT = {d: insert_sql(d) for d in ("sqlite", "postgresql")}


def rows_of(tenant: str, entries: Iterable[AuditEntry]) -> list[tuple[object, ...]]:
    at = now_us()
    return [(at, tenant, e.actor, e.actor_kind, e.action, e.outcome, e.rtype, e.rid, e.patient,
             e.code, e.request_id, e.client_address, e.detail, e.actor_role) for e in entries]


def append(conn: Connection, tenant: str, entries: Iterable[AuditEntry]) -> None:
    """Insert ``entries`` in the transaction of ``conn`` (through the driver: no ORM rows)."""
    rows = rows_of(tenant, entries)
    if rows:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
        conn.exec_driver_sql(_INSERT[dialect], rows)  # type: ignore[arg-type]


def append_raw(cursor: Any, dialect: str, rows: list[tuple[object, ...]]) -> None:
    """Insert prepared rows (:func:`rows_of`) with a DB-API cursor inside an open transaction."""
    if dialect == "postgresql":
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
    cursor.executemany(_INSERT[dialect], rows)


def record_system_event(engine: Engine, tenant: str, action: str, *, actor: str,
                        rid: str | None = None, detail: str | None = None) -> None:
    """One audit entry, in its own transaction, for an operator command (``actor`` names it:
    ``cli:backup``, ``cli:client``...): backups, restores, client and account changes."""
    from hygie.store.db import transaction

    with transaction(engine) as conn:
        append(conn, tenant, [AuditEntry(actor=actor, actor_kind="system", action=action,
                                         outcome=SUCCESS, rid=rid, detail=detail)])
