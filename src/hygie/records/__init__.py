"""Records domain: bundles (batch/transaction), import and export of FHIR data."""
