"""The encrypted resource repository: versions, history, search indexes.

Callers are the gate only (DESIGN.md: one door to patient data). Every function takes the
connection of the caller's transaction, so data and audit entry commit together.

A stored body is the resource's JSON sealed with the data key of its patient compartment (or the
tenant key), with associated data ``(tenant, type, id, version)``: a body copied or swapped onto
another row fails to open, and that failure is an :class:`IntegrityFailure`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from hygie.access.policy import CARE_TEAM_KINDS
from hygie.errors import Conflict, PreconditionFailed
from hygie.fhir.compartment import patient_of
from hygie.fhir.search import DateClause, SearchQuery
from hygie.fhir.searchparams import extract
from hygie.store.db import now_us
from hygie.store.keys import TENANT_OWNER, KeyStore, patient_owner
from hygie.store.tables import (
    break_glass,
    care_relationship,
    consent_rule,
    data_key,
    resource,
    search_date,
    search_hash,
    search_ref,
)

_ROW_COLUMNS = (
    resource.c.rtype, resource.c.rid, resource.c.version, resource.c.lu, resource.c.deleted,
    resource.c.patient, resource.c.body, resource.c.dek_id,
    data_key.c.kek_version, data_key.c.wrapped, data_key.c.owner, resource.c.undisclosed,
)
# Advisory-lock class of resource writers on PostgreSQL (two-int form: its own key space).
RESOURCE_LOCK_CLASS = 0x48594752  # "HYGR"
# meta.tag / meta.security marking a resource as not yet disclosable to the patient.
DISCLOSURE_SYSTEM = "https://hygie.health/fhir/CodeSystem/disclosure"
UNDISCLOSED_CODE = "pending"


@dataclass(frozen=True, slots=True)
class StoredVersion:
    rtype: str
    rid: str
    version: int
    lu: int
    deleted: bool
    patient: str | None
    body: bytes | None
    dek_id: int
    kek_version: int
    wrapped: bytes | None
    owner: str
    undisclosed: bool = False

    @property
    def last_updated(self) -> str:
        return instant(self.lu)


def instant(us: int) -> str:
    """FHIR instant (UTC, microseconds) from epoch microseconds."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(r: Any) -> StoredVersion:
    return StoredVersion(r.rtype, r.rid, r.version, r.lu, r.deleted, r.patient, r.body, r.dek_id,
                         r.kek_version, r.wrapped, r.owner, bool(r.undisclosed))


def is_undisclosed(body: dict[str, Any]) -> bool:
    meta = body.get("meta") or {}
    for key in ("tag", "security"):
        for coding in meta.get(key) or []:
            if (isinstance(coding, dict) and coding.get("system") == DISCLOSURE_SYSTEM
                    and coding.get("code") == UNDISCLOSED_CODE):
                return True
    return False


class ResourceRepository:
    def __init__(self, keys: KeyStore, tenant: str) -> None:
        self.keys = keys
        self.tenant = tenant
        # Hot statements, built once (SQLAlchemy then reuses their compiled form).
        rtype: Any = bindparam("b_rtype")
        rid: Any = bindparam("b_rid")
        self._q_current = self._select().where(
            resource.c.rtype == rtype, resource.c.rid == rid, resource.c.current.is_(True))
        self._q_version = self._select().where(
            resource.c.rtype == rtype, resource.c.rid == rid,
            resource.c.version == bindparam("b_version"))
        self._q_head = select(resource.c.version, resource.c.deleted).where(
            resource.c.tenant == self.tenant, resource.c.rtype == rtype, resource.c.rid == rid,
            resource.c.current.is_(True))
        self._u_supersede = update(resource).where(
            resource.c.tenant == self.tenant, resource.c.rtype == rtype, resource.c.rid == rid,
            resource.c.current.is_(True)).values(current=False)

    def _aad(self, rtype: str, rid: str, version: int) -> bytes:
        return f"hygie/res/1\x00{self.tenant}\x00{rtype}\x00{rid}\x00{version}".encode()

    def _select(self) -> Select[Any]:
        return (select(*_ROW_COLUMNS)
                .join(data_key, data_key.c.id == resource.c.dek_id)
                .where(resource.c.tenant == self.tenant))

    # -- reads ------------------------------------------------------------------------------
    def current(self, conn: Connection, rtype: str, rid: str) -> StoredVersion | None:
        r = conn.execute(self._q_current, {"b_rtype": rtype, "b_rid": rid}).first()
        return _row(r) if r else None

    def version(self, conn: Connection, rtype: str, rid: str, version: int) -> StoredVersion | None:
        r = conn.execute(self._q_version, {"b_rtype": rtype, "b_rid": rid, "b_version": version}
                         ).first()
        return _row(r) if r else None

    def history(self, conn: Connection, rtype: str, rid: str) -> list[StoredVersion]:
        rows = conn.execute(self._select().where(resource.c.rtype == rtype, resource.c.rid == rid)
                            .order_by(resource.c.version.desc())).all()
        return [_row(r) for r in rows]

    def decrypt(self, row: StoredVersion) -> bytes:
        """The resource JSON of a stored version. Raises Erased or IntegrityFailure."""
        key = self.keys.open(row.dek_id, row.kek_version, row.wrapped, row.owner)
        if row.body is None:
            from hygie.errors import IntegrityFailure

            raise IntegrityFailure("stored data failed its integrity check")
        return key.open(row.body, self._aad(row.rtype, row.rid, row.version))

    def compartment(self, conn: Connection, patient_id: str, *, limit: int, offset: int,
                    hide_undisclosed: bool = False, types: Collection[str] | None = None,
                    ) -> tuple[list[StoredVersion], int]:
        """A patient's current resources (``types``: only these resource types)."""
        cond = and_(resource.c.tenant == self.tenant, resource.c.patient == patient_id,
                    resource.c.current.is_(True), resource.c.deleted.is_(False))
        if types is not None:
            cond = and_(cond, resource.c.rtype.in_(sorted(types)))
        if hide_undisclosed:
            cond = and_(cond, resource.c.undisclosed.is_(False))
        total = conn.execute(select(func.count()).select_from(resource).where(cond)).scalar_one()
        rows = conn.execute(
            self._select().where(cond)
            .order_by(resource.c.rtype != "Patient", resource.c.rtype, resource.c.lu,
                      resource.c.rid)
            .limit(limit).offset(offset)).all()
        return [_row(r) for r in rows], int(total)

    # -- writes ------------------------------------------------------------------------------
    def _current_for_update(self, conn: Connection, rtype: str, rid: str) -> Any:
        """The current head, with the resource locked against concurrent writers.

        PostgreSQL: a transaction-scoped advisory lock on the resource's identity, taken
        before reading, so a writer that waited reads the head its predecessor committed
        (``SELECT ... FOR UPDATE`` alone would skip the row that stopped being current).
        SQLite: write transactions are already serialised.
        """
        if conn.dialect.name == "postgresql":
            digest = hashlib.sha256(f"{self.tenant}\x00{rtype}\x00{rid}".encode()).digest()
            key = int.from_bytes(digest[:4], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:c, :k)"),
                         {"c": RESOURCE_LOCK_CLASS, "k": key})
        return conn.execute(self._q_head, {"b_rtype": rtype, "b_rid": rid}).first()

    def put(self, conn: Connection, rtype: str, rid: str, body: dict[str, Any], *,
            if_match: int | None = None, create_only: bool = False,
            ) -> tuple[StoredVersion, bytes, bool]:
        """Write a new version of ``rtype/rid``. Returns (row, resource JSON, created)."""
        cur = self._current_for_update(conn, rtype, rid)
        if create_only and cur is not None:
            raise Conflict("a resource with this id already exists")
        if if_match is not None and (cur is None or cur.version != if_match):
            raise PreconditionFailed("the resource was changed since the version given in "
                                     "If-Match")
        version = 1 if cur is None else cur.version + 1
        lu = now_us()
        meta = dict(body.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(lu)
        body["id"] = rid
        body["meta"] = meta
        patient = patient_of(body)
        undisclosed = is_undisclosed(body)
        owner = patient_owner(patient) if patient else TENANT_OWNER
        dek_id, key = self.keys.ensure(conn, owner)
        plain = orjson.dumps(body)
        sealed = key.seal(plain, self._aad(rtype, rid, version))
        if cur is not None:
            conn.execute(self._u_supersede, {"b_rtype": rtype, "b_rid": rid})
        try:
            conn.execute(resource.insert().values(
                tenant=self.tenant, rtype=rtype, rid=rid, version=version, lu=lu,
                current=True, deleted=False, patient=patient, dek_id=dek_id, body=sealed,
                undisclosed=undisclosed))
        except IntegrityError:
            raise Conflict("the resource was changed concurrently; retry") from None
        self._reindex(conn, rtype, rid, body, fresh=cur is None)
        row = StoredVersion(rtype, rid, version, lu, False, patient, sealed, dek_id, 0, None, owner,
                            undisclosed)
        return row, plain, cur is None or cur.deleted

    def delete(self, conn: Connection, rtype: str, rid: str) -> StoredVersion | None:
        """Mark ``rtype/rid`` deleted (a new version with no body). None if nothing to delete."""
        self._current_for_update(conn, rtype, rid)  # lock against concurrent writers
        cur = self.current(conn, rtype, rid)
        if cur is None or cur.deleted:
            return None
        version = cur.version + 1
        lu = now_us()
        conn.execute(self._u_supersede, {"b_rtype": rtype, "b_rid": rid})
        conn.execute(resource.insert().values(
            tenant=self.tenant, rtype=rtype, rid=rid, version=version, lu=lu, current=True,
            deleted=True, patient=cur.patient, dek_id=cur.dek_id, body=None,
            undisclosed=cur.undisclosed))
        self._unindex(conn, rtype, rid)
        return StoredVersion(rtype, rid, version, lu, True, cur.patient, None, cur.dek_id,
                             cur.kek_version, cur.wrapped, cur.owner)

    def _unindex(self, conn: Connection, rtype: str, rid: str) -> None:
        for table in (search_hash, search_date, search_ref):
            conn.execute(delete(table).where(table.c.tenant == self.tenant,
                                             table.c.rtype == rtype, table.c.rid == rid))

    def _reindex(self, conn: Connection, rtype: str, rid: str, body: dict[str, Any], *,
                 fresh: bool = False) -> None:
        if not fresh:  # a brand-new resource has no index rows yet
            self._unindex(conn, rtype, rid)
        ex = extract(body)
        base = {"tenant": self.tenant, "rtype": rtype, "rid": rid}
        if ex.hashed:
            indexer = self.keys.indexer(conn)
            tags = {indexer.tag(f"{rtype}|{param}", term) for param, term in ex.hashed}
            conn.execute(search_hash.insert(), [{**base, "tag": t} for t in tags])
        if ex.dates:
            conn.execute(search_date.insert(),
                         [{**base, "param": p, "lo": lo, "hi": hi} for p, lo, hi in ex.dates])
        if ex.refs:
            conn.execute(search_ref.insert(),
                         [{**base, "param": p, "target": t[:160]} for p, t in ex.refs])

    def shred_patient(self, conn: Connection, patient_id: str) -> int:
        """Crypto-shredding: destroy the patient's DEK and drop their search index rows."""
        rows = conn.execute(select(resource.c.rtype, resource.c.rid).distinct().where(
            resource.c.tenant == self.tenant, resource.c.patient == patient_id)).all()
        for r in rows:
            self._unindex(conn, r.rtype, r.rid)
        self.keys.destroy(conn, patient_owner(patient_id))
        return len(rows)

    def references(self, conn: Connection, rtype: str, rids: list[str], param: str
                   ) -> list[str]:
        """The ``Type/id`` targets of reference parameter ``param`` of these resources."""
        if not rids:
            return []
        rows = conn.execute(select(search_ref.c.target).distinct().where(
            search_ref.c.tenant == self.tenant, search_ref.c.rtype == rtype,
            search_ref.c.param == param, search_ref.c.rid.in_(rids))).all()
        return sorted(r[0] for r in rows)

    # -- search ------------------------------------------------------------------------------
    def _row_filter(self, f: Any) -> Any:
        """SQL condition for a policy RowFilter (None: every row)."""
        if f.all_rows:
            return None
        t = self.tenant
        conds: list[Any] = []
        if f.patient:
            conds.append(resource.c.patient == f.patient)
        if f.practitioner:
            cr, cons, bg = care_relationship, consent_rule, break_glass
            related = select(cr.c.patient).where(cr.c.tenant == t,
                                                 cr.c.practitioner == f.practitioner)
            care_team = related.where(cr.c.kind.in_(sorted(CARE_TEAM_KINDS)))
            denied_me = select(cons.c.patient).where(cons.c.tenant == t,
                                                     cons.c.actor == f.practitioner)
            denied_all = select(cons.c.patient).where(cons.c.tenant == t, cons.c.actor == "*")
            glass = select(bg.c.patient).where(bg.c.tenant == t,
                                               bg.c.practitioner == f.practitioner,
                                               bg.c.expires_at > now_us())
            conds.append(or_(
                resource.c.patient.in_(glass),
                and_(resource.c.patient.in_(related), resource.c.patient.not_in(denied_me),
                     or_(resource.c.patient.not_in(denied_all),
                         resource.c.patient.in_(care_team)))))
        cond = or_(*conds) if conds else resource.c.patient == "\x00none"
        if f.non_compartment:
            cond = or_(cond, resource.c.patient.is_(None))
        if f.hide_undisclosed:
            cond = and_(cond, resource.c.undisclosed.is_(False))
        return cond

    def _date_ids(self, rtype: str, param: str, groups: list[list[DateClause]], *,
                  sqlite: bool) -> Select[Any]:
        """Ids of the resources whose ``param`` dates match every group (OR inside a group).

        All the groups of one parameter go into ONE subquery over ``search_date``, so that a
        range such as ``date=ge…&date=lt…`` (a week) is read through one index from its lower
        bound: the rows matching the driving group come from an index range
        (``ix_search_date_tenant_rtype_param_hi`` for a lower bound, ``…_param_lo`` for an
        upper one), and each other group is an ``EXISTS`` over the same resource's rows, probed
        by rid. FHIR semantics are kept for parameters with several values per resource
        (``Timing.event``): each group may be matched by a different value. One id set per
        group instead read every row on the open side of each bound (SQLite materialises an
        ``IN (subquery)``: all the past appointments for "before next Monday").

        The driving group is the first one bounded from below (ge, gt, sa, eq, ap): records
        accumulate in the past, so "from this day on" selects fewer rows than "before that
        day" for a recent range; otherwise the first group.

        On SQLite (no planner statistics) the probe's param, lo and hi are wrapped in no-op
        expressions so that its planner uses the (tenant, rtype, rid) index rather than a
        date range over every resource; PostgreSQL's planner picks the semi-join from its
        statistics, which such expressions would blind.
        """
        sd = search_date
        first = next((i for i, g in enumerate(groups)
                      if all(c.prefix in _FROM_PREFIXES for c in g)), 0)
        ordered = [groups[first], *groups[:first], *groups[first + 1:]]
        conds: list[Any] = [sd.c.tenant == self.tenant, sd.c.rtype == rtype,
                            sd.c.param == param, _any_date(ordered[0], sd.c.lo, sd.c.hi)]
        for n, group in enumerate(ordered[1:]):
            same_resource, o_lo, o_hi = _date_probe(n, sqlite)
            conds.append(exists().where(same_resource, _any_date(group, o_lo, o_hi)))
        return select(sd.c.rid).where(*conds)

    def search(self, conn: Connection, q: SearchQuery) -> tuple[list[StoredVersion], int | None]:
        conds: list[Any] = [resource.c.tenant == self.tenant, resource.c.rtype == q.rtype,
                            resource.c.current.is_(True), resource.c.deleted.is_(False)]
        if q.ids is not None:
            conds.append(resource.c.rid.in_(q.ids))
        if q.row_filter is not None:
            cond = self._row_filter(q.row_filter)
            if cond is not None:
                conds.append(cond)
        for clauses in q.last_updated:
            conds.append(or_(*[date_condition(c, resource.c.lu, resource.c.lu + 1, scale=1_000_000)
                               for c in clauses]))
        indexer = self.keys.indexer(conn) if q.hashed else None
        # Each index filter is a set of matching ids. The first one DRIVES the query (joined
        # as a subquery, then each resource is found by its key); the others are membership
        # tests. Driving from the resource table instead would scan every resource of the type.
        id_sets: list[Select[Any]] = []
        for param, terms in q.hashed:
            assert indexer is not None
            tags = [indexer.tag(f"{q.rtype}|{param}", t) for t in terms]
            id_sets.append(select(search_hash.c.rid).where(
                search_hash.c.tenant == self.tenant, search_hash.c.rtype == q.rtype,
                search_hash.c.tag.in_(tags)))
        for param, targets in q.refs:
            id_sets.append(select(search_ref.c.rid).where(
                search_ref.c.tenant == self.tenant, search_ref.c.rtype == q.rtype,
                search_ref.c.param == param, search_ref.c.target.in_(targets)))
        by_param: dict[str, list[list[DateClause]]] = {}
        for param, dclauses in q.dates:
            by_param.setdefault(param, []).append(dclauses)
        sqlite = conn.dialect.name == "sqlite"
        id_sets.extend(self._date_ids(q.rtype, param, groups, sqlite=sqlite)
                       for param, groups in by_param.items())
        driver = id_sets[0].distinct().subquery("matched") if id_sets else None
        conds.extend(resource.c.rid.in_(s) for s in id_sets[1:])
        where = and_(*conds)
        total: int | None = None
        if q.total != "none":
            counted = select(func.count()).select_from(resource)
            if driver is not None:
                counted = select(func.count()).select_from(
                    driver.join(resource, resource.c.rid == driver.c.rid))
            total = int(conn.execute(counted.where(where)).scalar_one())
        order = ((resource.c.lu.desc(), resource.c.rid.desc()) if q.sort_desc
                 else (resource.c.lu, resource.c.rid))
        rows: list[Any] = []
        if q.count:
            stmt = self._select() if driver is None else (
                select(*_ROW_COLUMNS)
                .select_from(driver.join(resource, resource.c.rid == driver.c.rid)
                             .join(data_key, data_key.c.id == resource.c.dek_id))
                .where(resource.c.tenant == self.tenant))
            rows = list(conn.execute(stmt.where(where).order_by(*order).limit(q.count)
                                     .offset(q.offset)).all())
        return [_row(r) for r in rows], total


# Prefixes whose condition bounds the stored range from below (``hi > x`` or ``lo >= x``).
_FROM_PREFIXES = frozenset({"ge", "gt", "sa", "eq", "ap"})


@functools.cache
def _date_probe(n: int, sqlite: bool) -> tuple[Any, Any, Any]:
    """(the rows of the same resource and parameter in ``search_date AS sd<n>``, its lo, its hi),
    built once: immutable expressions, reused by every search."""
    sd, other = search_date, search_date.alias(f"sd{n}")
    o_param, o_lo, o_hi = other.c.param, other.c.lo, other.c.hi
    if sqlite:
        o_param, o_lo, o_hi = o_param.concat(""), o_lo + 0, o_hi + 0
    return (and_(other.c.tenant == sd.c.tenant, other.c.rtype == sd.c.rtype,
                 other.c.rid == sd.c.rid, o_param == sd.c.param), o_lo, o_hi)


def _any_date(group: list[DateClause], lo: Any, hi: Any) -> Any:
    return or_(*[date_condition(c, lo, hi) for c in group])


def date_condition(c: DateClause, lo: Any, hi: Any, scale: int = 1) -> Any:
    """FHIR date comparison between the stored range [lo, hi) and the query range."""
    qlo, qhi = c.low * scale, c.high * scale
    p = c.prefix
    if p == "eq":
        return and_(lo >= qlo, hi <= qhi)
    if p == "ne":
        return not_(and_(lo >= qlo, hi <= qhi))
    if p == "gt":
        return hi > qhi
    if p == "lt":
        return lo < qlo
    if p == "ge":
        return hi > qlo
    if p == "le":
        return lo < qhi
    if p == "sa":
        return lo >= qhi
    if p == "eb":
        return hi <= qlo
    return and_(lo < qhi, hi > qlo)  # ap: overlaps
