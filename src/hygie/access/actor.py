"""Who is asking: the actor of a request, and the context it comes with."""

from __future__ import annotations

from dataclasses import dataclass, field

from hygie.access.scopes import Scope, parse_scopes


@dataclass(frozen=True)
class Actor:
    """An authenticated caller.

    ``kind``: ``client`` (OAuth2 client credentials), ``system`` (local CLI operations run by
    the operator on the host: init, import, export, key management).
    """

    kind: str
    id: str
    scopes: tuple[Scope, ...] = ()

    @classmethod
    def client(cls, client_id: str, scope_text: str) -> Actor:
        return cls("client", client_id, parse_scopes(scope_text))

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", f"cli:{name}", parse_scopes("system/*.*"))

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}" if self.kind != "system" else self.id


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    client_address: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
