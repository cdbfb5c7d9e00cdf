"""Checks on the French national identifiers carried in ``Identifier`` elements.

* INS-NIR and INS-NIA (Identifiant National de Santé): 15 characters, 13 digits (the
  department at positions 6-7 may be ``2A`` or ``2B`` for Corsica) followed by a 2-digit
  control key equal to ``97 - (first 13 digits mod 97)``, where ``2A`` counts as ``19`` and
  ``2B`` as ``18``.
* RPPS (health professionals): exactly 11 digits (shape only).

Identifiers of any other system are not checked. Error messages name the system and the rule,
never the identifier value.
"""

from __future__ import annotations

import re
from typing import Any

from hygie.errors import InvalidIdentifier

INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIA_SYSTEM = "urn:oid:1.2.250.1.213.1.4.9"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"

# 5 digits, then 2 digits or 2A/2B (department of Corsica), then 6 digits, then the 2-digit key.
_NIR_RE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")
_RPPS_RE = re.compile(r"[0-9]{11}")
_CORSICA = {"2A": "19", "2B": "18"}

_INS_LABELS = {INS_NIR_SYSTEM: "INS-NIR", INS_NIA_SYSTEM: "INS-NIA"}

# Element names whose value is an Identifier (or a list of them).
_IDENTIFIER_KEYS = frozenset({"identifier", "masterIdentifier", "valueIdentifier"})


def nir_key_is_valid(value: str) -> bool:
    """True if ``value`` has the NIR/NIA shape and its control key is right."""
    if not isinstance(value, str) or _NIR_RE.fullmatch(value) is None:
        return False
    return nir_key(value[:13]) == int(value[13:])


def nir_key(first13: str) -> int:
    """The control key (1..97) of the first 13 characters of a NIR/NIA.

    ``2A``/``2B`` at positions 6-7 count as ``19``/``18``. Raises ``ValueError`` if
    ``first13`` does not have that shape.
    """
    if _NIR_RE.fullmatch(first13 + "00") is None:
        raise ValueError("expected 13 digits (2A/2B allowed at positions 6-7)")
    dept = first13[5:7]
    if dept in _CORSICA:
        first13 = first13[:5] + _CORSICA[dept] + first13[7:]
    return 97 - int(first13) % 97


def check_identifier(system: str | None, value: str | None) -> None:
    """Raise :class:`InvalidIdentifier` if ``value`` breaks the rule of ``system``.

    A missing value, or a system without a rule, is accepted.
    """
    if system is None or value is None:
        return
    label = _INS_LABELS.get(system)
    if label is not None:
        _check_ins(label, system, value)
    elif system == RPPS_SYSTEM and (not isinstance(value, str)
                                    or _RPPS_RE.fullmatch(value) is None):
        raise InvalidIdentifier(f"RPPS identifier ({RPPS_SYSTEM}): the value must be exactly "
                                "11 digits")


def _check_ins(label: str, system: str, value: object) -> None:
    if not isinstance(value, str) or _NIR_RE.fullmatch(value) is None:
        raise InvalidIdentifier(
            f"{label} identifier ({system}): the value must be exactly 15 characters, 13 digits "
            "(2A/2B allowed at positions 6-7 for Corsica) followed by a 2-digit key, with no "
            "spaces or other characters")
    if not nir_key_is_valid(value):
        raise InvalidIdentifier(
            f"{label} identifier ({system}): the control key is wrong "
            "(key = 97 - (first 13 digits mod 97), with 2A read as 19 and 2B as 18)")


def validate_identifiers(resource: dict[str, Any]) -> None:
    """Check every Identifier anywhere in ``resource`` (contained and nested ones included).

    Identifiers are the values of elements named ``identifier``, ``masterIdentifier`` or
    ``valueIdentifier`` (one Identifier or a list of them).
    """
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key in _IDENTIFIER_KEYS:
                    _check_element(child)
                if isinstance(child, dict | list):
                    stack.append(child)
        elif isinstance(node, list):
            stack.extend(c for c in node if isinstance(c, dict | list))


def _check_element(element: Any) -> None:
    items = element if isinstance(element, list) else (element,)
    for ident in items:
        if isinstance(ident, dict):
            system = ident.get("system")
            if isinstance(system, str):
                check_identifier(system, ident.get("value"))
