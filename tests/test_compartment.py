"""Patient compartment membership (FHIR R4 CompartmentDefinition ``patient``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from hygie.fhir.compartment import (
    PATIENT_COMPARTMENT,
    compartment_paths,
    is_compartment_type,
    patient_of,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
SYNTHEA = "synthea-Jesus_Alvarez-subset.json"
JESUS_ID = "c19264dc-4d8e-488f-b6df-31a896089080"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def resolved_synthea() -> list[dict[str, Any]]:
    """The Synthea entries with ``urn:uuid`` references rewritten to ``Type/id``.

    This is what a transaction does before it stores the entries.
    """
    bundle = load(SYNTHEA)
    ids = {e["fullUrl"]: f'{e["resource"]["resourceType"]}/{e["resource"]["id"]}'
           for e in bundle["entry"]}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else fix(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [fix(e["resource"]) for e in bundle["entry"]]


@pytest.mark.parametrize(("name", "patient"), [
    ("Patient-f001.json", "f001"),
    ("Patient-glossy.json", "glossy"),
    ("Observation-f002.json", "f001"),
    ("Observation-bmi.json", "example"),
    ("Encounter-f203.json", "f201"),
    ("Condition-example.json", "example"),
    ("Condition-f201.json", "f201"),
    ("AllergyIntolerance-example.json", "example"),
    ("Consent-consent-example-basic.json", "f001"),
    ("DocumentReference-example.json", "xcda"),
    ("Communication-example.json", "example"),
    ("MedicationRequest-medrx0312.json", "pat1"),
    ("ServiceRequest-colonoscopy.json", "example"),
    ("Provenance-example-cwl.json", None),  # its target is a MolecularSequence
    ("Practitioner-example.json", None),
    ("Organization-1.json", None),
])
def test_real_examples(name: str, patient: str | None) -> None:
    assert patient_of(load(name)) == patient


def test_synthea_entries_after_reference_resolution() -> None:
    owners = {r["resourceType"]: patient_of(r) for r in resolved_synthea()}
    for rtype in ("Patient", "Encounter", "Condition", "Claim", "ExplanationOfBenefit",
                  "CarePlan", "Observation", "Immunization", "DiagnosticReport", "Procedure",
                  "MedicationRequest"):
        assert owners[rtype] == JESUS_ID, rtype
    assert owners["Organization"] is None and owners["Practitioner"] is None


def test_unresolved_urn_uuid_references_do_not_count() -> None:
    entries = [e["resource"] for e in load(SYNTHEA)["entry"]]
    assert all(patient_of(r) is None for r in entries if r["resourceType"] != "Patient")


def test_patient_without_valid_id() -> None:
    assert patient_of({"resourceType": "Patient"}) is None
    assert patient_of({"resourceType": "Patient", "id": "bad id"}) is None


def test_order_of_paths() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": "Group/g1"},
           "performer": [{"reference": "Practitioner/d"}, {"reference": "Patient/p2"}]}
    assert patient_of(obs) == "p2"
    obs["subject"] = {"reference": "Patient/p1"}
    assert patient_of(obs) == "p1"


@pytest.mark.parametrize(("ref", "expected"), [
    ("Patient/p1", "p1"),
    ("https://ehr.example.org/fhir/Patient/p1", "p1"),
    ("Patient/p1/_history/4", "p1"),
    ("urn:uuid:c19264dc-4d8e-488f-b6df-31a896089080", None),
    ("#contained-patient", None),
    ("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|1", None),
    ("Patient/not valid", None),
    ("Group/p1", None),
    ("p1", None),
])
def test_reference_forms(ref: str, expected: str | None) -> None:
    body = {"resourceType": "Immunization", "patient": {"reference": ref}}
    assert patient_of(body) == expected


@pytest.mark.parametrize(("body", "expected"), [
    ({"resourceType": "CareTeam", "participant": [{"member": {"reference": "Practitioner/a"}},
                                                  {"member": {"reference": "Patient/m"}}]}, "m"),
    ({"resourceType": "AllergyIntolerance", "recorder": {"reference": "Patient/r"}}, "r"),
    ({"resourceType": "Claim", "patient": {"reference": "Patient/c"}}, "c"),
    ({"resourceType": "ExplanationOfBenefit", "payee": {"party": {"reference": "Patient/e"}}},
     "e"),
    ({"resourceType": "Communication", "recipient": [{"reference": "Patient/x"}]}, "x"),
    ({"resourceType": "Procedure", "performer": [{"actor": {"reference": "Patient/pp"}}]}, "pp"),
    ({"resourceType": "Provenance", "target": [{"reference": "Observation/o"},
                                               {"reference": "Patient/t"}]}, "t"),
    ({"resourceType": "Goal", "subject": {"reference": "Patient/g"}}, "g"),
    ({"resourceType": "ImagingStudy", "subject": {"reference": "Patient/i"}}, "i"),
    ({"resourceType": "Encounter", "subject": {"display": "no reference"}}, None),
    ({"resourceType": "Group", "member": [{"entity": {"reference": "Patient/a"}}]}, None),
    ({"resourceType": "Medication", "id": "m"}, None),
    ({"resourceType": "Location", "id": "l"}, None),
    ({"id": "no-type"}, None),
])
def test_paths(body: dict[str, Any], expected: str | None) -> None:
    assert patient_of(body) == expected


def test_is_compartment_type() -> None:
    for rtype in ("Patient", "Observation", "Encounter", "Claim", "ExplanationOfBenefit",
                  "Immunization", "CarePlan", "Goal", "ImagingStudy", "DocumentReference",
                  "Consent", "Communication", "CareTeam", "MedicationRequest",
                  "AllergyIntolerance", "Provenance", "Condition", "Procedure",
                  "DiagnosticReport", "ServiceRequest"):
        assert is_compartment_type(rtype), rtype
    for rtype in ("Organization", "Practitioner", "Medication", "Location", "Group",
                  "Binary", "ValueSet", "NoSuchType"):
        assert not is_compartment_type(rtype), rtype


def test_compartment_paths_exist_in_the_fhir_models() -> None:
    """Every path segment names an element of the R4B model classes."""
    assert len(PATIENT_COMPARTMENT) > 60
    for rtype in PATIENT_COMPARTMENT:
        paths = compartment_paths(rtype)
        assert paths and is_compartment_type(rtype), rtype
        for path in paths:
            cls: Any = get_fhir_model_class(rtype)
            for seg in path.split("."):
                assert seg in cls.model_fields, f"{rtype}.{path}"
                found = re.findall(r"(\w+)Type\b", str(cls.model_fields[seg].annotation))
                cls = get_fhir_model_class(found[0]) if found else None
