"""Parsing and validation of incoming FHIR resources (``fhir.resources``, R4B models).

The R4B models accept FHIR R4 (4.0.1) resources — every official R4 example validates — and
Hygie serves ``fhirVersion`` 4.0.1. Error messages name elements and rules, never the values
sent (they may be health data).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from hygie.errors import InvalidRequest, InvalidResource, UnknownResourceType
from hygie.fhir.identifiers import validate_identifiers
from hygie.fhir.resource_types import RESOURCE_TYPES

_MAX_MESSAGES = 5


@functools.cache
def _model(rtype: str) -> Any:
    try:
        return get_fhir_model_class(rtype)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def resource_types() -> frozenset[str]:
    """Every resource type Hygie accepts."""
    return RESOURCE_TYPES


def model_resource_types() -> frozenset[str]:
    """Every resource type the models define (imports all of them: for tests)."""
    from fhir.resources.R4B import fhirtypes

    out = set()
    for name in dir(fhirtypes):
        if not (name.endswith("Type") and name[0].isupper()):
            continue
        if name[:-4] in ("Resource", "DomainResource"):  # abstract bases
            continue
        model = _model(name[:-4])
        if model is not None and (name[:-4] in ("Bundle", "Binary", "Parameters") or any(
                base.__name__ == "DomainResource" for base in model.__mro__)):
            out.add(name[:-4])
    return frozenset(out)


WARM_TYPES = ("Patient", "Practitioner", "PractitionerRole", "Organization", "Encounter",
              "Observation", "Condition", "Procedure", "MedicationRequest",
              "AllergyIntolerance", "Immunization", "DiagnosticReport", "DocumentReference",
              "ServiceRequest", "Communication", "Consent", "CareTeam", "Appointment",
              "Claim", "ExplanationOfBenefit", "CarePlan", "Goal", "Binary", "Bundle")


def warm_up() -> None:
    """Build the validators of the common types now, so their first request does not pay for
    it (other types load on first use)."""
    for rtype in WARM_TYPES:
        # Required elements are missing: the validator is built all the same.
        with contextlib.suppress(ValidationError):
            _model(rtype).model_validate({"resourceType": rtype})


def is_resource_type(name: str) -> bool:
    return name in resource_types()


def require_resource_type(name: str) -> str:
    if not is_resource_type(name):
        raise UnknownResourceType("unknown resource type")
    return name


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None


def parse_resource(raw: bytes, rtype: str | None = None) -> dict[str, Any]:
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        raise InvalidResource("the request body is not a FHIR resource (a JSON object)")
    if rtype is not None:
        found = doc.get("resourceType")
        if found != rtype:
            raise InvalidResource(f"resourceType must be {rtype}")
    return doc


def validate_resource(body: dict[str, Any], rtype: str, *, rid: str | None = None) -> None:
    """Raise InvalidResource (400) unless ``body`` is a valid ``rtype`` resource."""
    if body.get("resourceType") != rtype:
        raise InvalidResource(f"resourceType must be {rtype}")
    if rid is not None and body.get("id") not in (None, rid):
        raise InvalidResource("the resource id does not match the id in the URL")
    if not is_resource_type(rtype):
        raise UnknownResourceType("unknown resource type")
    model = _model(rtype)
    try:
        model.model_validate(body)
    except ValidationError as exc:
        raise InvalidResource(_describe(rtype, exc)) from None
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidResource(f"the {rtype} is not valid FHIR R4") from None
    validate_identifiers(body)


def _describe(rtype: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[
            :_MAX_MESSAGES]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{rtype}.{loc}: {msg}" if loc else f"{rtype}: {msg}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "invalid resource: " + "; ".join(parts)


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)
