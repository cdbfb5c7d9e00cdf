"""FHIR ``batch`` and ``transaction`` Bundles, processed through the gate.

A transaction is all or nothing: every entry runs in one gate transaction, ``urn:uuid:``
references are rewritten to the ids the server assigns, and any failing entry fails the whole
bundle (naming the entry). A batch runs each entry on its own and reports each outcome.
Processing order follows FHIR: DELETE, POST, PUT, GET.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from hygie.access.actor import Actor, RequestContext
from hygie.errors import HygieError, InvalidRequest, MethodNotAllowed
from hygie.fhir.bundles import error_outcome, etag, raw
from hygie.fhir.search import parse_search
from hygie.fhir.validation import require_resource_type
from hygie.gate import Door, Gate

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
_STATUS = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


class PreparedEntry:
    __slots__ = ("index", "method", "rtype", "rid", "query", "resource", "if_match")

    def __init__(self, index: int, method: str, rtype: str, rid: str | None, query: str,
                 resource: dict[str, Any] | None, if_match: int | None) -> None:
        self.index = index
        self.method = method
        self.rtype = rtype
        self.rid = rid
        self.query = query
        self.resource = resource
        self.if_match = if_match


def _parse_if_match(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest("If-Match must be a version ETag such as W/\"3\"") from None


def prepare(bundle: dict[str, Any]) -> tuple[str, list[PreparedEntry]]:
    """Check a batch/transaction Bundle's shape; assign ids and rewrite urn:uuid references."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base needs a Bundle")
    btype = bundle.get("type")
    if btype not in ("batch", "transaction"):
        raise InvalidRequest("only batch and transaction Bundles can be posted to the base")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be a list")
    prepared: list[PreparedEntry] = []
    ref_map: dict[str, str] = {}
    for i, entry in enumerate(raw_entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            raise InvalidRequest(f"entry {i}: request is missing")
        req = entry["request"]
        method = str(req.get("method", "")).upper()
        url = str(req.get("url", "")).strip().lstrip("/")
        if method not in _ORDER:
            raise InvalidRequest(f"entry {i}: method must be GET, POST, PUT or DELETE")
        if req.get("ifNoneExist") or req.get("ifNoneMatch") or req.get("ifModifiedSince"):
            raise InvalidRequest(f"entry {i}: conditional requests are not supported")
        path, _, query = url.partition("?")
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise InvalidRequest(f"entry {i}: request.url is missing")
        try:
            rtype = require_resource_type(parts[0])
        except HygieError:
            raise InvalidRequest(f"entry {i}: unknown resource type in request.url") from None
        rid = parts[1] if len(parts) > 1 else None
        resource = entry.get("resource")
        if method in ("POST", "PUT"):
            if not isinstance(resource, dict):
                raise InvalidRequest(f"entry {i}: a {method} needs a resource")
            resource = copy.deepcopy(resource)
            if method == "POST":
                rid = str(uuid.uuid4())
            elif rid is None:
                raise InvalidRequest(f"entry {i}: PUT needs Type/id in request.url")
            full = entry.get("fullUrl")
            if isinstance(full, str) and full.startswith("urn:uuid:") and btype == "transaction":
                ref_map[full] = f"{rtype}/{rid}"
        elif method == "DELETE" and rid is None:
            raise InvalidRequest(f"entry {i}: conditional delete is not supported")
        if len(parts) > 2:
            raise InvalidRequest(f"entry {i}: request.url must be Type or Type/id")
        prepared.append(PreparedEntry(i, method, rtype, rid, query, resource,
                                      _parse_if_match(req.get("ifMatch"))))
    if ref_map:
        for p in prepared:
            if p.resource is not None:
                _rewrite(p.resource, ref_map)
    return btype, prepared


def _rewrite(node: Any, ref_map: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in ref_map:
                node[key] = ref_map[value]
            elif isinstance(value, (dict, list)):
                _rewrite(value, ref_map)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, ref_map)


def run_entry(door: Door, p: PreparedEntry, *, page_default: int, page_max: int,
              search_bundle: Callable[..., bytes]) -> dict[str, Any]:
    """Run one prepared entry; returns the response entry."""
    if p.method == "POST":
        assert p.resource is not None and p.rid is not None
        found = door.create(p.rtype, p.resource, rid=p.rid)
        status = 201
    elif p.method == "PUT":
        assert p.resource is not None and p.rid is not None
        found, created = door.update(p.rtype, p.rid, p.resource, if_match=p.if_match)
        status = 201 if created else 200
    elif p.method == "DELETE":
        assert p.rid is not None
        door.delete(p.rtype, p.rid)
        return {"response": {"status": _STATUS[204]}}
    else:
        if p.rid is None:
            q = parse_search(p.rtype, parse_qsl(p.query, keep_blank_values=True),
                             lenient=False, page_default=page_default, page_max=page_max)
            rows, total = door.search(q)
            body = search_bundle(q, rows, total)
            return {"resource": raw(body), "response": {"status": _STATUS[200]}}
        if p.query:
            raise MethodNotAllowed("entry GET Type/id takes no query")
        found = door.read(p.rtype, p.rid)
        assert found.body is not None
        return {"resource": raw(found.body),
                "response": {"status": _STATUS[200], "etag": etag(found.version),
                             "lastModified": found.last_updated}}
    return {"response": {"status": _STATUS[status],
                         "location": f"{p.rtype}/{found.rid}/_history/{found.version}",
                         "etag": etag(found.version), "lastModified": found.last_updated}}


def process(gate: Gate, actor: Actor, ctx: RequestContext, bundle: dict[str, Any], *,
            page_default: int, page_max: int, search_bundle: Callable[..., bytes],
            on_door: Callable[[Door], None] | None = None) -> dict[str, Any]:
    """Process a batch or transaction Bundle; returns the response Bundle."""
    btype, prepared = prepare(bundle)
    responses: list[dict[str, Any] | None] = [None] * len(prepared)
    ordered = sorted(prepared, key=lambda p: (_ORDER[p.method], p.index))
    kwargs: dict[str, Any] = {"page_default": page_default, "page_max": page_max,
                              "search_bundle": search_bundle}
    if btype == "transaction":
        with gate.open(actor, ctx) as door:
            for p in ordered:
                try:
                    responses[p.index] = run_entry(door, p, **kwargs)
                except HygieError as exc:
                    exc.message = f"entry {p.index}: {exc.message}"
                    exc.args = (exc.message,)
                    raise
            if on_door is not None:
                on_door(door)
    else:
        for p in ordered:
            try:
                with gate.open(actor, ctx) as door:
                    responses[p.index] = run_entry(door, p, **kwargs)
            except HygieError as exc:
                responses[p.index] = {"response": {
                    "status": str(exc.status), "outcome": error_outcome(exc)}}
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": f"{btype}-response",
            "entry": responses}
