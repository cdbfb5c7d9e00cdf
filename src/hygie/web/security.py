"""Web security, in one place: response headers, CSRF tokens, the CSP report sink.

- :class:`WebSecurityMiddleware` wraps the whole app (outside ``HygieMiddleware``) and, for the
  web paths only, replaces the API's headers by the web ones: a strict Content-Security-Policy
  (no inline script or style, nothing from another origin), ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer``, ``nosniff``, a ``Permissions-Policy`` that turns off what the
  app never uses, and ``Cache-Control: no-store`` on every page (pages may show patient data;
  only the versioned static files are cacheable).
- CSRF: every state-changing request carries a synchronizer token (hidden field ``csrf_token``,
  or the ``X-CSRF-Token`` header that HTMX sends, set once with ``hx-headers`` on ``<body>``).
  The token is a keyed HMAC (the tenant's index key, domain ``web/csrf``) of the session id, or,
  before sign-in, of a random pre-session cookie. It is checked in constant time
  (:func:`hygie.crypto.constant_time_equal`).
- ``POST /csp-report`` counts violations and logs their directive only (never the page or
  blocked URL, which could carry data); the browser tests assert there are none.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from typing import Any

from hygie.crypto import BlindIndexer, constant_time_equal

log = logging.getLogger("hygie.web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; "
       "report-uri /csp-report")
# A document's content (PDF, image: web/documents.py) is shown in a same-origin <iframe> of the
# record page: this origin only may frame it, and it runs nothing.
DOCUMENT_CSP = ("default-src 'none'; img-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
                "form-action 'none'")
DOCUMENT_CONTENT = re.compile(r"/app/patients/[^/]+/documents/[^/]+/content")
PERMISSIONS = ("camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
               "interest-cohort=(), browsing-topics=()")
WEB_PREFIXES = ("/app", "/static/", "/signin", "/activation", "/csp-report")
_REPLACED = {b"content-security-policy", b"x-frame-options", b"referrer-policy",
             b"x-content-type-options", b"permissions-policy", b"cache-control", b"pragma"}


def is_web_path(path: str) -> bool:
    return path == "/" or path.startswith(WEB_PREFIXES)


def _headers(path: str, existing: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    cache = [(b"cache-control", v) for k, v in existing
             if k == b"cache-control" and path.startswith("/static/")]
    kept = [(k, v) for k, v in existing if k.lower() not in _REPLACED]
    framed = DOCUMENT_CONTENT.fullmatch(path) is not None
    return [*kept,
            (b"content-security-policy", (DOCUMENT_CSP if framed else CSP).encode()),
            (b"x-frame-options", b"SAMEORIGIN" if framed else b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"permissions-policy", PERMISSIONS.encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
            *(cache or [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")])]


class WebSecurityMiddleware:
    """Security headers of the web paths (the API keeps its own)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not is_web_path(path):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k.lower(), v) for k, v in message.get("headers", [])]
                message = {**message, "headers": _headers(path, headers)}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- CSRF -----------------------------------------------------------------------------------------
def csrf_token(indexer: BlindIndexer, binding: str) -> str:
    """The synchronizer token of a session (or pre-session) id."""
    tag = indexer.tag("web/csrf", binding)
    return base64.urlsafe_b64encode(tag).decode().rstrip("=")


def csrf_valid(indexer: BlindIndexer, binding: str | None, presented: str | None) -> bool:
    if not binding or not presented or len(presented) > 128:
        return False
    return constant_time_equal(csrf_token(indexer, binding), presented)


# -- CSP reports ----------------------------------------------------------------------------------
class CspReports:
    """Violations reported by browsers to this process (count and directives)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.directives: list[str] = []

    def add(self, report: Any) -> None:
        directives: list[str] = []
        items = report if isinstance(report, list) else [report]
        for item in items[:20]:
            if not isinstance(item, dict):
                continue
            body = item.get("csp-report") or item.get("body") or {}
            if isinstance(body, dict):
                d = body.get("effective-directive") or body.get("effectiveDirective") or \
                    body.get("violated-directive") or "?"
                directives.append(str(d)[:40].replace("\n", " "))
        with self._lock:
            self.count += len(directives)
            self.directives.extend(directives[:100])
        for d in directives:
            # The directive only: the document and blocked URLs could carry data.
            log.warning("csp violation: directive=%s", d)
