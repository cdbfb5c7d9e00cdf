"""Security officer and DPO views: alerts (break-glass, and later the detection rules)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from hygie.api.deps import CurrentActor, RuntimeDep
from hygie.errors import Forbidden
from hygie.store.db import transaction
from hygie.store.tables import security_alert

router = APIRouter(prefix="/security", tags=["security"])
ALERT_ROLES = frozenset({"security", "dpo"})


def _when(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()


@router.get("/alerts", summary="security alerts (security officer, DPO)")
def alerts(rt: RuntimeDep, actor: CurrentActor, limit: int = 100) -> dict[str, Any]:
    if actor.kind != "user" or actor.role not in ALERT_ROLES:
        raise Forbidden("alerts are for the security officer and the DPO")
    limit = max(1, min(limit, 1000))
    with transaction(rt.engine, readonly=True) as conn:
        rows = conn.execute(select(security_alert).where(
            security_alert.c.tenant == rt.settings.tenant)
            .order_by(security_alert.c.id.desc()).limit(limit)).all()
    return {"alerts": [{"id": r.id, "at": _when(r.at), "kind": r.kind, "actor": r.actor,
                        "patient": r.patient, "ref": r.ref,
                        "acknowledged_at": _when(r.acknowledged_at)} for r in rows]}
