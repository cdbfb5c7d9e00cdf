"""One error hierarchy for Hygie.

Every error carries a stable ``code`` (used in OperationOutcome ``details.coding`` and in CLI
messages), an HTTP status for the API, and an operator-facing message. Messages never contain
health data or secrets: callers pass identifiers of *things* (resource types, parameter names),
never values taken from a patient record.
"""

from __future__ import annotations

from typing import ClassVar


class HygieError(Exception):
    """Base class. ``code`` is stable and documented in docs/api.md."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    issue_code: ClassVar[str] = "exception"  # FHIR IssueType

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(HygieError):
    code = "invalid-request"
    status = 400
    issue_code = "invalid"


class InvalidResource(HygieError):
    code = "invalid-resource"
    status = 400
    issue_code = "invalid"


class InvalidIdentifier(InvalidResource):
    code = "invalid-identifier"


class WeakPassword(InvalidRequest):
    """A password refused by the password rules (the message never contains it)."""

    code = "weak-password"


class UnsupportedSearchParameter(HygieError):
    code = "unsupported-search-parameter"
    status = 400
    issue_code = "not-supported"


class Unauthenticated(HygieError):
    code = "unauthenticated"
    status = 401
    issue_code = "login"


class Forbidden(HygieError):
    code = "forbidden"
    status = 403
    issue_code = "forbidden"


class NotFound(HygieError):
    code = "not-found"
    status = 404
    issue_code = "not-found"


class UnknownResourceType(NotFound):
    code = "unknown-resource-type"


class MethodNotAllowed(HygieError):
    code = "method-not-allowed"
    status = 405
    issue_code = "not-supported"


class Gone(HygieError):
    code = "deleted"
    status = 410
    issue_code = "deleted"


class Erased(Gone):
    """The patient's data key was destroyed (crypto-shredding)."""

    code = "erased"


class Conflict(HygieError):
    code = "conflict"
    status = 409
    issue_code = "conflict"


class PreconditionFailed(HygieError):
    code = "version-conflict"
    status = 412
    issue_code = "conflict"


class TooManyAttempts(HygieError):
    """Sign-in refused for a while after repeated failures (per account and per address)."""

    code = "too-many-attempts"
    status = 429
    issue_code = "throttled"

    def __init__(self, message: str, *, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(HygieError):
    code = "too-large"
    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(HygieError):
    code = "unsupported-media-type"
    status = 415
    issue_code = "not-supported"


class IntegrityFailure(HygieError):
    """Stored data failed authentication: it was altered, swapped or damaged.

    HTTP 500 because the server's data is damaged, not the request.
    """

    code = "integrity-failure"
    status = 500
    issue_code = "exception"


class AuditUnavailable(HygieError):
    """The audit trail could not record the access: the gate fails closed."""

    code = "audit-unavailable"
    status = 503
    issue_code = "transient"


class KeyFailure(HygieError):
    """A key is missing, wrong, or cannot be used."""

    code = "key-error"
    status = 500
    issue_code = "security"


class ConfigError(HygieError):
    code = "config-error"
    status = 500
    issue_code = "exception"


class DataDirError(HygieError):
    code = "data-dir-error"
    status = 500
    issue_code = "exception"
