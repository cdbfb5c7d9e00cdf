"""Who is asking: the actor of a request, and the context it comes with."""

from __future__ import annotations

from dataclasses import dataclass, field

from hygie.access.scopes import Scope, parse_scopes

ROLES = ("practitioner", "secretary", "patient", "dpo", "security", "admin")


@dataclass(frozen=True)
class Actor:
    """An authenticated caller.

    ``kind``: ``client`` (OAuth2 client credentials), ``user`` (a person signed in with password
    and second factor; ``role`` is one of :data:`ROLES`), ``system`` (local CLI operations run
    by the operator on the host: init, import, export, key management).
    A practitioner user is linked to a Practitioner resource (``practitioner_id``), a patient
    user to a Patient resource (``patient_id``).
    """

    kind: str
    id: str
    scopes: tuple[Scope, ...] = ()
    role: str | None = None
    practitioner_id: str | None = None
    patient_id: str | None = None
    session_id: str | None = None
    username: str | None = None

    @classmethod
    def user(cls, user_id: str, role: str, *, username: str | None = None,
             practitioner_id: str | None = None, patient_id: str | None = None,
             session_id: str | None = None) -> Actor:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return cls("user", user_id, (), role, practitioner_id, patient_id, session_id, username)

    @classmethod
    def client(cls, client_id: str, scope_text: str) -> Actor:
        return cls("client", client_id, parse_scopes(scope_text))

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", f"cli:{name}", parse_scopes("system/*.*"))

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}" if self.kind != "system" else self.id

    def __repr__(self) -> str:  # never the session id
        return f"Actor({self.kind}:{self.id}, role={self.role})"


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    client_address: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
