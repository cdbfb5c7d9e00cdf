"""API clients (OAuth2 client credentials) and their bearer tokens.

Client secrets are stored as argon2id hashes; access tokens are 256-bit random strings stored as
SHA-256 digests. A token is checked against its client on every request, so revoking a client
stops its tokens at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from hygie.access.actor import Actor
from hygie.access.scopes import normalize_scopes, parse_scopes
from hygie.crypto import hash_secret, new_token, token_digest, verify_secret
from hygie.errors import InvalidRequest, NotFound, Unauthenticated
from hygie.store.db import now_us
from hygie.store.tables import access_token, api_client

CLIENT_PREFIX = "hyg_"


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    name: str
    scopes: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


def create_client(conn: Connection, *, tenant: str, name: str, scopes: str) -> tuple[str, str]:
    """Register a client; returns (client_id, client_secret). The secret is shown only once."""
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidRequest("a client name is 1 to 128 characters")
    scope_text = normalize_scopes(scopes)
    client_id = CLIENT_PREFIX + new_token(12)
    secret = new_token(32)
    conn.execute(api_client.insert().values(
        client_id=client_id, tenant=tenant, name=name, secret_hash=hash_secret(secret),
        scopes=scope_text, created_at=now_us(), revoked_at=None))
    return client_id, secret


def list_clients(conn: Connection, *, tenant: str) -> list[ClientInfo]:
    rows = conn.execute(select(api_client).where(api_client.c.tenant == tenant)
                        .order_by(api_client.c.created_at)).all()
    return [ClientInfo(r.client_id, r.name, r.scopes, r.created_at, r.revoked_at) for r in rows]


def revoke_client(conn: Connection, *, tenant: str, client_id: str) -> None:
    result = conn.execute(update(api_client).where(
        api_client.c.tenant == tenant, api_client.c.client_id == client_id,
        api_client.c.revoked_at.is_(None)).values(revoked_at=now_us()))
    if not result.rowcount:
        raise NotFound("no active client with this id")
    conn.execute(delete(access_token).where(access_token.c.client_id == client_id))


def issue_token(conn: Connection, *, tenant: str, client_id: str, secret: str, ttl: int,
                requested_scope: str | None = None) -> IssuedToken:
    """Client-credentials grant. Unknown client and wrong secret cost and answer the same."""
    row = conn.execute(select(api_client).where(
        api_client.c.tenant == tenant, api_client.c.client_id == client_id)).first()
    ok = verify_secret(row.secret_hash if row else None, secret)
    if not ok or row is None or row.revoked_at is not None:
        raise Unauthenticated("invalid client credentials")
    granted = row.scopes
    if requested_scope:
        allowed = set(row.scopes.split())
        wanted = normalize_scopes(requested_scope).split()
        if not set(wanted) <= allowed:
            raise InvalidRequest("the requested scope exceeds what this client was granted")
        granted = " ".join(wanted)
    token = new_token(32)
    conn.execute(access_token.insert().values(
        digest=token_digest(token), client_id=client_id, scopes=granted,
        expires_at=now_us() + ttl * 1_000_000))
    return IssuedToken(token, ttl, granted)


def authenticate(conn: Connection, token: str) -> Actor:
    """The actor behind a bearer token, or Unauthenticated."""
    row = conn.execute(
        select(access_token.c.client_id, access_token.c.scopes, access_token.c.expires_at,
               api_client.c.revoked_at)
        .join(api_client, api_client.c.client_id == access_token.c.client_id)
        .where(access_token.c.digest == token_digest(token))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= now_us():
        raise Unauthenticated("the access token is invalid, expired or revoked")
    return Actor("client", row.client_id, parse_scopes(row.scopes))


def purge_expired(conn: Connection) -> int:
    return conn.execute(delete(access_token).where(access_token.c.expires_at <= now_us())
                        ).rowcount or 0
