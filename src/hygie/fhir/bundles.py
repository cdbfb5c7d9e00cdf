"""Building FHIR responses: resources with ETags, Bundles (searchset, history), outcomes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from hygie.errors import HygieError

ERROR_SYSTEM = "https://hygie.health/fhir/CodeSystem/error"


def etag(version: int) -> str:
    return f'W/"{version}"'


def now_instant() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def outcome(*, severity: str, code: str, diagnostics: str, detail_code: str | None = None
            ) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if detail_code:
        issue["details"] = {"coding": [{"system": ERROR_SYSTEM, "code": detail_code}],
                            "text": detail_code}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_outcome(exc: HygieError) -> dict[str, Any]:
    return outcome(severity="error", code=exc.issue_code, diagnostics=exc.message,
                   detail_code=exc.code)


def _raw(body: bytes) -> orjson.Fragment:
    """Embed already-serialised resource JSON without parsing it again."""
    return orjson.Fragment(body)


def searchset(*, base: str, rtype: str, entries: list[tuple[str, bytes]], total: int | None,
              applied: list[tuple[str, str]], count: int, offset: int,
              path: str | None = None, included: list[tuple[str, bytes]] | None = None
              ) -> bytes:
    """A searchset Bundle. ``entries`` are (fullUrl, resource JSON)."""
    path = path or f"{base}/{rtype}"

    def link(relation: str, off: int) -> dict[str, str]:
        params = [*applied]
        if not any(k == "_count" for k, _ in params):
            params.append(("_count", str(count)))
        if off:
            params.append(("_offset", str(off)))
        query = urlencode(params)
        return {"relation": relation, "url": f"{path}?{query}" if query else path}

    links = [link("self", offset), link("first", 0)]
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    has_next = (total is not None and offset + count < total) or (
        total is None and len(entries) == count and count > 0)
    if has_next:
        links.append(link("next", offset + count))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()}, "type": "searchset",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    bundle["entry"] = [{"fullUrl": url, "resource": _raw(body), "search": {"mode": "match"}}
                       for url, body in entries] + [
        {"fullUrl": url, "resource": _raw(body), "search": {"mode": "include"}}
        for url, body in included or []]
    return orjson.dumps(bundle)


def history_bundle(*, entries: list[dict[str, Any]], self_url: str) -> bytes:
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
              "meta": {"lastUpdated": now_instant()}, "type": "history",
              "total": len(entries), "link": [{"relation": "self", "url": self_url}],
              "entry": entries}
    return orjson.dumps(bundle)


raw = _raw
