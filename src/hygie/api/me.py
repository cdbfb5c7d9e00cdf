"""What a signed-in person sees about themself: the access history of their record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from hygie.api.context import GateContext
from hygie.api.deps import CurrentActor, RuntimeDep
from hygie.errors import Forbidden

router = APIRouter(prefix="/me", tags=["me"])


@router.get("/access-history", summary="who accessed my record (patients)")
def access_history(rt: RuntimeDep, actor: CurrentActor, ctx: GateContext,
                   limit: int = 200) -> dict[str, Any]:
    if actor.kind != "user" or actor.role != "patient" or not actor.patient_id:
        raise Forbidden("the access history is shown to the patient whose record it is")
    with rt.gate.open(actor, ctx) as door:
        items = door.access_history(actor.patient_id, limit=max(1, min(limit, 1000)))
    for item in items:
        item["at"] = datetime.fromtimestamp(item["at"] / 1e6, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    return {"accesses": items}
