"""Dependencies as named types: a route reads as its signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from hygie.access import sessions
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


SESSION_COOKIE = "hygie_session"


def presented_token(request: Request) -> str | None:
    """The access token of the request: ``Authorization: Bearer``, else the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    cookie = request.cookies.get(SESSION_COOKIE, "").strip()
    return cookie or None


def bearer_actor(request: Request, rt: RuntimeDep) -> Actor:
    """An API client (client-credentials token) or a signed-in person (access token).

    A person's session is checked on every request (revocation, idle timeout, absolute
    lifetime, account still active); its last-seen time is written at most every 30 s.
    """
    token = presented_token(request)
    if token is None:
        raise Unauthenticated("a bearer access token is required (POST /auth/token, "
                              "or sign in at POST /auth/login)")
    try:
        with transaction(rt.engine, readonly=True) as conn:
            try:
                return authenticate(conn, token)
            except Unauthenticated:
                person = sessions.authenticate(
                    conn=conn, tenant=rt.settings.tenant,
                    limits=sessions.AuthLimits.from_settings(rt.settings), access_token=token)
        if person.needs_touch:
            with transaction(rt.engine) as conn:
                sessions.touch(conn=conn, session_id=person.session_id)
        return person.actor
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
