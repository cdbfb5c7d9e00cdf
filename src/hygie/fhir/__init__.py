"""FHIR helpers on plain resource dicts: identifiers, search parameters, patient compartment."""
