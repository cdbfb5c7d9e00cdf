"""``GET /fhir/AuditEvent``: the audit trail as FHIR AuditEvents, for the DPO and security.

Search parameters: ``patient``, ``agent`` (actor label, e.g. ``user:<id>``), ``date``
(prefixes ge/gt/le/lt/eq), ``action`` (C R U D E), ``outcome`` (0 4 8 12), ``_count``,
``_offset``. Results are newest first.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from sqlalchemy import and_, func, or_, select
from starlette.responses import Response

from hygie.api.deps import CurrentActor, RuntimeDep
from hygie.api.errors import FHIR_JSON
from hygie.errors import Forbidden, InvalidRequest, UnsupportedSearchParameter
from hygie.fhir.bundles import searchset
from hygie.fhir.search import DateClause
from hygie.fhir.searchparams import parse_date_range, split_prefix
from hygie.ledger.auditevent import _ALERT, _AUTH, _DATA, OUTCOMES, to_audit_event
from hygie.store.db import transaction
from hygie.store.repository import date_condition
from hygie.store.tables import audit_event

router = APIRouter(prefix="/fhir", tags=["audit"])
READERS = frozenset({"dpo", "security"})
_PARAMS = frozenset({"patient", "agent", "date", "action", "outcome", "_count", "_offset"})


def may_read_audit(actor: Any) -> bool:
    if actor.kind == "user":
        return actor.role in READERS
    if actor.kind == "client":
        return any(s.raw == "ledger/*.read" for s in actor.scopes)
    return actor.kind == "system"


def _action_condition(letter: str) -> Any:
    if letter not in ("C", "R", "U", "D", "E"):
        raise InvalidRequest("action is one of C R U D E")
    names = [a for a, (_sub, act) in _DATA.items() if act == letter]
    if letter == "E":
        names += sorted(_AUTH | _ALERT)
    return audit_event.c.action.in_(names)


def _outcome_condition(code: str) -> Any:
    integrity = audit_event.c.code == "integrity-failure"
    if code == "12":
        return integrity
    names = [o for o, c in OUTCOMES.items() if c == code]
    if not names:
        raise InvalidRequest("outcome is one of 0 4 8 12")
    cond = audit_event.c.outcome == names[0]
    return and_(cond, or_(audit_event.c.code.is_(None), ~integrity)) if code == "8" else cond


@router.get("/AuditEvent", summary="search the audit trail (DPO, security)")
def audit_search(request: Request, rt: RuntimeDep, actor: CurrentActor) -> Response:
    if not may_read_audit(actor):
        raise Forbidden("the audit trail is for the DPO and the security officer")
    s = rt.settings
    conds: list[Any] = [audit_event.c.tenant == s.tenant]
    count, offset = s.page_size_default, 0
    applied: list[tuple[str, str]] = []
    for key, value in request.query_params.multi_items():
        if key not in _PARAMS:
            raise UnsupportedSearchParameter(f"search parameter '{key}' is not supported "
                                             "for AuditEvent")
        if key == "_count":
            count = min(max(int(value) if value.isdigit() else -1, 0), s.page_size_max)
            if not value.isdigit():
                raise InvalidRequest("_count must be a whole number")
        elif key == "_offset":
            if not value.isdigit():
                raise InvalidRequest("_offset must be a whole number")
            offset = int(value)
            continue
        elif key == "patient":
            conds.append(audit_event.c.patient == value.removeprefix("Patient/"))
        elif key == "agent":
            conds.append(audit_event.c.actor == value)
        elif key == "action":
            conds.append(or_(*[_action_condition(v) for v in value.split(",")]))
        elif key == "outcome":
            conds.append(or_(*[_outcome_condition(v) for v in value.split(",")]))
        elif key == "date":
            prefix, raw = split_prefix(value)
            try:
                lo, hi = parse_date_range(raw)
            except InvalidRequest:
                raise InvalidRequest("date: not a valid FHIR date") from None
            at = audit_event.c.at  # an instant: the range [at, at + 1 µs)
            conds.append(date_condition(DateClause(prefix, lo, hi), at, at + 1,
                                        scale=1_000_000))
        applied.append((key, value))
    where = and_(*conds)
    with transaction(rt.engine, readonly=True) as conn:
        total = conn.execute(select(func.count()).select_from(audit_event).where(where)
                             ).scalar_one()
        rows = conn.execute(select(audit_event).where(where)
                            .order_by(audit_event.c.seq.desc()).limit(count).offset(offset)
                            ).all()
    base = str(request.base_url).rstrip("/") + "/fhir"
    entries = [(f"{base}/AuditEvent/{r.seq}", orjson.dumps(to_audit_event(r))) for r in rows]
    body = searchset(base=base, rtype="AuditEvent", entries=entries, total=int(total),
                     applied=applied, count=count, offset=offset)
    return Response(body, media_type=FHIR_JSON)
