"""The patient compartment: which patient a resource belongs to.

The table follows FHIR R4's CompartmentDefinition ``patient``
(http://hl7.org/fhir/R4/compartmentdefinition-patient.html): for each resource type, the
search parameters that link it to a patient, written here as the element paths those
parameters index, the main subject first. A resource belongs to the patient of the first
``Patient/<id>`` reference found along those paths (relative, or an absolute URL ending so).

``Group`` (``member``) is left out on purpose: a group lists many patients, and sealing it
under one member's key would tie its fate to that member's erasure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hygie.fhir.searchparams import parse_reference, walk

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# resource type -> element paths (dotted) of the R4 patient-compartment parameters.
_PATHS: dict[str, tuple[str, ...]] = {
    "Account": ("subject",),
    "AdverseEvent": ("subject",),
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "Appointment": ("participant.actor",),
    "AppointmentResponse": ("actor",),
    "AuditEvent": ("agent.who", "entity.what"),
    "Basic": ("subject", "author"),
    "BodyStructure": ("patient",),
    "CarePlan": ("subject", "activity.detail.performer"),
    "CareTeam": ("subject", "participant.member"),
    "ChargeItem": ("subject",),
    "Claim": ("patient", "payee.party"),
    "ClaimResponse": ("patient",),
    "ClinicalImpression": ("subject",),
    "Communication": ("subject", "sender", "recipient"),
    "CommunicationRequest": ("subject", "sender", "recipient", "requester"),
    "Composition": ("subject", "author", "attester.party"),
    "Condition": ("subject", "asserter"),
    "Consent": ("patient",),
    "Coverage": ("beneficiary", "subscriber", "policyHolder", "payor"),
    "CoverageEligibilityRequest": ("patient",),
    "CoverageEligibilityResponse": ("patient",),
    "DetectedIssue": ("patient",),
    "DeviceRequest": ("subject", "performer"),
    "DeviceUseStatement": ("subject",),
    "DiagnosticReport": ("subject",),
    "DocumentManifest": ("subject", "author", "recipient"),
    "DocumentReference": ("subject", "author"),
    "Encounter": ("subject",),
    "EnrollmentRequest": ("candidate",),
    "EpisodeOfCare": ("patient",),
    "ExplanationOfBenefit": ("patient", "payee.party"),
    "FamilyMemberHistory": ("patient",),
    "Flag": ("subject",),
    "Goal": ("subject",),
    "ImagingStudy": ("subject",),
    "Immunization": ("patient",),
    "ImmunizationEvaluation": ("patient",),
    "ImmunizationRecommendation": ("patient",),
    "Invoice": ("subject", "recipient"),
    "List": ("subject", "source"),
    "MeasureReport": ("subject",),
    "Media": ("subject",),
    "MedicationAdministration": ("subject", "performer.actor"),
    "MedicationDispense": ("subject", "receiver"),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "MolecularSequence": ("patient",),
    "NutritionOrder": ("patient",),
    "Observation": ("subject", "performer"),
    "Person": ("link.target",),
    "Procedure": ("subject", "performer.actor"),
    "Provenance": ("target",),
    "QuestionnaireResponse": ("subject", "author"),
    "RelatedPerson": ("patient",),
    "RequestGroup": ("subject", "action.participant"),
    "ResearchSubject": ("individual",),
    "RiskAssessment": ("subject",),
    "Schedule": ("actor",),
    "ServiceRequest": ("subject", "performer"),
    "Specimen": ("subject",),
    "SupplyDelivery": ("patient",),
    "SupplyRequest": ("requester",),
    "VisionPrescription": ("patient",),
}

PATIENT_COMPARTMENT: Mapping[str, tuple[str, ...]] = MappingProxyType(_PATHS)

_SPLIT_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    rtype: tuple(tuple(p.split(".")) for p in paths) for rtype, paths in _PATHS.items()
}


def is_compartment_type(resource_type: str) -> bool:
    """True if resources of this type can belong to a patient's compartment."""
    return resource_type == "Patient" or resource_type in _SPLIT_PATHS


def compartment_paths(resource_type: str) -> tuple[str, ...]:
    """The element paths that link ``resource_type`` to a patient (empty if none)."""
    return _PATHS.get(resource_type, ())


def patient_of(resource: dict[str, Any]) -> str | None:
    """Id of the patient whose compartment holds ``resource``, or None.

    A Patient is in its own compartment (None if it has no valid id yet). Other types: the
    first ``Patient/<id>`` reference along the compartment paths of their type.
    """
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and _ID_RE.fullmatch(rid) else None
    paths = _SPLIT_PATHS.get(rtype) if isinstance(rtype, str) else None
    if paths is None:
        return None
    for path in paths:
        for ref in walk(resource, path):
            if isinstance(ref, dict):
                target = parse_reference(ref.get("reference"))
                if target is not None and target.startswith("Patient/"):
                    return target[8:]
    return None
