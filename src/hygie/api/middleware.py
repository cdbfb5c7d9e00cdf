"""Pure-ASGI middleware: request ids, security headers, request body size limit."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from hygie.fhir.bundles import outcome

Scope = dict[str, Any]

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]


class HygieMiddleware:
    """Adds a request id and security headers; refuses a declared body over ``max_body`` (413).

    Bodies without a Content-Length are counted while read (``api.deps.fhir_body``).
    """

    def __init__(self, app: Any, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    await self._too_large(send, request_id)
                    return
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() != b"cache-control"] if _is_fhir(scope) else list(
                               message.get("headers", []))
                headers.extend(h for h in _SECURITY_HEADERS
                               if _is_fhir(scope) or h[0] != b"cache-control")
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _too_large(self, send: Any, request_id: str) -> None:
        body = orjson.dumps(outcome(severity="error", code="too-costly",
                                    diagnostics=f"request body over {self.max_body} bytes",
                                    detail_code="too-large"))
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/fhir+json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()), *_SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})


def _is_fhir(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return path.startswith(("/fhir", "/auth"))
