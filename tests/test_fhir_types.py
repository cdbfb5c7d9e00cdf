"""The static list of resource types matches what the FHIR models define."""

from hygie.fhir.resource_types import RESOURCE_TYPES
from hygie.fhir.validation import model_resource_types


def test_static_resource_types_match_the_models() -> None:
    assert model_resource_types() == RESOURCE_TYPES
    assert {"Patient", "Observation", "Bundle", "Binary"} <= RESOURCE_TYPES
    assert not {"HumanName", "Resource", "DomainResource", "Element"} & RESOURCE_TYPES
