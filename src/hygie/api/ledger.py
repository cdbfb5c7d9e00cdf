"""The ledger API (docs/ledger.md): signed checkpoints, entries, inclusion and consistency proofs.

For the DPO and security roles and for API clients with the ``ledger/*.read`` scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse

from hygie.access.actor import Actor
from hygie.api.audit import may_read_audit
from hygie.api.deps import CurrentActor, RuntimeDep
from hygie.errors import Forbidden

MAX_ENTRIES = 1000


def ledger_reader(actor: CurrentActor) -> Actor:
    if not may_read_audit(actor):
        raise Forbidden("the ledger is for the DPO, the security officer and clients with "
                        "the ledger/*.read scope")
    return actor


router = APIRouter(prefix="/ledger", tags=["ledger"], dependencies=[Depends(ledger_reader)])
Index = Annotated[int, Query(ge=0)]


@router.get("/checkpoint", response_class=PlainTextResponse, summary="latest signed tree head")
async def checkpoint(rt: RuntimeDep) -> PlainTextResponse:
    note = await run_in_threadpool(rt.ledger.checkpoint)  # signs a fresh one if it grew
    return PlainTextResponse(note, media_type="text/plain; charset=utf-8")


@router.get("/key", summary="the ledger's verifier key (signed-note form)")
def key(rt: RuntimeDep) -> dict[str, str]:
    return {"origin": rt.ledger.origin, "verifier_key": rt.ledger.signer.verifier_key()}


@router.get("/entries", summary="leaf bytes (base64) for [start, end), at most 1000")
def entries(rt: RuntimeDep, start: Index, end: Index) -> dict[str, Any]:
    end = min(end, start + MAX_ENTRIES)
    return {"entries": rt.ledger.entries(start, end)}


@router.get("/proof/inclusion", summary="inclusion proof of a leaf in a tree")
def inclusion(rt: RuntimeDep, index: Index, tree_size: Index) -> dict[str, Any]:
    return {"leaf_index": index, "tree_size": tree_size,
            "audit_path": rt.ledger.inclusion(index, tree_size)}


@router.get("/proof/consistency", summary="consistency proof between two tree sizes")
def consistency(rt: RuntimeDep, first: Index, second: Index) -> dict[str, Any]:
    return {"first": first, "second": second, "proof": rt.ledger.consistency(first, second)}
