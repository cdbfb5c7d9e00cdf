"""HTTP interface: OAuth2 token endpoint and the FHIR R4 REST API."""
