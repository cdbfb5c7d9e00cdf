"""The vital-signs chart of the record page: inline SVG computed on the server.

No chart library and no script: the coordinates are computed here and the template draws
``<polyline>`` and markers (styled by classes in ``static/css/clinical.css``, as the CSP forbids
inline styles). Each chart carries a text description and comes with a table of the same values
(screen readers, print). Everything here works on resources that already passed the gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from hygie.gate import Found
from hygie.web.record import display_date

LOINC = "http://loinc.org"
WEIGHT = "29463-7"
HEIGHT = "8302-2"
BP_PANEL = "85354-9"
SYSTOLIC = "8480-6"
DIASTOLIC = "8462-4"
TEMPERATURE = "8310-5"
HEART_RATE = "8867-4"
MAX_POINTS = 60  # the most recent measurements of each chart

WIDTH, HEIGHT_PX = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 24, 14, 36

Tr = Callable[[str], str]


@dataclass
class Marker:
    x: float
    y: float
    label: str  # "12/03/2024 : 72,5 kg" (a tooltip; the table is the accessible version)


@dataclass
class Series:
    name: str
    css: str  # class of the line and markers (colour AND dash pattern / marker shape)
    shape: str  # "circle" | "square"
    points: str = ""  # the polyline's "x,y x,y ..."
    markers: list[Marker] = field(default_factory=list)


@dataclass
class Chart:
    id: str
    title: str
    unit: str
    description: str
    columns: list[str]  # table header after the date
    rows: list[tuple[str, list[str]]]  # (display date, values) newest first
    series: list[Series] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT_PX
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT_PX - BOTTOM


def number(value: float, lang: str) -> str:
    """72.5 -> "72,5" in French; integers without decimals."""
    text = f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return text.replace(".", ",") if lang == "fr" else text


def _loinc(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {str(c.get("code")) for c in concept.get("coding") or []
            if isinstance(c, dict) and c.get("system") == LOINC}


def _value(node: dict[str, Any]) -> float | None:
    q = node.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"])
    return None


def _when(doc: dict[str, Any]) -> str:
    value = doc.get("effectiveDateTime") or doc.get("issued")
    if not value and isinstance(doc.get("effectivePeriod"), dict):
        value = doc["effectivePeriod"].get("start")
    return str(value or "")


def _epoch(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value[:10])
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


Weights = list[tuple[str, float]]
Pressures = list[tuple[str, float, float]]


def vitals(resources: list[Found]) -> tuple[Weights, Pressures]:
    """(weights, blood pressures) as (date, value(s)), oldest first, from Observations."""
    weights: list[tuple[str, float]] = []
    pressures: dict[str, list[float | None]] = {}
    for found in resources:
        if found.rtype != "Observation" or found.body is None:
            continue
        doc = orjson.loads(found.body)
        if doc.get("status") in ("entered-in-error", "cancelled"):
            continue
        codes, when = _loinc(doc.get("code")), _when(doc)
        if not when or _epoch(when) is None:
            continue
        if WEIGHT in codes and (v := _value(doc)) is not None:
            weights.append((when, v))
        elif BP_PANEL in codes or SYSTOLIC in codes or DIASTOLIC in codes:
            pair = pressures.setdefault(when, [None, None])
            parts = [(doc, codes)] + [(c, _loinc(c.get("code")))
                                      for c in doc.get("component") or [] if isinstance(c, dict)]
            for node, node_codes in parts:
                if (v := _value(node)) is not None:
                    if SYSTOLIC in node_codes:
                        pair[0] = v
                    elif DIASTOLIC in node_codes:
                        pair[1] = v
    bp = [(when, s, d) for when, (s, d) in pressures.items() if s is not None and d is not None]
    weights.sort(key=lambda p: _epoch(p[0]) or 0.0)
    bp.sort(key=lambda p: _epoch(p[0]) or 0.0)
    return weights[-MAX_POINTS:], bp[-MAX_POINTS:]


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        low, high = low - 1, high + 1
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 6))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 6))
    return ticks


def _layout(chart: Chart, dates: list[str], columns: list[list[float]], lang: str) -> list[
        list[tuple[float, float]]]:
    """Scale (date, value) pairs to the plot area; set the axis ticks. One list per column."""
    times = [_epoch(d) or 0.0 for d in dates]
    values = [v for col in columns for v in col]
    ticks = _nice_ticks(min(values), max(values))
    y_low, y_high = ticks[0], ticks[-1]
    t_low, t_high = min(times), max(times)

    def x_of(t: float) -> float:
        if t_high == t_low:
            return (chart.left + chart.right) / 2
        return chart.left + (t - t_low) / (t_high - t_low) * (chart.right - chart.left)

    def y_of(v: float) -> float:
        return chart.bottom - (v - y_low) / (y_high - y_low) * (chart.bottom - chart.top)

    chart.y_ticks = [(round(y_of(t), 1), number(t, lang)) for t in ticks]
    picks = sorted({0, len(dates) - 1, (len(dates) - 1) // 2}) if len(dates) > 2 else \
        list(range(len(dates)))
    chart.x_ticks = [(round(x_of(times[i]), 1), display_date(dates[i], lang)) for i in picks]
    return [[(round(x_of(t), 1), round(y_of(v), 1)) for t, v in zip(times, col, strict=True)]
            for col in columns]


def _series(name: str, css: str, shape: str, coords: list[tuple[float, float]],
            labels: list[str]) -> Series:
    s = Series(name, css, shape, " ".join(f"{x},{y}" for x, y in coords))
    s.markers = [Marker(x, y, label) for (x, y), label in zip(coords, labels, strict=True)]
    return s


def build(resources: list[Found], _: Tr, lang: str) -> list[Chart]:
    """The weight and blood-pressure charts (only those with at least one measurement)."""
    weights, pressures = vitals(resources)
    charts: list[Chart] = []
    if weights:
        dates = [d for d, _v in weights]
        kg = [v for _d, v in weights]
        values = [f"{number(v, lang)} kg" for v in kg]
        chart = Chart("chart-weight", _("Poids"), "kg", _(
            "Poids : {n} mesure(s) du {first} au {last}, de {low} à {high} kg ; dernière "
            "mesure {latest} kg.").format(
                n=len(kg), first=display_date(dates[0], lang),
                last=display_date(dates[-1], lang), low=number(min(kg), lang),
                high=number(max(kg), lang), latest=number(kg[-1], lang)),
            [_("Poids (kg)")],
            [(display_date(d, lang), [v]) for d, v in zip(dates, values, strict=True)][::-1])
        (coords,) = _layout(chart, dates, [kg], lang)
        chart.series = [_series(_("Poids"), "series-weight", "circle", coords,
                                [f"{display_date(d, lang)} : {v}"
                                 for d, v in zip(dates, values, strict=True)])]
        charts.append(chart)
    if pressures:
        dates = [d for d, _s, _d in pressures]
        sys_, dia = [s for _w, s, _d in pressures], [d for _w, _s, d in pressures]
        chart = Chart("chart-bp", _("Pression artérielle"), "mmHg", _(
            "Pression artérielle : {n} mesure(s) du {first} au {last} ; dernière mesure "
            "{sys}/{dia} mmHg (systolique/diastolique).").format(
                n=len(dates), first=display_date(dates[0], lang),
                last=display_date(dates[-1], lang), sys=number(sys_[-1], lang),
                dia=number(dia[-1], lang)),
            [_("Systolique (mmHg)"), _("Diastolique (mmHg)")],
            [(display_date(d, lang), [number(s, lang), number(di, lang)])
             for d, s, di in pressures][::-1])
        c_sys, c_dia = _layout(chart, dates, [sys_, dia], lang)
        chart.series = [
            _series(_("Systolique"), "series-systolic", "circle", c_sys,
                    [f"{display_date(d, lang)} : {number(v, lang)} mmHg"
                     for d, v in zip(dates, sys_, strict=True)]),
            _series(_("Diastolique"), "series-diastolic", "square", c_dia,
                    [f"{display_date(d, lang)} : {number(v, lang)} mmHg"
                     for d, v in zip(dates, dia, strict=True)])]
        charts.append(chart)
    return charts
