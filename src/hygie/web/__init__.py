"""The practitioners' web app: server-rendered pages (Jinja2 + vendored HTMX), French first.

``install(app)`` mounts it on the API's app (``api.app.create_app``): the page routes, the
versioned static files, the web security headers and the web error pages. See docs/web.md.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from hygie.errors import HygieError
from hygie.web import account, admin, clinical, documents, pages, portal, secretary
from hygie.web.auth import SignInRequired
from hygie.web.security import WebSecurityMiddleware, is_web_path
from hygie.web.templating import render, static_files, translate

N_ = pages.N_
log = logging.getLogger("hygie.web")
_MEDIA = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
IMMUTABLE = "public, max-age=31536000, immutable"


async def static(digest: str, name: str) -> Response:
    """A static file under its content digest: cached for a year, the URL changes with it."""
    entry = static_files().get(name)
    if entry is None or entry[0] != digest:
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    path = entry[1]
    return FileResponse(path, media_type=_MEDIA[path.suffix],
                        headers={"Cache-Control": IMMUTABLE})


def _web_error(request: Request, status: int, message: str) -> Response:
    try:
        return render(request, "denied.html", status, message=translate(request, message))
    except Exception:  # noqa: BLE001 - the error page itself failed (e.g. database down)
        return Response(translate(request, message), status_code=status,
                        media_type="text/plain; charset=utf-8")


def install(app: FastAPI) -> None:
    app.include_router(clinical.router)  # first: /app/patients/new before /{patient_id}
    app.include_router(documents.router)
    app.include_router(pages.router)
    for extra in (account, admin, secretary, portal):  # sécurité, admin, secretary, patient
        app.include_router(extra.router)
    app.add_api_route("/static/{digest}/{name:path}", static, methods=["GET"],
                      include_in_schema=False)
    api_handlers: dict[Any, Any] = dict(app.exception_handlers)

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": "/?notice=expired"})
        return Response(status_code=303, headers={"Location": "/?notice=expired"})

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return _web_error(request, 403, N_("Cette page a expiré (jeton de sécurité invalide) : "
                                           "rechargez-la et recommencez."))

    def delegate(kind: Any, status_of: Any) -> None:
        api = api_handlers.get(kind)

        async def handler(request: Request, exc: Exception) -> Response:
            if is_web_path(request.url.path) or api is None:
                status = status_of(exc)
                if status >= 500:  # the type only: a message could carry request data
                    log.error("web page failed with %s", type(exc).__name__)
                message = (N_("Page introuvable.") if status == 404 else
                           N_("Le service est momentanément indisponible : réessayez dans un "
                              "instant.") if status >= 500 else N_("Requête invalide."))
                return _web_error(request, status, message)
            response: Response = await api(request, exc)
            return response

        app.add_exception_handler(kind, handler)

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(pages.CsrfRefused, csrf_refused)
    delegate(HygieError, lambda exc: exc.status)
    delegate(HTTPException, lambda exc: exc.status_code)
    delegate(RequestValidationError, lambda exc: 400)
    delegate(Exception, lambda exc: 500)
    app.add_middleware(WebSecurityMiddleware)
