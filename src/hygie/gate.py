"""The one door to patient data.

    actor + action + target  ->  policy decision  ->  store (encrypt/decrypt)  ->  audit entry

Every read or write of health data — API routes, batch/transaction bundles, import, export —
goes through :meth:`Gate.open`, which yields a :class:`Door` bound to one actor and one
database transaction. Successful accesses are recorded in the same transaction as the data
(committed before anything is returned); denied and failed attempts are recorded in a
transaction of their own. If the audit entry cannot be written, the access fails (fail closed).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from hygie.access.actor import Actor, RequestContext
from hygie.access.policy import Target, decide
from hygie.crypto import Keyring
from hygie.errors import (
    AuditUnavailable,
    Forbidden,
    Gone,
    HygieError,
    IntegrityFailure,
    NotFound,
)
from hygie.fhir.search import SearchQuery
from hygie.fhir.validation import validate_resource
from hygie.ledger import audit
from hygie.ledger.audit import AuditEntry
from hygie.store.db import transaction
from hygie.store.keys import KeyStore
from hygie.store.repository import ResourceRepository, StoredVersion
from hygie.store.tables import resource

log = logging.getLogger("hygie.security")


@dataclass(frozen=True, slots=True)
class Found:
    """A resource version that passed the door: its JSON and its version facts."""

    rtype: str
    rid: str
    version: int
    last_updated: str
    body: bytes | None  # None for a deletion marker in history
    deleted: bool = False


class Gate:
    """Built once per process: the engine, the keys and the repository."""

    def __init__(self, engine: Engine, keyring: Keyring, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant
        self.keys = KeyStore(keyring, tenant)
        self.repo = ResourceRepository(self.keys, tenant)

    @contextmanager
    def open(self, actor: Actor, ctx: RequestContext | None = None) -> Iterator[Door]:
        """A door for one actor and one transaction (all or nothing)."""
        ctx = ctx or RequestContext()
        door: Door | None = None
        try:
            with transaction(self.engine) as conn:
                door = Door(self, actor, ctx, conn)
                yield door
                try:
                    audit.append(conn, self.tenant, door.entries)
                except SQLAlchemyError:
                    raise AuditUnavailable("the audit trail cannot record this access") from None
        except HygieError as exc:
            failures = door.failures if door and door.failures else []
            if not failures and door is not None and not isinstance(exc, AuditUnavailable):
                failures = [door.entry("request", audit.ERROR, code=exc.code)]
            self.record(failures)
            raise
        except SQLAlchemyError as exc:
            if door is not None and door.failures:
                self.record(door.failures)
            log.error("database error (%s) during a gate transaction", type(exc).__name__)
            raise AuditUnavailable("the database could not complete this request") from None

    def record(self, entries: list[AuditEntry]) -> None:
        """Write audit entries in their own transaction; fail closed."""
        if not entries:
            return
        try:
            with transaction(self.engine) as conn:
                audit.append(conn, self.tenant, entries)
        except (SQLAlchemyError, HygieError):
            raise AuditUnavailable("the audit trail cannot record this access") from None


class Door:
    """Patient-data operations for one actor inside one transaction."""

    def __init__(self, gate: Gate, actor: Actor, ctx: RequestContext, conn: Connection) -> None:
        self.gate = gate
        self.repo = gate.repo
        self.actor = actor
        self.ctx = ctx
        self.conn = conn
        self.entries: list[AuditEntry] = []
        self.failures: list[AuditEntry] = []

    # -- audit helpers ------------------------------------------------------------------------
    def entry(self, action: str, outcome: str, *, rtype: str | None = None,
              rid: str | None = None, patient: str | None = None,
              code: str | None = None) -> AuditEntry:
        return AuditEntry(actor=self.actor.label, actor_kind=self.actor.kind, action=action,
                          outcome=outcome, rtype=rtype, rid=rid, patient=patient, code=code,
                          request_id=self.ctx.request_id,
                          client_address=self.ctx.client_address)

    def _fail(self, exc: HygieError, action: str, target: Target,
              code: str | None = None) -> HygieError:
        outcome = audit.DENIED if isinstance(exc, Forbidden) else audit.ERROR
        self.failures.append(self.entry(action, outcome, rtype=target.rtype, rid=target.rid,
                                        patient=target.patient, code=code or exc.code))
        if isinstance(exc, IntegrityFailure):
            log.warning("integrity alarm: a stored %s failed authentication", target.rtype)
        return exc

    def _permit(self, action: str, target: Target) -> None:
        decision = decide(self.actor, action, target)
        if not decision.allowed:
            raise self._fail(Forbidden(decision.detail or "access denied"), action, target,
                             code=decision.reason)

    def _ok(self, action: str, target: Target) -> None:
        self.entries.append(self.entry(action, audit.SUCCESS, rtype=target.rtype,
                                       rid=target.rid, patient=target.patient, code=None))

    def _open(self, row: StoredVersion, action: str) -> bytes:
        try:
            return self.repo.decrypt(row)
        except HygieError as exc:
            raise self._fail(exc, action, Target(row.rtype, row.rid, row.patient)) from None

    # -- interactions -------------------------------------------------------------------------
    def read(self, rtype: str, rid: str) -> Found:
        target = Target(rtype, rid)
        self._permit("read", target)
        row = self.repo.current(self.conn, rtype, rid)
        if row is None:
            raise self._fail(NotFound(f"{rtype} not found"), "read", target)
        target = Target(rtype, rid, row.patient)
        if row.deleted:
            raise self._fail(Gone(f"this {rtype} was deleted"), "read", target)
        body = self._open(row, "read")
        self._ok("read", target)
        return Found(rtype, rid, row.version, row.last_updated, body)

    def vread(self, rtype: str, rid: str, version: int) -> Found:
        target = Target(rtype, rid)
        self._permit("vread", target)
        row = self.repo.version(self.conn, rtype, rid, version)
        if row is None:
            raise self._fail(NotFound(f"{rtype} version not found"), "vread", target)
        target = Target(rtype, rid, row.patient)
        if row.deleted:
            raise self._fail(Gone(f"this {rtype} version is a deletion"), "vread", target)
        body = self._open(row, "vread")
        self._ok("vread", target)
        return Found(rtype, rid, row.version, row.last_updated, body)

    def history(self, rtype: str, rid: str) -> list[Found]:
        target = Target(rtype, rid)
        self._permit("history", target)
        rows = self.repo.history(self.conn, rtype, rid)
        if not rows:
            raise self._fail(NotFound(f"{rtype} not found"), "history", target)
        out = [Found(r.rtype, r.rid, r.version, r.last_updated,
                     None if r.deleted else self._open(r, "history"), r.deleted) for r in rows]
        self._ok("history", Target(rtype, rid, rows[0].patient))
        return out

    def create(self, rtype: str, body: dict[str, Any], rid: str | None = None) -> Found:
        target = Target(rtype)
        self._permit("create", target)
        try:
            validate_resource(body, rtype)
        except HygieError as exc:
            raise self._fail(exc, "create", target) from None
        rid = rid or str(uuid.uuid4())
        row, plain, _ = self._write(lambda: self.repo.put(self.conn, rtype, rid, body,
                                                          create_only=True), "create", target)
        self._ok("create", Target(rtype, rid, row.patient))
        return Found(rtype, rid, row.version, row.last_updated, plain)

    def update(self, rtype: str, rid: str, body: dict[str, Any],
               if_match: int | None = None) -> tuple[Found, bool]:
        target = Target(rtype, rid)
        self._permit("update", target)
        try:
            validate_resource(body, rtype, rid=rid)
        except HygieError as exc:
            raise self._fail(exc, "update", target) from None
        row, plain, created = self._write(
            lambda: self.repo.put(self.conn, rtype, rid, body, if_match=if_match),
            "update", target)
        self._ok("create" if created else "update", Target(rtype, rid, row.patient))
        return Found(rtype, rid, row.version, row.last_updated, plain), created

    def delete(self, rtype: str, rid: str) -> Found | None:
        target = Target(rtype, rid)
        self._permit("delete", target)
        row = self.repo.delete(self.conn, rtype, rid)
        self._ok("delete", Target(rtype, rid, row.patient if row else None))
        if row is None:
            return None
        return Found(rtype, rid, row.version, row.last_updated, None, True)

    def search(self, q: SearchQuery) -> tuple[list[Found], int | None]:
        target = Target(q.rtype)
        self._permit("search", target)
        if q.summary_count:
            q.count = 0
        rows, total = self.repo.search(self.conn, q)
        found = [Found(r.rtype, r.rid, r.version, r.last_updated, self._open(r, "search"))
                 for r in rows]
        self._ok("search", target)
        for patient in sorted({r.patient for r in rows if r.patient}):
            self._ok("search", Target(q.rtype, None, patient))
        return found, total

    def everything(self, patient_id: str, *, count: int, offset: int
                   ) -> tuple[list[Found], int]:
        target = Target("Patient", patient_id, patient_id)
        self._permit("everything", target)
        row = self.repo.current(self.conn, "Patient", patient_id)
        if row is None or row.deleted:
            raise self._fail(NotFound("Patient not found"), "everything", target)
        rows, total = self.repo.compartment(self.conn, patient_id, limit=count, offset=offset)
        permitted = [r for r in rows
                     if decide(self.actor, "read", Target(r.rtype, r.rid, patient_id)).allowed]
        found = [Found(r.rtype, r.rid, r.version, r.last_updated, self._open(r, "everything"))
                 for r in permitted]
        self._ok("everything", target)
        return found, total

    def resource_types(self) -> list[str]:
        """Resource types present (for export); no patient data."""
        rows = self.conn.execute(select(resource.c.rtype).distinct().where(
            resource.c.tenant == self.gate.tenant, resource.c.current.is_(True),
            resource.c.deleted.is_(False)).order_by(resource.c.rtype)).all()
        return [r[0] for r in rows]

    def erase_patient(self, patient_id: str) -> int:
        """Crypto-shredding of one patient's data (operator only)."""
        target = Target("Patient", patient_id, patient_id)
        if self.actor.kind != "system":
            raise self._fail(Forbidden("only the operator can erase a patient's data"),
                             "erase", target)
        n = self.repo.shred_patient(self.conn, patient_id)
        self.entries.append(self.entry("erase", audit.SUCCESS, rtype="Patient", rid=patient_id,
                                       patient=patient_id))
        return n

    def _write(self, op: Any, action: str, target: Target) -> Any:
        try:
            return op()
        except HygieError as exc:
            raise self._fail(exc, action, target) from None
