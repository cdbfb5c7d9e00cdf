"""The request context handed to the gate: request id, client address, break-glass reason."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from hygie.access.actor import RequestContext

BREAK_GLASS_HEADER = "x-break-glass"


def gate_context(request: Request) -> RequestContext:
    client = request.client
    extra: dict[str, str] = {}
    reason = request.headers.get(BREAK_GLASS_HEADER)
    if reason is not None:
        # HTTP headers are Latin-1: clients percent-encode a reason with other characters.
        extra["break_glass"] = unquote(reason).strip()
    return RequestContext(request_id=request.scope.get("state", {}).get("request_id"),
                          client_address=client.host if client else None, extra=extra)


GateContext = Annotated[RequestContext, Depends(gate_context)]
