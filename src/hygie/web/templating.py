"""Jinja2 templates (autoescape on, gettext), versioned static URLs, and the page renderer."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hygie import __version__
from hygie.api.deps import runtime
from hygie.web import auth, i18n
from hygie.web.record import display_date

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def N_(message: str) -> str:  # noqa: N802 - gettext's marker name (extracted by pybabel)
    return message


ROLE_LABELS = {"practitioner": N_("Praticien"), "secretary": N_("Secrétariat"),
               "patient": N_("Patient"), "dpo": N_("Délégué à la protection des données"),
               "security": N_("Sécurité"), "admin": N_("Administration")}


@cache
def static_files() -> dict[str, tuple[str, Path]]:
    """``relative path -> (content digest, file)`` of every served static file."""
    out: dict[str, tuple[str, Path]] = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in (".css", ".js", ".svg", ".png", ".ico"):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            out[path.relative_to(STATIC).as_posix()] = (digest, path)
    return out


def static_url(name: str) -> str:
    digest, _ = static_files()[name]
    return f"/static/{digest}/{name}"


@cache
def environment(lang: str) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, extensions=["jinja2.ext.i18n"],
                      trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]

    def role_label(role: str | None) -> str:
        return i18n.gettext_for(lang, ROLE_LABELS.get(role or "", str(role)))

    env.globals.update(static=static_url, version=__version__, role_label=role_label,
                       date=lambda value: display_date(value or "", lang))
    return env


def render(request: Request, name: str, status: int = 200, **values: Any) -> Response:
    """A page (or an HTMX fragment) in the request's language, with the session's cookies."""
    rt = runtime(request)
    lang, remember = i18n.choose(request)
    ws: auth.WebSession | None = getattr(request.state, "web_session", None)
    csrf = auth.token_for(request)
    html = environment(lang).get_template(name).render(
        lang=lang, user=ws.actor if ws else None, csrf=csrf,
        idle_seconds=rt.settings.session_idle_seconds, path=request.url.path, **values)
    response = HTMLResponse(html, status_code=status)
    finish(request, response, lang if remember else None)
    return response


def finish(request: Request, response: Response, lang: str | None = None) -> None:
    """Cookies a response must carry: rotated tokens, a new pre-session id, the language."""
    rt = runtime(request)
    ws: auth.WebSession | None = getattr(request.state, "web_session", None)
    if ws is not None and ws.renewed is not None:
        auth.set_tokens(response, request, rt, ws.renewed)
    new_pre = getattr(request.state, "new_pre", None)
    if new_pre:
        auth.set_cookie(response, request, rt, auth.PRE_COOKIE, new_pre)
    if lang:
        response.set_cookie(i18n.LANG_COOKIE, lang, path="/", max_age=365 * 86400,
                            httponly=True, samesite="strict", secure=auth.secure(request, rt))


def translate(request: Request, message: str) -> str:
    lang, _ = i18n.choose(request)
    return i18n.gettext_for(lang, message)
