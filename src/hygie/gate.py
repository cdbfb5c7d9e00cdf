"""The one door to patient data.

    actor + action + target (+ facts)  ->  policy decision  ->  store  ->  audit entry

Every read or write of health data — API routes, batch/transaction entries, import, export —
goes through :meth:`Gate.open`, which yields a :class:`Door` bound to one actor and one
database transaction. Successful accesses are recorded in the same transaction as the data
(committed before anything is returned); denied and failed attempts are recorded in a
transaction of their own. If the audit entry cannot be written, the access fails (fail closed).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError

from hygie.access import relationships
from hygie.access.actor import Actor, RequestContext
from hygie.access.policy import Decision, Facts, Target, decide, is_directory, row_filter
from hygie.crypto import Keyring
from hygie.errors import (
    AuditUnavailable,
    Forbidden,
    Gone,
    HygieError,
    IntegrityFailure,
    InvalidRequest,
    NotFound,
)
from hygie.fhir.compartment import patient_of
from hygie.fhir.search import SearchQuery
from hygie.fhir.validation import validate_resource
from hygie.ledger import audit
from hygie.ledger.appender import AuditAppender
from hygie.ledger.audit import AuditEntry
from hygie.store.db import now_us, transaction
from hygie.store.keys import KeyStore, patient_owner
from hygie.store.repository import ResourceRepository, StoredVersion
from hygie.store.tables import break_glass, resource, security_alert

log = logging.getLogger("hygie.security")
T = TypeVar("T")
BREAK_GLASS_SECONDS = 4 * 3600
BREAK_GLASS_HEADER = "x-break-glass"
_BG_REASON_MAX = 500


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

    def __init__(self, engine: Engine, keyring: Keyring, tenant: str, *,
                 break_glass_seconds: int = BREAK_GLASS_SECONDS) -> None:
        self.engine = engine
        self.tenant = tenant
        self.keys = KeyStore(keyring, tenant)
        self.repo = ResourceRepository(self.keys, tenant)
        self.break_glass_seconds = break_glass_seconds
        self.appender = AuditAppender(engine, tenant)

    @contextmanager
    def open(self, actor: Actor, ctx: RequestContext | None = None, *,
             readonly: bool = False) -> Iterator[Door]:
        """A door for one actor and one transaction (all or nothing).

        ``readonly``: the door only reads; its audit entries are group-committed by the
        appender, and the block returns only once they are durable (fail closed).
        """
        ctx = ctx or RequestContext()
        door: Door | None = None
        try:
            with transaction(self.engine, readonly=readonly) as conn:
                door = Door(self, actor, ctx, conn, readonly=readonly)
                yield door
                if not readonly:
                    try:
                        audit.append(conn, self.tenant, door.entries)
                    except SQLAlchemyError:
                        raise AuditUnavailable(
                            "the audit trail cannot record this access") from None
            if readonly:
                self.appender.append(door.entries)
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

    def __init__(self, gate: Gate, actor: Actor, ctx: RequestContext, conn: Connection, *,
                 readonly: bool = False) -> None:
        self.readonly = readonly
        self.gate = gate
        self.repo = gate.repo
        self.actor = actor
        self.ctx = ctx
        self.conn = conn
        self.entries: list[AuditEntry] = []
        self.failures: list[AuditEntry] = []
        self._facts: dict[str, Facts] = {}
        self.included: list[Found] = []  # _include/_revinclude results of the last search

    # -- audit helpers ------------------------------------------------------------------------
    def entry(self, action: str, outcome: str, *, rtype: str | None = None,
              rid: str | None = None, patient: str | None = None,
              code: str | None = None, detail: str | None = None) -> AuditEntry:
        return AuditEntry(actor=self.actor.label, actor_kind=self.actor.kind,
                          actor_role=self.actor.role, action=action,
                          outcome=outcome, rtype=rtype, rid=rid, patient=patient, code=code,
                          request_id=self.ctx.request_id,
                          client_address=self.ctx.client_address, detail=detail)

    def _fail(self, exc: HygieError, action: str, target: Target,
              code: str | None = None) -> HygieError:
        outcome = audit.DENIED if isinstance(exc, Forbidden) else audit.ERROR
        self.failures.append(self.entry(action, outcome, rtype=target.rtype, rid=target.rid,
                                        patient=target.patient, code=code or exc.code))
        if isinstance(exc, IntegrityFailure):
            log.warning("integrity alarm: a stored %s failed authentication", target.rtype)
        return exc

    def _ok(self, action: str, target: Target, decision: Decision | None = None) -> None:
        code = "break-glass" if decision is not None and decision.break_glass else None
        self.entries.append(self.entry(action, audit.SUCCESS, rtype=target.rtype,
                                       rid=target.rid, patient=target.patient, code=code))

    # -- policy -------------------------------------------------------------------------------
    def facts(self, patient: str | None) -> Facts:
        """Relationships, consent and break-glass between a practitioner and a patient."""
        pract = self.actor.practitioner_id
        if patient is None or self.actor.role != "practitioner" or pract is None:
            return Facts()
        if patient not in self._facts:
            tenant = self.gate.tenant
            denies_actor, denies_others = relationships.consent_denials(
                self.conn, tenant=tenant, practitioner=pract, patient=patient)
            bg = self.conn.execute(select(break_glass.c.id).where(
                break_glass.c.tenant == tenant, break_glass.c.practitioner == pract,
                break_glass.c.patient == patient, break_glass.c.expires_at > now_us())
            ).first() is not None
            self._facts[patient] = Facts(
                relationships=relationships.kinds(self.conn, tenant=tenant, practitioner=pract,
                                                  patient=patient),
                consent_denies_actor=denies_actor, consent_denies_others=denies_others,
                break_glass=bg)
        return self._facts[patient]

    def _permit(self, action: str, target: Target) -> Decision:
        decision = decide(self.actor, action, target, self.facts(target.patient))
        if not decision.allowed and decision.reason in ("break-glass-required",
                                                        "consent-denied"):
            reason = self.ctx.extra.get("break_glass")
            if reason and target.patient:
                self._grant_break_glass(target.patient, reason)
                decision = decide(self.actor, action, target, self.facts(target.patient))
        if not decision.allowed:
            raise self._fail(Forbidden(decision.detail or "access denied"), action, target,
                             code=decision.reason)
        return decision

    def _grant_break_glass(self, patient: str, reason: str) -> None:
        """Open one patient's record for a limited time; recorded, with an alert."""
        reason = reason.strip()
        if len(reason) < 5 or len(reason) > _BG_REASON_MAX:
            raise InvalidRequest(f"a break-glass reason is 5 to {_BG_REASON_MAX} characters")
        grant = str(uuid.uuid4())
        aad = f"hygie/break-glass/1\x00{self.gate.tenant}\x00{grant}".encode()
        entry = self.entry("break-glass", audit.SUCCESS, rtype="Patient", rid=patient,
                           patient=patient, code="break-glass", detail=grant)

        def record(conn: Connection) -> None:
            dek_id, key = self.gate.keys.ensure(conn, patient_owner(patient))
            now = now_us()
            conn.execute(insert(break_glass).values(
                id=grant, tenant=self.gate.tenant, actor=self.actor.label,
                practitioner=self.actor.practitioner_id or "", patient=patient, dek_id=dek_id,
                reason=key.seal(reason.encode(), aad), granted_at=now,
                expires_at=now + self.gate.break_glass_seconds * 1_000_000))
            conn.execute(insert(security_alert).values(
                tenant=self.gate.tenant, at=now, kind="break-glass", actor=self.actor.label,
                patient=patient, ref=grant))

        if self.readonly:
            # The grant, its alert and its audit entry are committed on their own, first.
            with transaction(self.gate.engine) as conn:
                record(conn)
                audit.append(conn, self.gate.tenant, [entry])
        else:
            record(self.conn)
            self.entries.append(entry)
        log.warning("break-glass: %s opened a patient record (grant %s)", self.actor.label, grant)
        facts = self.facts(patient)
        self._facts[patient] = Facts(facts.relationships, facts.consent_denies_actor,
                                     facts.consent_denies_others, break_glass=True)

    def _missing(self, action: str, target: Target, exc: HygieError) -> HygieError:
        """No such resource. People who could not see it anyway get the same answer as for
        a record they may not open, so ids reveal nothing."""
        if self.actor.kind == "user" and not is_directory(target.rtype):
            denial = decide(self.actor, action, Target(target.rtype, target.rid, "\x00none"))
            if not denial.allowed:
                return self._fail(Forbidden(denial.detail), action, target, code="not-found")
        return self._fail(exc, action, target)

    def _open(self, row: StoredVersion, action: str) -> bytes:
        try:
            return self.repo.decrypt(row)
        except HygieError as exc:
            raise self._fail(exc, action, Target(row.rtype, row.rid, row.patient)) from None

    def _guard(self, op: Callable[[], T], action: str, target: Target) -> T:
        try:
            return op()
        except HygieError as exc:
            raise self._fail(exc, action, target) from None

    @staticmethod
    def _target(row: StoredVersion) -> Target:
        return Target(row.rtype, row.rid, row.patient, row.undisclosed)

    # -- interactions -------------------------------------------------------------------------
    def read(self, rtype: str, rid: str) -> Found:
        row = self.repo.current(self.conn, rtype, rid)
        if row is None:
            self._precheck("read", rtype)
            raise self._missing("read", Target(rtype, rid), NotFound(f"{rtype} not found"))
        target = self._target(row)
        decision = self._permit("read", target)
        if row.deleted:
            raise self._fail(Gone(f"this {rtype} was deleted"), "read", target)
        body = self._open(row, "read")
        self._ok("read", target, decision)
        return Found(rtype, rid, row.version, row.last_updated, body)

    def vread(self, rtype: str, rid: str, version: int) -> Found:
        row = self.repo.version(self.conn, rtype, rid, version)
        if row is None:
            self._precheck("vread", rtype)
            raise self._missing("vread", Target(rtype, rid),
                                NotFound(f"{rtype} version not found"))
        target = self._target(row)
        decision = self._permit("vread", target)
        if row.deleted:
            raise self._fail(Gone(f"this {rtype} version is a deletion"), "vread", target)
        body = self._open(row, "vread")
        self._ok("vread", target, decision)
        return Found(rtype, rid, row.version, row.last_updated, body)

    def history(self, rtype: str, rid: str) -> list[Found]:
        rows = self.repo.history(self.conn, rtype, rid)
        if not rows:
            self._precheck("history", rtype)
            raise self._missing("history", Target(rtype, rid), NotFound(f"{rtype} not found"))
        decision = Decision(True, "")
        for patient in {r.patient for r in rows}:
            decision = self._permit("history", Target(rtype, rid, patient, rows[0].undisclosed))
        out = [Found(r.rtype, r.rid, r.version, r.last_updated,
                     None if r.deleted else self._open(r, "history"), r.deleted) for r in rows]
        self._ok("history", self._target(rows[0]), decision)
        return out

    def _precheck(self, action: str, rtype: str) -> None:
        """Scope/role check before looking at a row that does not exist (API clients)."""
        if self.actor.kind == "client":
            self._permit(action, Target(rtype))

    def create(self, rtype: str, body: dict[str, Any], rid: str | None = None) -> Found:
        self._guard(lambda: validate_resource(body, rtype), "create", Target(rtype))
        target = Target(rtype, None, patient_of(body))
        decision = self._permit("create", target)
        rid = rid or str(uuid.uuid4())
        row, plain, _ = self._guard(lambda: self.repo.put(self.conn, rtype, rid, body,
                                                          create_only=True), "create", target)
        self._after_write(rtype, rid, body, created_patient=rtype == "Patient")
        self._ok("create", Target(rtype, rid, row.patient), decision)
        return Found(rtype, rid, row.version, row.last_updated, plain)

    def update(self, rtype: str, rid: str, body: dict[str, Any],
               if_match: int | None = None) -> tuple[Found, bool]:
        self._guard(lambda: validate_resource(body, rtype, rid=rid), "update",
                    Target(rtype, rid))
        current = self.repo.current(self.conn, rtype, rid)
        if current is not None and not current.deleted:
            self._permit("update", self._target(current))
        new_target = Target(rtype, rid, patient_of({**body, "id": rid}))
        decision = self._permit("update" if current else "create", new_target)
        row, plain, created = self._guard(
            lambda: self.repo.put(self.conn, rtype, rid, body, if_match=if_match),
            "update", new_target)
        self._after_write(rtype, rid, body, created_patient=created and rtype == "Patient")
        self._ok("create" if created else "update", Target(rtype, rid, row.patient), decision)
        return Found(rtype, rid, row.version, row.last_updated, plain), created

    def delete(self, rtype: str, rid: str) -> Found | None:
        current = self.repo.current(self.conn, rtype, rid)
        if current is None and self.actor.kind == "user" and not is_directory(rtype):
            raise self._missing("delete", Target(rtype, rid), NotFound(f"{rtype} not found"))
        # Deleting what is not there answers 204 to those who may delete this kind of data.
        decision = self._permit("delete", self._target(current) if current
                               else Target(rtype, rid))
        row = self.repo.delete(self.conn, rtype, rid)
        if row is not None:
            relationships.sync(self.conn, tenant=self.gate.tenant, rtype=rtype, rid=rid,
                               body=None)
        self._ok("delete", Target(rtype, rid, row.patient if row else None), decision)
        if row is None:
            return None
        return Found(rtype, rid, row.version, row.last_updated, None, True)

    def _after_write(self, rtype: str, rid: str, body: dict[str, Any], *,
                     created_patient: bool) -> None:
        relationships.sync(self.conn, tenant=self.gate.tenant, rtype=rtype, rid=rid, body=body)
        pract = self.actor.practitioner_id
        if created_patient and self.actor.role == "practitioner" and pract:
            relationships.add_creator(self.conn, tenant=self.gate.tenant, practitioner=pract,
                                      patient=rid)
        self._facts.clear()

    def search(self, q: SearchQuery) -> tuple[list[Found], int | None]:
        target = Target(q.rtype)
        decision = self._permit("search", target)
        if q.summary_count:
            q.count = 0
        q.row_filter = row_filter(self.actor, q.rtype)
        rows, total = self.repo.search(self.conn, q)
        found = [Found(r.rtype, r.rid, r.version, r.last_updated, self._open(r, "search"))
                 for r in rows]
        self._ok("search", target, decision)
        for patient in sorted({r.patient for r in rows if r.patient}):
            self._ok("search", Target(q.rtype, None, patient))
        self.included = self._includes(q, [r.rid for r in rows]) if rows else []
        return found, total

    def _includes(self, q: SearchQuery, rids: list[str]) -> list[Found]:
        """_include / _revinclude: each resource passes the policy on its own; the ones the
        caller may not read are left out silently (their existence is not revealed)."""
        out: list[Found] = []
        seen: set[tuple[str, str]] = set()
        for _src, param, want in q.includes:
            for ref in self.repo.references(self.conn, q.rtype, rids, param):
                rtype, _, rid = ref.partition("/")
                if (want and rtype != want) or (rtype, rid) in seen:
                    continue
                seen.add((rtype, rid))
                row = self.repo.current(self.conn, rtype, rid)
                if row is None or row.deleted:
                    continue
                tgt = self._target(row)
                if decide(self.actor, "read", tgt, self.facts(row.patient)).allowed:
                    out.append(Found(rtype, rid, row.version, row.last_updated,
                                     self._open(row, "search")))
                    self._ok("read", Target(rtype, rid, row.patient))
        for src, param in q.revincludes:
            if not decide(self.actor, "search", Target(src)).allowed:
                continue
            sub = SearchQuery(rtype=src, count=1000, total="none",
                              refs=[(param, [f"{q.rtype}/{rid}" for rid in rids])],
                              row_filter=row_filter(self.actor, src))
            rows, _ = self.repo.search(self.conn, sub)
            for row in rows:
                if (row.rtype, row.rid) in seen:
                    continue
                if not decide(self.actor, "read", self._target(row),
                              self.facts(row.patient)).allowed:
                    continue
                seen.add((row.rtype, row.rid))
                out.append(Found(row.rtype, row.rid, row.version, row.last_updated,
                                 self._open(row, "search")))
                self._ok("read", Target(row.rtype, row.rid, row.patient))
        return out

    def everything(self, patient_id: str, *, count: int, offset: int,
                   types: Collection[str] | None = None) -> tuple[list[Found], int]:
        """The patient's compartment (``types``: only these resource types, like
        ``$everything?_type=``), the Patient first; one audit entry."""
        row = self.repo.current(self.conn, "Patient", patient_id)
        target = Target("Patient", patient_id, patient_id)
        if row is None or row.deleted:
            self._precheck("everything", "Patient")
            raise self._missing("everything", target, NotFound("Patient not found"))
        decision = self._permit("everything", target)
        rows, total = self.repo.compartment(self.conn, patient_id, limit=count, offset=offset,
                                            hide_undisclosed=self.actor.role == "patient",
                                            types=types)
        facts = self.facts(patient_id)
        permitted = [r for r in rows
                     if decide(self.actor, "read", self._target(r), facts).allowed]
        found = [Found(r.rtype, r.rid, r.version, r.last_updated, self._open(r, "everything"))
                 for r in permitted]
        self._ok("everything", target, decision)
        return found, total

    def access_history(self, patient_id: str, *, limit: int) -> list[dict[str, Any]]:
        """Who accessed this patient's record (for the patient themself): when, who (name and
        role), what, and the stated break-glass reason (decrypted with the patient's key)."""
        if self.actor.role != "patient" or self.actor.patient_id != patient_id:
            raise self._fail(Forbidden("patients see the access history of their own record"),
                             "access-history", Target("Patient", patient_id, patient_id))
        from hygie.store.tables import api_client, audit_event
        from hygie.store.tables_accounts import user_account

        rows = self.conn.execute(
            select(audit_event).where(audit_event.c.tenant == self.gate.tenant,
                                      audit_event.c.patient == patient_id,
                                      audit_event.c.actor != self.actor.label)
            .order_by(audit_event.c.seq.desc()).limit(limit)).all()
        names: dict[str, tuple[str, str | None]] = {}
        reasons: dict[str, str] = {}
        for r in rows:
            if r.actor in names:
                continue
            kind, _, ident = r.actor.partition(":")
            if kind == "user":
                u = self.conn.execute(select(user_account).where(
                    user_account.c.id == ident)).first()
                names[r.actor] = (self._person_name(u), u.role if u else r.actor_role)
            elif kind == "client":
                c = self.conn.execute(select(api_client.c.name).where(
                    api_client.c.client_id == ident)).first()
                names[r.actor] = (c.name if c else ident, "api-client")
            else:
                names[r.actor] = ("Hygie", "system")
        grants = {r.detail for r in rows if r.action == "break-glass" and r.detail}
        if grants:
            for g in self.conn.execute(select(break_glass).where(break_glass.c.id.in_(grants))):
                key = self.gate.keys.ensure(self.conn, patient_owner(patient_id))[1]
                aad = f"hygie/break-glass/1\x00{self.gate.tenant}\x00{g.id}".encode()
                reasons[g.id] = key.open(g.reason, aad).decode()
        self._ok("access-history", Target("Patient", patient_id, patient_id))
        return [{"at": r.at, "who": names[r.actor][0], "role": names[r.actor][1],
                 "action": r.action, "resource_type": r.rtype, "outcome": r.outcome,
                 "break_glass_reason": reasons.get(r.detail or "") if r.action == "break-glass"
                 else None} for r in rows]

    def _person_name(self, user: Any) -> str:
        """A professional's display name: their Practitioner resource's name, else username."""
        if user is None:
            return "?"
        if user.practitioner_id:
            row = self.repo.current(self.conn, "Practitioner", user.practitioner_id)
            if row is not None and not row.deleted:
                import orjson

                doc = orjson.loads(self.repo.decrypt(row))
                for name in doc.get("name") or []:
                    text = name.get("text") or " ".join(
                        [*name.get("prefix", []), *name.get("given", []),
                         name.get("family", "")]).strip()
                    if text:
                        return str(text)
        return str(user.username)

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
