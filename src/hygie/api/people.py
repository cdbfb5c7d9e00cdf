"""People's sign-in routes: activation, login with a second factor, refresh, logout, session.

Adapters only: the work is done by ``access.accounts`` and ``access.sessions`` in one
transaction per request. A refusal's trace (audit entry, failure counter) is committed, then
the error is raised (after the progressive delay, for failed sign-ins). Errors are FHIR
OperationOutcomes like everywhere else (docs/api.md); only ``POST /auth/token`` speaks OAuth2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hygie.access import accounts, sessions
from hygie.access.accounts import Refused
from hygie.api.deps import SESSION_COOKIE, ContextDep, CurrentActor, RuntimeDep
from hygie.api.errors import oo_response
from hygie.api.state import Runtime
from hygie.errors import Forbidden, TooManyAttempts
from hygie.fhir.bundles import error_outcome
from hygie.store.db import transaction

public = APIRouter(prefix="/auth", tags=["people"])
router = APIRouter(prefix="/auth", tags=["people"])
T = TypeVar("T")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActivateBody(_Body):
    activation_code: str = Field(max_length=128)
    password: str = Field(max_length=4096)


class ConfirmBody(_Body):
    activation_code: str = Field(max_length=128)
    totp_code: str = Field(max_length=16)


class LoginBody(_Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)


class MfaBody(_Body):
    mfa_challenge: str = Field(max_length=128)
    code: str = Field(max_length=64)


class RefreshBody(_Body):
    refresh_token: str = Field(max_length=128)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=_NO_STORE)


def _limits(rt: Runtime) -> sessions.AuthLimits:
    return sessions.AuthLimits.from_settings(rt.settings)


async def _run(rt: Runtime, work: Callable[[Any], T | Refused]) -> T:
    """Run ``work(conn)`` in one transaction; commit a refusal's trace, wait, then raise."""

    def in_thread() -> T | Refused:
        with transaction(rt.engine) as conn:
            return work(conn)

    result = await run_in_threadpool(in_thread)
    if isinstance(result, Refused):
        if result.delay:
            await asyncio.sleep(result.delay)
        raise result.error
    return result


def _too_many(exc: TooManyAttempts) -> Response:
    return oo_response(exc.status, error_outcome(exc),
                       {"Retry-After": str(exc.retry_after), **_NO_STORE})


def _secure(request: Request, rt: Runtime) -> bool:
    return rt.settings.cookie_secure == "always" or request.url.scheme == "https"


def _with_tokens(request: Request, rt: Runtime, tokens: sessions.Tokens) -> Response:
    response = _json({"access_token": tokens.access_token,
                      "refresh_token": tokens.refresh_token, "token_type": "Bearer",
                      "expires_in": tokens.expires_in})
    response.set_cookie(SESSION_COOKIE, tokens.access_token, path="/", httponly=True,
                        samesite="strict", secure=_secure(request, rt))
    return response


# -- activation ---------------------------------------------------------------------------------
@public.post("/activate", summary="activation, step 1: choose a password, receive the TOTP "
             "secret and recovery codes")
async def activate(body: ActivateBody, rt: RuntimeDep, ctx: ContextDep) -> Response:
    enrolment = await _run(rt, lambda conn: accounts.begin_activation(
        conn=conn, keys=rt.gate.keys, activation_code=body.activation_code,
        password=body.password, ctx=ctx))
    return _json({"totp_uri": enrolment.totp_uri,
                  "recovery_codes": list(enrolment.recovery_codes)})


@public.post("/activate/confirm", status_code=204,
             summary="activation, step 2: a first TOTP code activates the account")
async def activate_confirm(body: ConfirmBody, rt: RuntimeDep, ctx: ContextDep) -> Response:
    await _run(rt, lambda conn: accounts.confirm_activation(
        conn=conn, keys=rt.gate.keys, activation_code=body.activation_code,
        totp_code=body.totp_code, ctx=ctx))
    return Response(status_code=204, headers=_NO_STORE)


# -- sign-in ------------------------------------------------------------------------------------
@public.post("/login", summary="sign in, step 1: username and password → MFA challenge")
async def login(body: LoginBody, rt: RuntimeDep, ctx: ContextDep) -> Response:
    try:
        challenge = await _run(rt, lambda conn: sessions.login(
            conn=conn, tenant=rt.settings.tenant, limits=_limits(rt), username=body.username,
            password=body.password, ctx=ctx))
    except TooManyAttempts as exc:
        return _too_many(exc)
    return _json({"mfa_challenge": challenge.token})


@public.post("/mfa", summary="sign in, step 2: TOTP or recovery code → tokens and cookie")
async def mfa(body: MfaBody, request: Request, rt: RuntimeDep, ctx: ContextDep) -> Response:
    try:
        tokens = await _run(rt, lambda conn: sessions.complete_mfa(
            conn=conn, keys=rt.gate.keys, limits=_limits(rt), challenge=body.mfa_challenge,
            code=body.code, ctx=ctx))
    except TooManyAttempts as exc:
        return _too_many(exc)
    return _with_tokens(request, rt, tokens)


@public.post("/refresh", summary="rotate the refresh token (reuse revokes the session)")
async def refresh(body: RefreshBody, request: Request, rt: RuntimeDep,
                  ctx: ContextDep) -> Response:
    tokens = await _run(rt, lambda conn: sessions.refresh(
        conn=conn, tenant=rt.settings.tenant, limits=_limits(rt),
        refresh_token=body.refresh_token, ctx=ctx))
    return _with_tokens(request, rt, tokens)


# -- signed in ----------------------------------------------------------------------------------
@router.post("/logout", status_code=204, summary="end the session: its tokens stop at once")
async def logout(request: Request, rt: RuntimeDep, ctx: ContextDep,
                 actor: CurrentActor) -> Response:
    def work(conn: Any) -> None:
        sessions.logout(conn=conn, tenant=rt.settings.tenant, actor=actor, ctx=ctx)

    await _run(rt, work)
    response = Response(status_code=204, headers=_NO_STORE)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request, rt))
    return response


@router.get("/session", summary="who is signed in, and until when")
def session(rt: RuntimeDep, actor: CurrentActor) -> Response:
    if actor.kind != "user" or actor.session_id is None:
        raise Forbidden("API clients have no session; this is for people signed in")
    with transaction(rt.engine, readonly=True) as conn:
        expires = sessions.session_expiry(conn=conn, tenant=rt.settings.tenant,
                                          session_id=actor.session_id)
    return _json({"username": actor.username, "role": actor.role,
                  "expires_at": datetime.fromtimestamp(expires / 1e6, UTC).isoformat(
                      timespec="seconds").replace("+00:00", "Z"),
                  "idle_timeout_seconds": rt.settings.session_idle_seconds})
