"""FHIR R4 REST routes under /fhir. Thin: parse, go through the gate, render."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from hygie.api.context import GateContext as ContextDep
from hygie.api.deps import CurrentActor, FhirBody, RuntimeDep, bearer_actor, lenient
from hygie.api.errors import FHIR_JSON
from hygie.errors import InvalidRequest, MethodNotAllowed
from hygie.fhir.bundles import etag, history_bundle, raw, searchset
from hygie.fhir.capability import capability_statement
from hygie.fhir.search import SearchQuery, parse_search
from hygie.fhir.validation import parse_json, parse_resource, require_resource_type
from hygie.gate import Found
from hygie.records.transactions import _parse_if_match, process

public = APIRouter(prefix="/fhir", tags=["fhir"])
router = APIRouter(prefix="/fhir", tags=["fhir"], dependencies=[Depends(bearer_actor)])


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def fhir_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def resource_response(found: Found, request: Request, status: int = 200) -> Response:
    headers = {"ETag": etag(found.version), "Last-Modified": found.last_updated}
    if status == 201:
        headers["Location"] = (f"{base_url(request)}/{found.rtype}/{found.rid}"
                               f"/_history/{found.version}")
    assert found.body is not None
    return fhir_response(found.body, status, headers)


def _version(vid: str) -> int:
    try:
        v = int(vid)
    except ValueError:
        raise InvalidRequest("a version id is a whole number") from None
    if v < 1:
        raise InvalidRequest("a version id is a whole number") from None
    return v


def _search_bundle(request: Request, q: SearchQuery, rows: list[Found],
                   total: int | None, path: str | None = None,
                   included: list[Found] | None = None) -> bytes:
    base = base_url(request)
    return searchset(base=base, rtype=q.rtype, total=total, applied=q.applied, count=q.count,
                     offset=q.offset, path=path,
                     entries=[(f"{base}/{f.rtype}/{f.rid}", f.body or b"{}") for f in rows],
                     included=[(f"{base}/{f.rtype}/{f.rid}", f.body or b"{}")
                               for f in included or []])


# -- public ----------------------------------------------------------------------------------
@public.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request) -> Response:
    return fhir_response(orjson.dumps(capability_statement(base_url(request))))


# -- whole system: batch / transaction ------------------------------------------------------
@router.post("", summary="batch or transaction Bundle")
def bundle(request: Request, rt: RuntimeDep, actor: CurrentActor, ctx: ContextDep,
           body: FhirBody) -> Response:
    doc = parse_json(body)
    s = rt.settings

    def search_bundle(q: SearchQuery, rows: list[Found], total: int | None) -> bytes:
        return _search_bundle(request, q, rows, total)

    result = process(rt.gate, actor, ctx, doc, page_default=s.page_size_default,
                     page_max=s.page_size_max, search_bundle=search_bundle)
    return fhir_response(orjson.dumps(result))


# -- type level -------------------------------------------------------------------------------
@router.post("/{rtype}", summary="create")
def create(rtype: str, request: Request, rt: RuntimeDep, actor: CurrentActor, ctx: ContextDep,
           body: FhirBody) -> Response:
    require_resource_type(rtype)
    resource = parse_resource(body, rtype)
    resource.pop("id", None)
    with rt.gate.open(actor, ctx) as door:
        found = door.create(rtype, resource)
    return resource_response(found, request, 201)


def _search(rtype: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
            ctx: ContextDep, params: list[tuple[str, str]]) -> Response:
    require_resource_type(rtype)
    s = rt.settings
    q = parse_search(rtype, params, lenient=lenient(request), page_default=s.page_size_default,
                     page_max=s.page_size_max)
    with rt.gate.open(actor, ctx, readonly=True) as door:
        rows, total = door.search(q)
        included = door.included
    return fhir_response(_search_bundle(request, q, rows, total, included=included))


@router.get("/{rtype}", summary="search")
def search(rtype: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
           ctx: ContextDep) -> Response:
    return _search(rtype, request, rt, actor, ctx, list(request.query_params.multi_items()))


@router.post("/{rtype}/_search", summary="search (form-encoded)")
async def search_post(rtype: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
                      ctx: ContextDep) -> Response:
    from starlette.concurrency import run_in_threadpool

    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        from hygie.errors import UnsupportedMediaType

        raise UnsupportedMediaType("_search takes application/x-www-form-urlencoded")
    form = await request.form()
    params = list(request.query_params.multi_items()) + [
        (k, str(v)) for k, v in form.multi_items()]
    return await run_in_threadpool(_search, rtype, request, rt, actor, ctx, params)


# -- instance level ---------------------------------------------------------------------------
@router.get("/{rtype}/{rid}", summary="read")
def read(rtype: str, rid: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
         ctx: ContextDep) -> Response:
    require_resource_type(rtype)
    with rt.gate.open(actor, ctx, readonly=True) as door:
        found = door.read(rtype, rid)
    return resource_response(found, request)


@router.put("/{rtype}/{rid}", summary="update (or create with a client id)")
def update(rtype: str, rid: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
           ctx: ContextDep, body: FhirBody) -> Response:
    require_resource_type(rtype)
    _check_id(rid)
    resource = parse_resource(body, rtype)
    if_match = _parse_if_match(request.headers.get("if-match"))
    with rt.gate.open(actor, ctx) as door:
        found, created = door.update(rtype, rid, resource, if_match=if_match)
    return resource_response(found, request, 201 if created else 200)


@router.delete("/{rtype}/{rid}", summary="delete")
def delete(rtype: str, rid: str, rt: RuntimeDep, actor: CurrentActor,
           ctx: ContextDep) -> Response:
    require_resource_type(rtype)
    with rt.gate.open(actor, ctx) as door:
        found = door.delete(rtype, rid)
    headers = {"ETag": etag(found.version)} if found else None
    return Response(status_code=204, headers=headers)


@router.get("/{rtype}/{rid}/_history", summary="instance history")
def history(rtype: str, rid: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
            ctx: ContextDep) -> Response:
    require_resource_type(rtype)
    with rt.gate.open(actor, ctx, readonly=True) as door:
        versions = door.history(rtype, rid)
    base = base_url(request)
    entries: list[dict[str, Any]] = []
    for f in versions:
        e: dict[str, Any] = {"fullUrl": f"{base}/{rtype}/{rid}"}
        if f.body is not None:
            e["resource"] = raw(f.body)
        e["request"] = {"method": "DELETE" if f.deleted else ("POST" if f.version == 1
                                                                 else "PUT"),
                        "url": f"{rtype}/{rid}" if f.version > 1 or f.deleted else rtype}
        e["response"] = {"status": "204 No Content" if f.deleted else (
            "201 Created" if f.version == 1 else "200 OK"),
                         "etag": etag(f.version), "lastModified": f.last_updated}
        entries.append(e)
    return fhir_response(history_bundle(entries=entries,
                                        self_url=f"{base}/{rtype}/{rid}/_history"))


@router.get("/{rtype}/{rid}/_history/{vid}", summary="vread")
def vread(rtype: str, rid: str, vid: str, request: Request, rt: RuntimeDep,
          actor: CurrentActor, ctx: ContextDep) -> Response:
    require_resource_type(rtype)
    with rt.gate.open(actor, ctx, readonly=True) as door:
        found = door.vread(rtype, rid, _version(vid))
    return resource_response(found, request)


@router.get("/Patient/{rid}/$everything", summary="Patient $everything")
def everything(rid: str, request: Request, rt: RuntimeDep, actor: CurrentActor,
               ctx: ContextDep) -> Response:
    s = rt.settings
    q = parse_search("Patient", [(k, v) for k, v in request.query_params.multi_items()
                                 if k in ("_count",)], lenient=False,
                     page_default=s.page_size_max, page_max=s.page_size_max)
    offset = 0
    raw_offset = request.query_params.get("_offset")
    if raw_offset is not None:
        offset = parse_search("Patient", [("_offset", raw_offset)], lenient=False,
                              page_default=1, page_max=1).offset
    q.offset = offset
    with rt.gate.open(actor, ctx, readonly=True) as door:
        rows, total = door.everything(rid, count=q.count, offset=offset)
    path = f"{base_url(request)}/Patient/{rid}/$everything"
    return fhir_response(_search_bundle(request, q, rows, total, path=path))


def _check_id(rid: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", rid):
        raise InvalidRequest("a resource id is 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")


@router.api_route("/{rtype}/{rid}/{rest:path}", methods=["GET", "POST", "PUT", "PATCH",
                                                         "DELETE"], include_in_schema=False)
def unsupported(rtype: str, rid: str, rest: str) -> Response:
    raise MethodNotAllowed("this interaction is not supported")
