"""SMART-on-FHIR style system scopes.

Accepted forms (v1 and v2): ``system/Patient.read``, ``system/*.write``, ``system/*.*``,
``system/Observation.rs`` (v2 letters c r u d s). Anything else is refused when a client is
created, so a typo never silently grants less (or more) than meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hygie.errors import InvalidRequest

# Interaction → SMART v2 permission letter.
INTERACTION_LETTER = {
    "create": "c", "read": "r", "vread": "r", "history": "r", "everything": "r", "export": "r",
    "update": "u", "delete": "d", "search": "s",
}
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(system)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)$")
_EXTRA = re.compile(r"^[a-z]+/\*\.read$")  # e.g. ledger/*.read (other domains' scopes)


@dataclass(frozen=True)
class Scope:
    context: str
    rtype: str  # "*" or a resource type
    letters: str  # subset of "cruds"
    raw: str

    def permits(self, rtype: str, interaction: str) -> bool:
        if self.context != "system":
            return False
        letter = INTERACTION_LETTER.get(interaction)
        if letter is None:
            return False
        return (self.rtype in ("*", rtype)) and letter in self.letters


def parse_scopes(text: str) -> tuple[Scope, ...]:
    scopes: list[Scope] = []
    for raw in text.split():
        m = _SCOPE.match(raw)
        if m:
            ctx, rtype, perm = m.groups()
            letters = _V1.get(perm, perm)
            if not letters:
                raise InvalidRequest(f"scope '{raw}' grants nothing")
            scopes.append(Scope(ctx, rtype, letters, raw))
        elif _EXTRA.match(raw):
            scopes.append(Scope(raw.split("/")[0], "*", "", raw))
        else:
            raise InvalidRequest(f"scope '{raw}' is not a supported scope "
                                 "(expected e.g. system/*.* or system/Patient.read)")
    if not scopes:
        raise InvalidRequest("at least one scope is needed")
    return tuple(scopes)


def normalize_scopes(text: str) -> str:
    return " ".join(s.raw for s in parse_scopes(text))
