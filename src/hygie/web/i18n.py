"""Languages of the web app: French first (the source text), English from a gettext catalogue.

Message ids are the French text itself, so French needs no catalogue. The English catalogue is
``locale/en/LC_MESSAGES/messages.po``; it is compiled in memory when the app starts (babel), so
no compiled ``.mo`` file is kept in the repository and none can be stale. The workflow is in
docs/web.md (``pybabel extract`` / ``update``); tests/browser/test_i18n.py fails when a string
of a template or of this package has no English translation.

The language of a request: ``?lang=`` (then remembered in the ``hygie_lang`` cookie), else the
cookie, else ``Accept-Language``, else French.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from starlette.requests import Request

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "fr"
LANGUAGES = ("fr", "en")
LANG_COOKIE = "hygie_lang"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalogue of ``lang`` (French: the identity, as message ids are French)."""
    if lang == DEFAULT or lang not in LANGUAGES:
        return gettext.NullTranslations()
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def _accept(header: str) -> str | None:
    best: tuple[float, str] | None = None
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in LANGUAGES and q > 0 and (best is None or q > best[0]):
            best = (q, lang)
    return best[1] if best else None


def choose(request: Request) -> tuple[str, bool]:
    """(language, whether to remember it in the cookie)."""
    asked = request.query_params.get("lang", "")
    if asked in LANGUAGES:
        return asked, request.cookies.get(LANG_COOKIE) != asked
    cookie = request.cookies.get(LANG_COOKIE, "")
    if cookie in LANGUAGES:
        return cookie, False
    return _accept(request.headers.get("accept-language", "")) or DEFAULT, False


def gettext_for(lang: str, message: str) -> str:
    return translations(lang).gettext(message)
