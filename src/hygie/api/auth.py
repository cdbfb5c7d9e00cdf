"""OAuth2 token endpoint (client credentials, HTTP Basic client authentication)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hygie.access.clients import issue_token
from hygie.api.deps import ContextDep, RuntimeDep
from hygie.errors import InvalidRequest, Unauthenticated
from hygie.gate import Gate
from hygie.ledger import audit
from hygie.ledger.audit import AuditEntry
from hygie.store.db import transaction

router = APIRouter(prefix="/auth", tags=["auth"])


def _oauth_error(status: int, error: str, description: str) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="hygie"'} if status == 401 else {}
    return Response(orjson.dumps({"error": error, "error_description": description}),
                    status_code=status, media_type="application/json",
                    headers={**headers, "Cache-Control": "no-store", "Pragma": "no-cache"})


def _basic(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise Unauthenticated("HTTP Basic client authentication is required")
    try:
        user, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    if not sep or not user:
        raise Unauthenticated("malformed Basic credentials")
    from urllib.parse import unquote

    return unquote(user), unquote(secret)


@router.post("/token", summary="OAuth2 client-credentials token")
async def token(request: Request, rt: RuntimeDep, ctx: ContextDep,
                grant_type: Annotated[str, Form()] = "",
                scope: Annotated[str | None, Form()] = None) -> Response:
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type",
                            "only grant_type=client_credentials is supported")
    try:
        client_id, secret = _basic(request)
    except Unauthenticated as exc:
        return _oauth_error(401, "invalid_client", exc.message)

    def work() -> Response:
        gate: Gate = rt.gate
        entry = AuditEntry(actor=f"client:{client_id[:64]}", actor_kind="client",
                           action="token", outcome=audit.SUCCESS,
                           request_id=ctx.request_id, client_address=ctx.client_address)
        try:
            with transaction(rt.engine) as conn:
                issued = issue_token(conn, tenant=rt.settings.tenant, client_id=client_id,
                                     secret=secret, ttl=rt.settings.token_ttl_seconds,
                                     requested_scope=scope)
                audit.append(conn, rt.settings.tenant, [entry])
        except Unauthenticated as exc:
            gate.record([AuditEntry(**{**entry.__dict__, "outcome": audit.DENIED,
                                       "code": exc.code})])
            return _oauth_error(401, "invalid_client", exc.message)
        except InvalidRequest as exc:
            return _oauth_error(400, "invalid_scope", exc.message)
        body = {"access_token": issued.access_token, "token_type": "Bearer",
                "expires_in": issued.expires_in, "scope": issued.scope}
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return await run_in_threadpool(work)
