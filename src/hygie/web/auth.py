"""Who is signed in to the web app: the session cookies, refreshed and checked on each request.

The web app signs people in with the same code as ``POST /auth/login`` and ``/auth/mfa``
(``access.sessions``) and keeps the tokens in cookies, all HttpOnly, SameSite=Strict and Secure
over https:

- ``hygie_session``: the access token (the same cookie the API accepts);
- ``hygie_refresh``: the refresh token, used when the access token has expired (the server
  rotates both; the idle timeout and the absolute lifetime still apply);
- ``hygie_mfa``: the single-use MFA challenge between the password and the code (5 minutes);
- ``hygie_pre``: a random pre-session id that the sign-in and activation forms' CSRF tokens are
  bound to;
- ``hygie_activation``: the activation code between the two steps of the first sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from hygie.access import sessions
from hygie.access.accounts import Refused
from hygie.access.actor import Actor, RequestContext
from hygie.api.deps import SESSION_COOKIE, runtime
from hygie.api.state import Runtime
from hygie.crypto import BlindIndexer, new_token
from hygie.errors import AuditUnavailable, Unauthenticated
from hygie.store.db import transaction
from hygie.web.security import csrf_token, csrf_valid

REFRESH_COOKIE = "hygie_refresh"
MFA_COOKIE = "hygie_mfa"
PRE_COOKIE = "hygie_pre"
ACTIVATION_COOKIE = "hygie_activation"
ALL_COOKIES = (SESSION_COOKIE, REFRESH_COOKIE, MFA_COOKIE, ACTIVATION_COOKIE)


class SignInRequired(Exception):
    """No live session: the page answers with a redirect to the sign-in page."""


@dataclass
class WebSession:
    actor: Actor
    session_id: str
    renewed: sessions.Tokens | None = None  # set when the tokens were rotated on this request


def context(request: Request) -> RequestContext:
    client = request.client
    return RequestContext(request_id=request.scope.get("state", {}).get("request_id"),
                          client_address=client.host if client else None)


def indexer(rt: Runtime) -> BlindIndexer:
    with transaction(rt.engine, readonly=True) as conn:
        return rt.gate.keys.indexer(conn)


def secure(request: Request, rt: Runtime) -> bool:
    return rt.settings.cookie_secure == "always" or request.url.scheme == "https"


def set_cookie(response: Response, request: Request, rt: Runtime, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="strict",
                        secure=secure(request, rt), max_age=max_age)


def clear_cookie(response: Response, request: Request, rt: Runtime, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict",
                           secure=secure(request, rt))


def set_tokens(response: Response, request: Request, rt: Runtime,
               tokens: sessions.Tokens) -> None:
    set_cookie(response, request, rt, SESSION_COOKIE, tokens.access_token)
    set_cookie(response, request, rt, REFRESH_COOKIE, tokens.refresh_token,
               max_age=rt.settings.session_absolute_seconds)


def current(request: Request) -> WebSession | None:
    """The live session of the request's cookies (rotating expired access tokens), or None."""
    rt = runtime(request)
    limits = sessions.AuthLimits.from_settings(rt.settings)
    tenant = rt.settings.tenant
    token = request.cookies.get(SESSION_COOKIE, "")
    person: sessions.Authenticated | None = None
    renewed: sessions.Tokens | None = None
    try:
        if token:
            try:
                with transaction(rt.engine, readonly=True) as conn:
                    person = sessions.authenticate(conn=conn, tenant=tenant, limits=limits,
                                                   access_token=token)
            except Unauthenticated:
                person = None
        if person is None:
            refresh = request.cookies.get(REFRESH_COOKIE, "")
            if not refresh or len(refresh) > 128:
                return None
            with transaction(rt.engine) as conn:  # a refusal's trace is committed too
                result = sessions.refresh(conn=conn, tenant=tenant, limits=limits,
                                          refresh_token=refresh, ctx=context(request))
            if isinstance(result, Refused):
                return None
            renewed = result
            with transaction(rt.engine, readonly=True) as conn:
                person = sessions.authenticate(conn=conn, tenant=tenant, limits=limits,
                                               access_token=renewed.access_token)
        elif person.needs_touch:
            with transaction(rt.engine) as conn:
                sessions.touch(conn=conn, session_id=person.session_id)
    except Unauthenticated:
        return None
    except SQLAlchemyError:
        raise AuditUnavailable("the database is not available") from None
    return WebSession(person.actor, person.session_id, renewed)


def required(request: Request) -> WebSession:
    """The signed-in person (a dependency of every ``/app`` page)."""
    found = current(request)
    if found is None:
        raise SignInRequired()
    request.state.web_session = found
    return found


# -- CSRF binding -------------------------------------------------------------------------------
def binding(request: Request) -> str | None:
    """What this request's CSRF token is bound to: the session, else the pre-session cookie."""
    ws: WebSession | None = getattr(request.state, "web_session", None)
    if ws is not None:
        return "session:" + ws.session_id
    pre = request.cookies.get(PRE_COOKIE, "")
    return "pre:" + pre if 20 <= len(pre) <= 128 else None


def ensure_pre(request: Request) -> str:
    """The pre-session id of this request (a new one if the browser has none)."""
    pre = request.cookies.get(PRE_COOKIE, "")
    if not 20 <= len(pre) <= 128:
        pre = getattr(request.state, "new_pre", None) or new_token(32)
        request.state.new_pre = pre
    return "pre:" + pre


def token_for(request: Request) -> str:
    rt = runtime(request)
    bound = binding(request) if getattr(request.state, "web_session", None) else ensure_pre(
        request)
    return csrf_token(indexer(rt), bound or "")


def check(request: Request, presented: str | None) -> bool:
    rt = runtime(request)
    return csrf_valid(indexer(rt), binding(request), presented)
