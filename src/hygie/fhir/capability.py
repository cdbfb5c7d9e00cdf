"""The CapabilityStatement: what this server really supports, generated from the code's tables."""

from __future__ import annotations

from typing import Any

from hygie import __version__
from hygie.fhir.searchparams import params_for
from hygie.fhir.validation import resource_types

_COMMON = [
    {"name": "_id", "type": "token"},
    {"name": "_lastUpdated", "type": "date"},
]
_INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "create",
                 "search-type"]


def capability_statement(base: str) -> dict[str, Any]:
    resources = []
    rev: dict[str, list[str]] = {}
    for rtype in sorted(resource_types()):
        for p in params_for(rtype).values():
            if p.type == "reference":
                rev.setdefault(p.target or "*", []).append(f"{rtype}:{p.name}")
    for rtype in sorted(resource_types()):
        params = [*_COMMON] + [{"name": p.name, "type": p.type}
                               for p in params_for(rtype).values()]
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": c} for c in _INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchParam": params,
        }
        includes = [f"{rtype}:{p.name}" for p in params_for(rtype).values()
                    if p.type == "reference"]
        if includes:
            entry["searchInclude"] = includes
        revs = sorted(set(rev.get(rtype, []) + rev.get("*", [])))
        if revs:
            entry["searchRevInclude"] = revs
        if rtype == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/"
                                                 "Patient-everything"}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "Hygie", "version": __version__},
        "implementation": {"description": "Hygie encrypted FHIR R4 store", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": False,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"}],
                    "text": "OAuth2 client credentials (POST /auth/token), bearer tokens"}],
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "searchParam": [*_COMMON, {"name": "_count", "type": "number"},
                            {"name": "_sort", "type": "string"},
                            {"name": "_total", "type": "string"}],
        }],
    }
