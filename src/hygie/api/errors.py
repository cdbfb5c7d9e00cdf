"""One place that turns every error into a FHIR OperationOutcome (never a traceback)."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from hygie.errors import HygieError
from hygie.fhir.bundles import error_outcome, outcome

FHIR_JSON = "application/fhir+json"
log = logging.getLogger("hygie.api")

_HTTP_CODES = {
    400: ("invalid", "invalid-request"), 401: ("login", "unauthenticated"),
    403: ("forbidden", "forbidden"), 404: ("not-found", "not-found"),
    405: ("not-supported", "method-not-allowed"), 406: ("not-supported", "not-acceptable"),
    413: ("too-costly", "too-large"), 415: ("not-supported", "unsupported-media-type"),
}


def oo_response(status: int, body: dict[str, object], headers: dict[str, str] | None = None
                ) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON,
                    headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(HygieError)
    async def hygie_error(request: Request, exc: HygieError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status >= 500:
            log.warning("request failed with %s", exc.code)
        return oo_response(exc.status, error_outcome(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:5])
        return oo_response(400, outcome(severity="error", code="invalid",
                                        diagnostics=f"invalid request ({where})",
                                        detail_code="invalid-request"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        issue, code = _HTTP_CODES.get(exc.status_code, ("exception", "http-error"))
        text = exc.detail if isinstance(exc.detail, str) else "request refused"
        return oo_response(exc.status_code, outcome(severity="error", code=issue,
                                                    diagnostics=text, detail_code=code),
                           dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Only the type: an exception message may carry data from a request or a record.
        log.error("unexpected %s while serving a request", type(exc).__name__)
        return oo_response(500, outcome(severity="fatal", code="exception",
                                        diagnostics="internal error", detail_code="internal-error"))
