"""Documents of a record: upload (PDF, PNG, JPEG), list, and view inline.

A document is a ``DocumentReference`` whose attachment holds the file (base64 ``data``): it is
encrypted with the patient's key like every resource and written, read and shown only through
the gate, so each upload and each view leaves an audit entry.

- Upload: the declared type and the file's first bytes (magic numbers) must agree and be one of
  PDF, PNG or JPEG; the size limit follows ``limits.max_body_bytes`` (the file, base64-encoded
  in its DocumentReference, must still fit in one FHIR API request: 3/4 of it, minus room for
  the resource around it). The multipart body is parsed in memory only (never spooled to a
  temporary file in clear) and the CSRF token is checked before anything is stored.
- View: ``GET .../documents/{id}`` shows a PDF in a same-origin ``<iframe>`` and an image as an
  ``<img>``; both load ``GET .../documents/{id}/content``, answered ``inline`` with
  ``Cache-Control: no-store`` and its own CSP (``web.security.DOCUMENT_CSP``: this origin may
  frame it, it runs nothing).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from hygie.api.deps import runtime
from hygie.api.state import Runtime
from hygie.errors import Forbidden, HygieError
from hygie.gate import Found
from hygie.web import auth, charts, i18n
from hygie.web.clinical import (
    ID,
    _clinical_page,
    _finish_write,
    clinical_only,
    denied,
    gettext,
    not_found,
    now_instant,
    practitioner_ref,
)
from hygie.web.pages import N_, CsrfRefused, Signed, field
from hygie.web.record import display_date
from hygie.web.templating import render, translate

router = APIRouter(include_in_schema=False)
MAGIC = {"application/pdf": (b"%PDF-",), "image/png": (b"\x89PNG\r\n\x1a\n",),
         "image/jpeg": (b"\xff\xd8\xff",)}
DECLARED = {"application/pdf": "application/pdf", "image/png": "image/png",
            "image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
FILE_NAMES = {"application/pdf": "document.pdf", "image/png": "image.png",
              "image/jpeg": "image.jpg"}
ROOM = 64 * 1024  # the DocumentReference around the base64 data, and the form's other fields
KINDS: dict[str, dict[str, Any]] = {
    "report": {"coding": [{"system": "http://loinc.org", "code": "11488-4",
                           "display": "Consult note"}], "text": "Compte rendu"},
    "lab": {"coding": [{"system": "http://loinc.org", "code": "11502-2",
                        "display": "Laboratory report"}], "text": "Résultat d'analyses"},
    "imaging": {"coding": [{"system": "http://loinc.org", "code": "18748-4",
                            "display": "Diagnostic imaging study"}], "text": "Imagerie"},
    "prescription": {"coding": [{"system": "http://loinc.org", "code": "57833-6",
                                 "display": "Prescription for medication"}],
                     "text": "Ordonnance"},
    "letter": {"coding": [{"system": "http://loinc.org", "code": "51852-2",
                           "display": "Letter"}], "text": "Courrier"},
    "other": {"text": "Autre document"},
}


def limit(rt: Runtime) -> int:
    """The largest file accepted (bytes)."""
    return max(0, (rt.settings.max_body_bytes - ROOM) * 3 // 4)


def sniff(data: bytes) -> str | None:
    """The media type that the file's first bytes say it is (PDF, PNG, JPEG), or None."""
    for media, magics in MAGIC.items():
        if any(data.startswith(m) for m in magics):
            return media
    return None


def megabytes(n: int, lang: str) -> str:
    return charts.number(round(n / 1_000_000, 1), lang)


# -- the upload's form: parsed in memory, CSRF checked -------------------------------------------
class _InMemory(MultiPartParser):
    spool_max_size = 1 << 40  # never rolled over to a temporary file on disk


class TooLarge(Exception):
    """The upload is over the limit (answered with the form and a French message)."""


async def upload_form(request: Request, ws: Signed) -> FormData | None:
    """The upload's fields and file, CSRF token checked; None when the body is over the limit
    (nothing is stored then: the form comes back with a French message)."""
    rt = runtime(request)
    cap = limit(rt) + ROOM

    async def counted() -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap:
                raise TooLarge()
            yield chunk

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise CsrfRefused()  # the page's form is multipart: anything else is not from it
    try:
        form = await _InMemory(request.headers, counted(), max_files=1, max_fields=10,
                               max_part_size=16384).parse()
    except TooLarge:
        return None
    except MultiPartException:
        raise CsrfRefused() from None
    presented = request.headers.get("x-csrf-token") or form.get("csrf_token")
    ok = await run_in_threadpool(auth.check, request,
                                 presented if isinstance(presented, str) else None)
    if not ok:
        raise CsrfRefused()
    return form


UploadForm = Annotated[FormData | None, Depends(upload_form)]


# -- the record page's list ----------------------------------------------------------------------
def _attachment(doc: dict[str, Any]) -> dict[str, Any] | None:
    for content in doc.get("content") or []:
        att = (content or {}).get("attachment") if isinstance(content, dict) else None
        if isinstance(att, dict) and att.get("contentType") in MAGIC and att.get("data"):
            return att
    return None


def listing(resources: list[Found], _: Any, lang: str) -> list[dict[str, Any]]:
    """The viewable documents of a record (PDF and images), newest first."""
    out = []
    for found in resources:
        if found.rtype != "DocumentReference" or found.body is None:
            continue
        doc = orjson.loads(found.body)
        att = _attachment(doc)
        if att is None:
            continue
        size = att.get("size") if isinstance(att.get("size"), int) else None
        out.append({"id": found.rid, "date": str(doc.get("date") or ""),
                    "kind": str((doc.get("type") or {}).get("text") or _("Document")),
                    "title": str(doc.get("description") or ""),
                    "format": "PDF" if att["contentType"] == "application/pdf" else _("Image"),
                    "size": f"{megabytes(size, lang)} Mo" if size else ""})
    out.sort(key=lambda d: d["date"], reverse=True)
    return out


# -- upload --------------------------------------------------------------------------------------
def _form_values(request: Request, rt: Runtime) -> dict[str, Any]:
    return {"kinds": [(k, v["text"]) for k, v in KINDS.items()], "max_bytes": limit(rt),
            "max_mb": megabytes(limit(rt), "fr")}


@router.get("/app/patients/{patient_id}/documents/new")
def document_page(request: Request, patient_id: str, ws: Signed) -> Response:
    rt = runtime(request)
    return _clinical_page(request, ws, patient_id, "document_form.html", values={}, errors={},
                          error=None, **_form_values(request, rt))


@router.post("/app/patients/{patient_id}/documents/new")
async def add_document(request: Request, patient_id: str, ws: Signed,
                       form: UploadForm) -> Response:
    refused = clinical_only(request, ws)
    if refused:
        return refused
    rt = runtime(request)
    if not ID.fullmatch(patient_id):
        return not_found(request)
    extra = _form_values(request, rt)
    if form is None:
        message = translate(request, N_("Le fichier dépasse la taille maximale de {size} Mo.")
                            ).format(size=extra["max_mb"])
        return _clinical_page(request, ws, patient_id, "document_form.html", 413, values={},
                              errors={"file": message}, error=message, **extra)
    values = {"kind": field(form, "kind", 20), "title": field(form, "title", 300)}
    upload = form.get("file")
    errors: dict[str, str] = {}
    if values["kind"] not in KINDS:
        errors["kind"] = translate(request, N_("Choisissez le type de document."))
    if not values["title"] or len(values["title"]) > 200:
        errors["title"] = translate(request, N_("Donnez un titre au document (200 caractères "
                                                "au plus)."))
    data = b""
    media = None
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["file"] = translate(request, N_("Choisissez un fichier."))
    else:
        data = await upload.read()
        await upload.close()
        declared = DECLARED.get((upload.content_type or "").split(";")[0].strip().lower())
        media = sniff(data)
        if not data:
            errors["file"] = translate(request, N_("Le fichier est vide."))
        elif len(data) > extra["max_bytes"]:
            errors["file"] = translate(request, N_(
                "Le fichier dépasse la taille maximale de {size} Mo.")).format(
                    size=extra["max_mb"])
        elif declared is None:
            errors["file"] = translate(request, N_("Ce type de fichier n'est pas accepté : "
                                                   "seuls les PDF, PNG et JPEG le sont."))
        elif media != declared:
            errors["file"] = translate(request, N_("Le contenu du fichier ne correspond pas à "
                                                   "son type : fichier refusé."))
    if errors or media is None:
        return _clinical_page(request, ws, patient_id, "document_form.html",
                              413 if len(data) > extra["max_bytes"] else 400, values=values,
                              errors=errors, error=translate(request, N_(
                                  "Le formulaire contient des erreurs : corrigez les champs "
                                  "signalés.")), **extra)
    now = now_instant()
    body: dict[str, Any] = {
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": KINDS[values["kind"]], "subject": {"reference": f"Patient/{patient_id}"},
        "date": now, "description": values["title"],
        "content": [{"attachment": {"contentType": media, "size": len(data),
                                    "title": values["title"], "creation": now,
                                    "data": base64.b64encode(data).decode()}}]}
    if ws.actor.practitioner_id:
        body["author"] = practitioner_ref(ws)
    del data
    return await _finish_write(request, ws, patient_id, [("DocumentReference", body)],
                               "document_form.html", values=values, errors={}, **extra)


# -- view ----------------------------------------------------------------------------------------
def _read_document(request: Request, ws: auth.WebSession, patient_id: str,
                   document_id: str) -> tuple[dict[str, Any], dict[str, Any]] | Response:
    """(DocumentReference, attachment) read through the gate, or the page to show instead."""
    if not ID.fullmatch(patient_id) or not ID.fullmatch(document_id):
        return not_found(request)
    rt = runtime(request)
    try:
        with rt.gate.open(ws.actor, auth.context(request), readonly=True) as door:
            found = door.read("DocumentReference", document_id)
    except Forbidden:
        return denied(request, ws, patient_id)
    except HygieError:
        return not_found(request)
    doc = orjson.loads(found.body or b"{}")
    att = _attachment(doc)
    if att is None or (doc.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
        return not_found(request)
    return doc, att


@router.get("/app/patients/{patient_id}/documents/{document_id}")
def view_document(request: Request, patient_id: str, document_id: str, ws: Signed) -> Response:
    read = _read_document(request, ws, patient_id, document_id)
    if isinstance(read, Response):
        return read
    doc, att = read
    _ = gettext(request)
    lang, _remember = i18n.choose(request)
    values = {"patient_id": patient_id, "document_id": document_id,
              "is_pdf": att["contentType"] == "application/pdf",
              "kind": str((doc.get("type") or {}).get("text") or _("Document")),
              "title": str(doc.get("description") or _("Document")),
              "date": display_date(str(doc.get("date") or ""), lang)}
    fragment = request.headers.get("hx-request") == "true"
    return render(request, "_document_view.html" if fragment else "document_view.html",
                  **values)


@router.get("/app/patients/{patient_id}/documents/{document_id}/content")
def document_content(request: Request, patient_id: str, document_id: str,
                     ws: Signed) -> Response:
    read = _read_document(request, ws, patient_id, document_id)
    if isinstance(read, Response):
        return read
    _doc, att = read
    try:
        data = base64.b64decode(att["data"], validate=True)
    except (binascii.Error, ValueError):
        return not_found(request)
    media = sniff(data)
    if media is None or media != att["contentType"]:  # type and bytes disagree: never served
        return not_found(request)
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'inline; filename="{FILE_NAMES[media]}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
