"""Parsing of FHIR search requests into a backend-neutral :class:`SearchQuery`.

Supported: ``_id``, ``_lastUpdated`` (eq ne gt lt ge le sa eb ap), ``_count``, ``_offset``,
``_sort`` (``_lastUpdated``, ``-_lastUpdated``), ``_total`` (none, estimate, accurate),
``_summary=count``, ``_format=json``; and the per-type parameters of
:mod:`hygie.fhir.searchparams`. Repeating a parameter means AND; commas inside a value mean OR.
Anything else is refused (400) unless the client sent ``Prefer: handling=lenient``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hygie.errors import InvalidRequest, UnsupportedSearchParameter
from hygie.fhir.searchparams import (
    birthdate_query_term,
    params_for,
    parse_date_range,
    split_prefix,
    string_query_terms,
    token_query_term,
)

_SPLIT = re.compile(r"(?<!\\),")
_SUBJECT_TYPES = ("Patient", "Group", "Device", "Location", "Practitioner", "Organization")


@dataclass(frozen=True)
class DateClause:
    prefix: str
    low: int  # epoch seconds, inclusive
    high: int  # epoch seconds, exclusive


@dataclass
class SearchQuery:
    rtype: str
    count: int
    offset: int = 0
    sort_desc: bool = False
    total: str = "accurate"
    summary_count: bool = False
    ids: list[str] | None = None
    last_updated: list[list[DateClause]] = field(default_factory=list)
    hashed: list[tuple[str, list[str]]] = field(default_factory=list)
    refs: list[tuple[str, list[str]]] = field(default_factory=list)
    dates: list[tuple[str, list[DateClause]]] = field(default_factory=list)
    # The parameters that were applied, in order, for the Bundle's self/next links.
    applied: list[tuple[str, str]] = field(default_factory=list)
    # Set by the gate: which rows the caller may see (hygie.access.policy.RowFilter).
    row_filter: Any = None
    # _include=Type:param[:Target] and _revinclude=Type:param
    includes: list[tuple[str, str, str | None]] = field(default_factory=list)
    revincludes: list[tuple[str, str]] = field(default_factory=list)


def _values(raw: str) -> list[str]:
    vals = [v.replace("\\,", ",") for v in _SPLIT.split(raw)]
    if any(v == "" for v in vals):
        raise InvalidRequest("a search parameter has an empty value")
    return vals


def _int(name: str, raw: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number") from None
    if n < 0:
        raise InvalidRequest(f"{name} must not be negative")
    return n


def _date_clause(name: str, raw: str) -> DateClause:
    prefix, value = split_prefix(raw)
    try:
        low, high = parse_date_range(value)
    except InvalidRequest:
        raise InvalidRequest(f"{name}: not a valid FHIR date, dateTime or instant") from None
    return DateClause(prefix, low, high)


def _reference_targets(param_target: str | None, raw: str) -> list[str]:
    out: list[str] = []
    for v in _values(raw):
        v = v.split("/_history/")[0]
        parts = v.rstrip("/").split("/")
        if len(parts) >= 2:
            out.append(f"{parts[-2]}/{parts[-1]}")
        elif param_target:
            out.append(f"{param_target}/{parts[0]}")
        else:
            out.extend(f"{t}/{parts[0]}" for t in _SUBJECT_TYPES)
    return out


def parse_search(rtype: str, params: list[tuple[str, str]], *, lenient: bool,
                 page_default: int, page_max: int) -> SearchQuery:
    q = SearchQuery(rtype=rtype, count=page_default)
    known = params_for(rtype)

    def unsupported(message: str) -> None:
        if not lenient:
            raise UnsupportedSearchParameter(message)

    for key, raw in params:
        name, _, modifier = key.partition(":")
        if name == "_count":
            q.count = min(_int("_count", raw), page_max)
        elif name == "_offset":
            q.offset = _int("_offset", raw)
            continue  # paging position is not part of the query itself
        elif name == "_sort":
            if raw in ("_lastUpdated", "-_lastUpdated"):
                q.sort_desc = raw.startswith("-")
            else:
                unsupported("_sort supports only _lastUpdated and -_lastUpdated")
                continue
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise InvalidRequest("_total must be none, estimate or accurate")
            q.total = raw
        elif name == "_summary":
            if raw == "count":
                q.summary_count = True
            elif raw != "false":
                unsupported("_summary supports only 'count'")
                continue
        elif name == "_format":
            if raw not in ("json", "application/json", "application/fhir+json"):
                unsupported("_format supports only JSON")
                continue
        elif name in ("_include", "_revinclude"):
            parts = raw.split(":")
            if modifier or len(parts) not in (2, 3) or (name == "_revinclude" and len(parts) != 2):
                raise InvalidRequest(f"{name} takes Type:parameter" + (
                    "[:TargetType]" if name == "_include" else ""))
            src, param = parts[0], parts[1]
            spec = params_for(src).get(param)
            if spec is None or spec.type != "reference":
                unsupported(f"{name}: {src}:{param} is not a supported reference parameter")
                continue
            if name == "_include":
                if src != rtype:
                    unsupported("_include must name the searched type")
                    continue
                q.includes.append((src, param, parts[2] if len(parts) == 3 else None))
            else:
                q.revincludes.append((src, param))
        elif name == "_id":
            if modifier:
                unsupported("_id takes no modifier")
                continue
            ids = _values(raw)
            q.ids = ids if q.ids is None else [i for i in q.ids if i in ids]
        elif name == "_lastUpdated":
            q.last_updated.append([_date_clause(name, v) for v in _values(raw)])
        elif name in known:
            p = known[name]
            if p.type == "string":
                q.hashed.append((name, [string_query_terms(v, modifier or None)
                                        for v in _values(raw)]))
            elif modifier and not (p.type == "reference" and modifier in _SUBJECT_TYPES):
                unsupported(f"modifier :{modifier} is not supported on {name}")
                continue
            elif p.type == "token":
                q.hashed.append((name, [token_query_term(v) for v in _values(raw)]))
            elif p.type == "date" and p.hashed:
                terms = []
                for v in _values(raw):
                    prefix, value = split_prefix(v)
                    terms.append(birthdate_query_term(value, prefix))
                q.hashed.append((name, terms))
            elif p.type == "date":
                q.dates.append((name, [_date_clause(name, v) for v in _values(raw)]))
            else:
                target = modifier or p.target
                q.refs.append((name, _reference_targets(target, raw)))
        else:
            unsupported(f"search parameter '{name}' is not supported for {rtype}")
            continue
        q.applied.append((key, raw))
    return q
