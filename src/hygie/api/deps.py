"""Dependencies as named types: a route reads as its signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from hygie.access.actor import Actor, RequestContext
from hygie.access.clients import authenticate
from hygie.api.state import Runtime
from hygie.errors import (
    AuditUnavailable,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from hygie.store.db import transaction

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def context(request: Request) -> RequestContext:
    client = request.client
    return RequestContext(request_id=request.scope.get("state", {}).get("request_id"),
                          client_address=client.host if client else None)


ContextDep = Annotated[RequestContext, Depends(context)]


def bearer_actor(request: Request, rt: RuntimeDep) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer access token is required (POST /auth/token)")
    try:
        with transaction(rt.engine, readonly=True) as conn:
            return authenticate(conn, token.strip())
    except SQLAlchemyError:
        raise AuditUnavailable("the database is not available") from None


CurrentActor = Annotated[Actor, Depends(bearer_actor)]


async def fhir_body(request: Request, rt: RuntimeDep) -> bytes:
    """The request body, checked for media type and size (415, 413)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _JSON_TYPES:
        raise UnsupportedMediaType("send FHIR JSON (Content-Type: application/fhir+json)")
    limit = rt.settings.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


FhirBody = Annotated[bytes, Depends(fhir_body)]


def lenient(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(","))
