"""Supported search parameters and the index terms extracted from a resource.

The store keeps three kinds of index rows per resource:

* hashed terms (``Extracted.hashed``): strings the store blind-indexes with a keyed HMAC, for
  everything that identifies a person or a clinical fact (names, identifiers, codes, gender,
  status, birth date);
* clear date ranges (``Extracted.dates``): half-open ``[low, high)`` epoch seconds of clinical
  event dates, so that ranges can be compared in SQL;
* clear references (``Extracted.refs``): ``Type/id`` targets of references.

Term forms (the query-side helpers at the end of this module produce the same strings):

* string: ``p:<prefix>`` for every prefix (1..40 chars) of the normalised value and of each
  tail of it that starts at a word, and ``x:<NFC value>`` for ``:exact``;
* token: ``v:<code>``, plus ``sv:<system>|<code>`` and ``s:<system>`` when a system is known,
  else ``ns:<code>``;
* hashed date (birthdate): ``d:YYYY``, ``d:YYYY-MM``, ``d:YYYY-MM-DD`` as far as the value goes.

Paths in :class:`SearchParam` are dotted element names walked through dicts; lists are
flattened at every step. Choice elements (``effective[x]``) are listed once per type.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from hygie.errors import InvalidRequest, InvalidResource, UnsupportedSearchParameter

ParamType = Literal["string", "token", "date", "reference"]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]  # dotted paths into the resource dict
    hashed: bool  # True: blind-indexed terms; False: stored in clear (dates, references)
    target: str | None = None  # reference params restricted to one resource type


COMMON_PARAMS: frozenset[str] = frozenset({
    "_id", "_lastUpdated", "_count", "_sort", "_total", "_offset", "_format", "_summary",
    "_elements",
})

DATE_PREFIXES: frozenset[str] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
OPEN_LOW = -(2**62)  # lower bound of a Period without start
OPEN_HIGH = 2**62  # upper bound of a Period without end
MAX_PREFIX = 40  # longest indexed string prefix
GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"

# --------------------------------------------------------------------------------------------
# Parameter tables (FHIR R4 definitions, restricted to what Hygie supports)
# --------------------------------------------------------------------------------------------


def _tok(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "token", paths, True)


def _str(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "string", paths, True)


def _date(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "date", paths, False)


def _ref(name: str, *paths: str, target: str | None = None) -> SearchParam:
    return SearchParam(name, "reference", paths, False, target)


_HUMAN_NAME = ("name.family", "name.given", "name.prefix", "name.suffix", "name.text")
_PERSON = (
    _tok("identifier", "identifier"),
    _str("name", *_HUMAN_NAME),
    _str("family", "name.family"),
    _str("given", "name.given"),
)
_ID = _tok("identifier", "identifier")
_STATUS = _tok("status", "status")
_CODE = _tok("code", "code")
_ENCOUNTER = _ref("encounter", "encounter", target="Encounter")
_SUBJECT = (_ref("patient", "subject", target="Patient"), _ref("subject", "subject"))
_PATIENT = _ref("patient", "patient", target="Patient")

_TABLE: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        *_PERSON,
        SearchParam("birthdate", "date", ("birthDate",), True),
        _tok("gender", "gender"),
    ),
    "Practitioner": _PERSON,
    "Organization": (_ID, _str("name", "name", "alias")),
    "Observation": (
        _ID, *_SUBJECT, _ENCOUNTER, _CODE, _STATUS,
        _date("date", "effectiveDateTime", "effectivePeriod", "effectiveInstant",
              "effectiveTiming.event"),
    ),
    "Condition": (
        _ID, *_SUBJECT, _ENCOUNTER, _CODE,
        _date("onset-date", "onsetDateTime", "onsetPeriod"),
        _date("recorded-date", "recordedDate"),
    ),
    "Encounter": (_ID, *_SUBJECT, _STATUS, _date("date", "period")),
    "Procedure": (
        _ID, *_SUBJECT, _ENCOUNTER, _CODE, _STATUS,
        _date("date", "performedDateTime", "performedPeriod"),
    ),
    "MedicationRequest": (
        _ID, *_SUBJECT, _ENCOUNTER, _STATUS,
        _tok("code", "medicationCodeableConcept"),
        _date("authoredon", "authoredOn"),
        _date("date", "dosageInstruction.timing.event"),
    ),
    "AllergyIntolerance": (
        _ID, _PATIENT,
        _tok("code", "code", "reaction.substance"),
        _date("date", "recordedDate"),
    ),
    "Immunization": (
        _ID, _PATIENT,
        _tok("vaccine-code", "vaccineCode"),
        _tok("code", "vaccineCode"),
        _date("date", "occurrenceDateTime"),
    ),
    "DiagnosticReport": (
        _ID, *_SUBJECT, _ENCOUNTER, _CODE, _STATUS,
        _date("date", "effectiveDateTime", "effectivePeriod"),
    ),
    "DocumentReference": (
        _tok("identifier", "masterIdentifier", "identifier"), *_SUBJECT, _STATUS,
        _ref("encounter", "context.encounter", target="Encounter"),
        _tok("type", "type"),
        _date("date", "date"),
    ),
    "ServiceRequest": (
        _ID, *_SUBJECT, _ENCOUNTER, _CODE, _STATUS, _date("authored", "authoredOn"),
    ),
    "Communication": (_ID, *_SUBJECT, _STATUS, _date("sent", "sent")),
    "Consent": (_ID, _PATIENT, _STATUS, _date("date", "dateTime")),
    "CareTeam": (_ID, *_SUBJECT, _STATUS, _date("date", "period")),
    "Appointment": (
        _ID, _STATUS, _date("date", "start"),
        _ref("patient", "participant.actor", target="Patient"),
        _ref("practitioner", "participant.actor", target="Practitioner"),
        _ref("actor", "participant.actor"),
    ),
}

_BY_NAME: dict[str, dict[str, SearchParam]] = {
    rtype: {p.name: p for p in params} for rtype, params in _TABLE.items()
}

# Code strings that carry an implicit system (FHIR `code` elements bound to one code system).
_IMPLICIT_SYSTEMS: dict[str, str] = {"gender": GENDER_SYSTEM}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """The type-specific search parameters of ``resource_type`` (``{}`` if none)."""
    return dict(_BY_NAME.get(resource_type, {}))


# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------

_ASCII_SEP = re.compile(r"[^0-9a-z]+")
_UNICODE_SEP = re.compile(r"[\W_]+")


def _drop_marks(s: str) -> str:
    return "".join(c for c in s if not unicodedata.category(c).startswith("M"))


def normalize_string(s: str) -> str:
    """Search form of a string: no accents, case-folded, words separated by one space."""
    if s.isascii():
        return _ASCII_SEP.sub(" ", s.lower()).strip()
    t = _drop_marks(unicodedata.normalize("NFKD", s)).casefold()
    if not t.isascii():  # case folding can expand to decomposable characters
        t = _drop_marks(unicodedata.normalize("NFKD", t))
    return _UNICODE_SEP.sub(" ", t).strip()


def _prefixes(word: str) -> list[str]:
    return ["p:" + word[:k] for k in range(1, min(len(word), MAX_PREFIX) + 1)]


def string_terms(value: str) -> list[str]:
    """Hashed terms of one string value.

    ``p:`` prefixes of the normalised value and of each tail that starts at a word (so of
    each word, and a query of several words matches from any word on), and ``x:`` + the NFC
    value for ``:exact``.
    """
    norm = normalize_string(value)
    terms = _prefixes(norm) if norm else []
    start = norm.find(" ") + 1
    while start:
        terms.extend(_prefixes(norm[start:]))
        start = norm.find(" ", start) + 1
    terms.append("x:" + unicodedata.normalize("NFC", value))
    return terms


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


def token_terms(system: str | None, code: str) -> list[str]:
    """Hashed terms of one coded value (Identifier, Coding or code)."""
    if system:
        return ["v:" + code, f"sv:{system}|{code}", "s:" + system]
    return ["v:" + code, "ns:" + code]


def _token_values(values: Iterable[Any], implicit_system: str | None) -> list[str]:
    terms: list[str] = []
    for v in values:
        if isinstance(v, str):
            if v:
                terms.extend(token_terms(implicit_system, v))
            continue
        if not isinstance(v, dict):
            continue
        coding = v.get("coding")
        if coding is not None:  # CodeableConcept
            for c in coding if isinstance(coding, list) else (coding,):
                if isinstance(c, dict):
                    _add_coded(terms, c.get("system"), c.get("code"))
        elif "value" in v:  # Identifier
            _add_coded(terms, v.get("system"), v.get("value"))
        else:  # Coding
            _add_coded(terms, v.get("system"), v.get("code"))
    return terms


def _add_coded(terms: list[str], system: Any, code: Any) -> None:
    if isinstance(code, str) and code:
        terms.extend(token_terms(system if isinstance(system, str) else None, code))


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_BAD_DATE = ("not a valid FHIR date, dateTime or instant (expected YYYY, YYYY-MM, YYYY-MM-DD or "
             "YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm|-hh:mm])")


def _days(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _month_length(y: int, m: int) -> int:
    if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[m - 1]


def parse_date_range(value: str) -> tuple[int, int]:
    """Half-open ``[low, high)`` epoch seconds covered by a FHIR date, dateTime or instant.

    The range spans the value's precision (a year, a month, a day, a minute or a second;
    fractions of a second count as the whole second). Without a zone, UTC is assumed. Raises
    :class:`InvalidRequest` (the message quotes no value) on anything else.
    """
    m = _DATE_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidRequest("date value: " + _BAD_DATE)
    ys, mos, ds, hs, mis, ss, tz = m.groups()
    y = int(ys)
    if y == 0:
        raise InvalidRequest("date value: the year must be 0001 or later")
    if mos is None:
        return _days(y, 1, 1) * 86400, _days(y + 1, 1, 1) * 86400
    mo = int(mos)
    if not 1 <= mo <= 12:
        raise InvalidRequest("date value: the month must be 01 to 12")
    if ds is None:
        nxt = _days(y + 1, 1, 1) if mo == 12 else _days(y, mo + 1, 1)
        return _days(y, mo, 1) * 86400, nxt * 86400
    d = int(ds)
    if not 1 <= d <= _month_length(y, mo):
        raise InvalidRequest("date value: the day does not exist in that month")
    base = _days(y, mo, d) * 86400
    if hs is None:
        return base, base + 86400
    return _time_range(base, hs, mis, ss, tz)


def _time_range(base: int, hs: str, mis: str, ss: str | None, tz: str | None
                ) -> tuple[int, int]:
    h, mi = int(hs), int(mis)
    if h > 23 or mi > 59:
        raise InvalidRequest("date value: the time must be 00:00 to 23:59")
    t = base + h * 3600 + mi * 60
    span = 60
    if ss is not None:
        s = int(ss)
        if s > 60:  # 60: leap second
            raise InvalidRequest("date value: the seconds must be 00 to 60")
        t += s
        span = 1
    if tz is not None and tz != "Z":
        oh, om = int(tz[1:3]), int(tz[4:6])
        if oh > 14 or om > 59 or (oh == 14 and om):
            raise InvalidRequest("date value: the time zone offset must be -14:00 to +14:00")
        offset = oh * 3600 + om * 60
        t = t - offset if tz[0] == "+" else t + offset
    return t, t + span


def period_range(period: dict[str, Any]) -> tuple[int, int] | None:
    """``[start.low, end.high)`` of a FHIR Period; open ends are OPEN_LOW / OPEN_HIGH.

    None for a Period with neither start nor end.
    """
    start, end = period.get("start"), period.get("end")
    if start is None and end is None:
        return None
    low = OPEN_LOW if start is None else parse_date_range(start)[0]
    high = OPEN_HIGH if end is None else parse_date_range(end)[1]
    return low, high


def birthdate_terms(value: str) -> list[str]:
    """Hashed terms of a birth date: ``d:YYYY``, ``d:YYYY-MM``, ``d:YYYY-MM-DD``."""
    date = value.split("T", 1)[0]
    parse_date_range(date)  # validates
    return ["d:" + date[:n] for n in (4, 7, 10) if n <= len(date)]


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------

_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def parse_reference(ref: Any) -> str | None:
    """``Type/id`` of a literal reference (relative, or absolute URL ending so).

    ``/_history/n`` is dropped. Contained (``#id``), ``urn:`` and conditional (``?``)
    references, and anything not ending in a valid ``Type/id``, give None. The base of an
    absolute URL is not compared with this server's: ``https://other/fhir/Patient/1`` gives
    ``Patient/1``.
    """
    if not isinstance(ref, str) or not ref or ref[0] == "#" or ref.startswith("urn:"):
        return None
    if "?" in ref:
        return None
    cut = ref.find("/_history/")
    if cut >= 0:
        ref = ref[:cut]
    slash = ref.rfind("/")
    if slash <= 0:
        return None
    type_start = ref.rfind("/", 0, slash) + 1
    rtype, rid = ref[type_start:slash], ref[slash + 1:]
    if _TYPE_RE.fullmatch(rtype) is None or _ID_RE.fullmatch(rid) is None:
        return None
    return ref[type_start:]


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


@dataclass
class Extracted:
    hashed: list[tuple[str, str]] = field(default_factory=list)  # (param, term)
    dates: list[tuple[str, int, int]] = field(default_factory=list)  # (param, low, high)
    refs: list[tuple[str, str]] = field(default_factory=list)  # (param, "Type/id")


def walk(node: Any, keys: tuple[str, ...]) -> list[Any]:
    """Values at the dotted path ``keys`` under ``node``; lists are flattened at every step."""
    current = [node]
    for key in keys:
        found: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            value = item.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                found.extend(v for v in value if v is not None)
            else:
                found.append(value)
        if not found:
            return found
        current = found
    return current


_Plan = tuple[SearchParam, tuple[tuple[str, ...], ...]]
_PLANS: dict[str, tuple[_Plan, ...]] = {
    rtype: tuple((p, tuple(tuple(path.split(".")) for path in p.paths)) for p in params)
    for rtype, params in _TABLE.items()
}


def _values(resource: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> list[Any]:
    out: list[Any] = []
    for path in paths:
        if len(path) == 1:
            value = resource.get(path[0])
            if isinstance(value, list):
                out.extend(value)
            elif value is not None:
                out.append(value)
        else:
            out.extend(walk(resource, path))
    return out


def _date_values(rtype: str, name: str, values: list[Any]) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    try:
        for v in values:
            if isinstance(v, str):
                out.append((name, *parse_date_range(v)))
            elif isinstance(v, dict):
                rng = period_range(v)
                if rng is not None:
                    out.append((name, *rng))
    except InvalidRequest:
        raise InvalidResource(f"{rtype}: the element indexed by search parameter '{name}' is "
                              f"{_BAD_DATE}") from None
    return out


def _birthdate_values(rtype: str, name: str, values: list[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            try:
                out.extend(birthdate_terms(v))
            except InvalidRequest:
                raise InvalidResource(f"{rtype}: the element indexed by search parameter "
                                      f"'{name}' is not a valid FHIR date") from None
    return out


def _ref_values(values: list[Any], target: str | None) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, dict):
            ref = parse_reference(v.get("reference"))
            if ref is not None and (target is None or ref.startswith(target + "/")):
                out.append(ref)
    return out


def extract(resource: dict[str, Any]) -> Extracted:
    """Index rows of ``resource`` (deduplicated). Empty for types without parameters.

    Raises :class:`InvalidResource` if an indexed date element is not a valid date.
    """
    rtype = resource.get("resourceType")
    plans = _PLANS.get(rtype) if isinstance(rtype, str) else None
    if not plans:
        return Extracted()
    assert isinstance(rtype, str)
    hashed: list[tuple[str, str]] = []
    dates: list[tuple[str, int, int]] = []
    refs: list[tuple[str, str]] = []
    for param, paths in plans:
        values = _values(resource, paths)
        if not values:
            continue
        name = param.name
        kind = param.type
        if kind == "token":
            hashed.extend((name, t) for t in _token_values(values, _IMPLICIT_SYSTEMS.get(name)))
        elif kind == "string":
            for v in values:
                if isinstance(v, str) and v:
                    hashed.extend((name, t) for t in string_terms(v))
        elif kind == "reference":
            refs.extend((name, r) for r in _ref_values(values, param.target))
        elif param.hashed:
            hashed.extend((name, t) for t in _birthdate_values(rtype, name, values))
        else:
            dates.extend(_date_values(rtype, name, values))
    return Extracted(list(dict.fromkeys(hashed)), list(dict.fromkeys(dates)),
                     list(dict.fromkeys(refs)))


# --------------------------------------------------------------------------------------------
# Query side
# --------------------------------------------------------------------------------------------

_MODIFIER_RE = re.compile(r"[a-z][a-z-]{0,31}")
_ESCAPE_RE = re.compile(r"\\([\\|,$])")


def _modifier_label(modifier: str) -> str:
    return f"':{modifier}'" if _MODIFIER_RE.fullmatch(modifier) else "given"


def string_query_terms(value: str, modifier: str | None) -> str:
    """The hashed term a string search value must match.

    No modifier: prefix match (``p:`` + normalised value, at most 40 characters); ``exact``:
    ``x:`` + NFC value. Other modifiers raise :class:`UnsupportedSearchParameter`.
    """
    if not modifier:
        norm = normalize_string(value)
        if not norm:
            raise InvalidRequest("a string search value must contain a letter or a digit")
        return "p:" + norm[:MAX_PREFIX]
    if modifier == "exact":
        return "x:" + unicodedata.normalize("NFC", value)
    raise UnsupportedSearchParameter(
        f"the {_modifier_label(modifier)} modifier is not supported on string parameters "
        "(supported: none, ':exact')")


def _unescape(s: str) -> str:
    return _ESCAPE_RE.sub(r"\1", s) if "\\" in s else s


def _split_token(value: str) -> tuple[str | None, str]:
    """(system or None when no '|', code) of ``[system]|[code]``; the first unescaped '|'."""
    i = value.find("|")
    while i > 0 and value[i - 1] == "\\":
        # count the backslashes before '|': an odd count escapes it
        n = len(value[:i]) - len(value[:i].rstrip("\\"))
        if n % 2 == 0:
            break
        i = value.find("|", i + 1)
    if i < 0:
        return None, _unescape(value)
    return _unescape(value[:i]), _unescape(value[i + 1:])


def token_query_term(value: str) -> str:
    """The hashed term of a token search value.

    ``system|code`` -> ``sv:``, ``|code`` -> ``ns:``, ``system|`` -> ``s:``, ``code`` -> ``v:``.
    FHIR escapes (``\\|``, ``\\,``, ``\\$``, ``\\\\``) in the value are undone.
    """
    system, code = _split_token(value)
    if system is None:
        if not code:
            raise InvalidRequest("a token search value must not be empty")
        return "v:" + code
    if system and code:
        return f"sv:{system}|{code}"
    if code:
        return "ns:" + code
    if system:
        return "s:" + system
    raise InvalidRequest("a token search value must have a system, a code or both")


def birthdate_query_term(value: str, prefix: str) -> str:
    """The hashed term of a ``birthdate`` search value (exact dates only)."""
    if prefix not in ("eq", ""):
        raise UnsupportedSearchParameter(
            "birthdate supports only exact dates (YYYY, YYYY-MM or YYYY-MM-DD, prefix 'eq' or "
            "none): birth dates are blind-indexed, so ranges cannot be searched")
    date = value.split("T", 1)[0]
    if len(date) not in (4, 7, 10):
        raise InvalidRequest("birthdate: expected YYYY, YYYY-MM or YYYY-MM-DD")
    parse_date_range(date)  # validates
    return "d:" + date


def split_prefix(value: str) -> tuple[str, str]:
    """``"ge2020-01-01"`` -> ``("ge", "2020-01-01")``; no prefix -> ``("eq", value)``."""
    if value[:2] in DATE_PREFIXES:
        return value[:2], value[2:]
    return "eq", value
