"""The access policy: a pure function from (actor, action, target) to a decision.

It decides and does nothing else (no I/O), so the whole matrix is testable as a table.
Deny by default: anything not explicitly permitted is refused, with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from hygie.access.actor import Actor


@dataclass(frozen=True)
class Target:
    rtype: str
    rid: str | None = None
    patient: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # stable code, e.g. "scope-permits", "scope-missing"
    detail: str = ""


PERMIT = "permit"
INTERACTIONS = frozenset(
    {"create", "read", "vread", "update", "delete", "search", "history", "everything",
     "export"})


def decide(actor: Actor, action: str, target: Target) -> Decision:
    if action not in INTERACTIONS:
        return Decision(False, "unknown-action", f"'{action}' is not an interaction")
    if actor.kind == "system":
        # Operator commands run on the host with the keyring: they already hold everything.
        return Decision(True, "system-operator")
    if actor.kind == "client":
        for scope in actor.scopes:
            if scope.permits(target.rtype, action):
                return Decision(True, "scope-permits", scope.raw)
        return Decision(False, "scope-missing",
                        f"this client's scopes do not allow {action} on {target.rtype}")
    return Decision(False, "unknown-actor", "unknown kind of caller")
