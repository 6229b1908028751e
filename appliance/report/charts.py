"""Inline SVG charts for the HTML report, drawn here from plain numbers: lines and bars over dated
event-time windows, and a pair of distributions side by side.

Every text that reaches a chart (a feature's name, a category, a tooltip) is escaped here, so a name like
``<script>`` is drawn as text. Each point carries a ``<title>``: the browser shows its exact figures on
hover, with no script. Sizes are fixed pixels, so a screenshot of the page is the same on every machine."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import NamedTuple, TypeVar

LEFT, RIGHT, TOP, BOTTOM = 56, 14, 12, 30  # room for the y labels on the left, the dates below
FONT = 'font-family="sans-serif" font-size="11" fill="#444"'
GRID = "#e4e4e4"
T = TypeVar("T")


class Series(NamedTuple):
    """One line over the windows; ``None`` values break it. ``alerts`` (one flag per value) ring the points
    that alerted; ``tips`` (one per value) are their hover texts."""

    name: str
    colour: str
    values: list[float | None]
    dashed: bool = False
    markers: bool = True
    alerts: list[bool] | None = None
    tips: list[str] | None = None


class Band(NamedTuple):
    """A shaded range between two lines over the windows (an estimate's confidence band)."""

    colour: str
    lower: list[float | None]
    upper: list[float | None]


class _Frame(NamedTuple):
    """A chart's plot area over its windows and its value range: where a window or a value is drawn."""

    windows: list[datetime]
    width: int
    height: int
    low: float
    high: float

    @property
    def slot(self) -> float:
        """The room one window takes across: bars are drawn in it, and lines start and end half a slot in."""
        return (self.width - LEFT - RIGHT) / max(len(self.windows), 1)

    def x(self, i: int) -> float:
        first, last = self.windows[0], self.windows[-1]
        inner = self.width - LEFT - RIGHT - self.slot
        if last == first:
            return LEFT + self.slot / 2 + inner / 2
        return LEFT + self.slot / 2 + inner * (self.windows[i] - first).total_seconds() / (last - first).total_seconds()

    def y(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return TOP + (self.height - TOP - BOTTOM) * (1 - share)


def dated_lines(
    windows: list[datetime],
    series: Sequence[Series],
    title: str,
    band: Band | None = None,
    width: int = 1180,
    height: int = 300,
    from_zero: bool = False,
) -> str:
    """Lines over dated windows (x: the window's start, as a time scale), with an optional band under them."""
    values = [v for s in series for v in s.values if v is not None]
    if band is not None:
        values += [v for v in band.lower + band.upper if v is not None]
    frame = _frame(windows, values, width, height, from_zero)
    parts = _axes(frame, title)
    if band is not None:
        parts += _band(frame, band)
    for s in series:
        parts += _line(frame, s)
    return _svg(frame, title, parts)


def dated_bars(
    windows: list[datetime], values: list[float | None], colour: str, title: str, tips: list[str], width: int = 580
) -> str:
    """One bar per dated window, from zero."""
    frame = _frame(windows, [v for v in values if v is not None], width, 240, from_zero=True)
    parts = _axes(frame, title)
    bar = max(frame.slot * 0.7, 1.0)
    for i, (value, tip) in enumerate(zip(values, tips)):
        if value is None:
            continue
        top = frame.y(value)
        parts.append(
            f'<rect x="{frame.x(i) - bar / 2:.1f}" y="{top:.1f}" width="{bar:.1f}" '
            f'height="{frame.y(frame.low) - top:.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
    return _svg(frame, title, parts)


def paired_bars(
    labels: list[str],
    reference: list[float],
    current: list[float],
    colours: tuple[str, str],
    title: str,
    width: int = 380,
) -> str:
    """Two distributions over the same labels, as horizontal bars in pairs: the reference's above the
    current window's, each a share of its rows."""
    label_width, row, bar = 120, 22, 8
    height = TOP + row * len(labels) + 18
    top = max([*reference, *current, 0.01])
    scale = (width - label_width - RIGHT - 34) / top
    parts = [f"<title>{escape(title)}</title>"]
    for i, (label, ref, cur) in enumerate(zip(labels, reference, current)):
        y = TOP + i * row
        shown = label if len(label) <= 18 else label[:17] + "…"
        tip = f"{label}: reference {ref:.1%}, current {cur:.1%}"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar + 3}" text-anchor="end" {FONT}>{escape(shown)}'
            f"<title>{escape(tip)}</title></text>"
        )
        for offset, share, colour in ((0, ref, colours[0]), (bar + 1, cur, colours[1])):
            parts.append(
                f'<rect x="{label_width}" y="{y + offset}" width="{max(share * scale, 0.5):.1f}" height="{bar}" '
                f'fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
        parts.append(
            f'<text x="{label_width + max(ref, cur) * scale + 4:.1f}" y="{y + bar + 3}" {FONT}>{cur:.0%}</text>'
        )
    axis = TOP + row * len(labels)
    parts.append(f'<line x1="{label_width}" y1="{TOP - 2}" x2="{label_width}" y2="{axis}" stroke="#999"/>')
    return f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values from at or below ``low`` to at or above ``high``, about ``count`` steps apart."""
    if not high > low:
        low, high = (low - 1, high + 1) if low == 0 else (low - abs(low) * 0.1, high + abs(high) * 0.1)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _frame(windows: list[datetime], values: list[float], width: int, height: int, from_zero: bool) -> _Frame:
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if from_zero:
        low = min(low, 0.0)
    ticks = nice_ticks(low, high + (high - low) * 0.05)  # headroom: a line at the top value stays off the edge
    return _Frame(windows, width, height, ticks[0], ticks[-1])


def _axes(frame: _Frame, title: str) -> list[str]:
    """Horizontal grid lines with their values on the left; the windows' dates below, as many as fit."""
    parts = [f"<title>{escape(title)}</title>"]
    right, bottom = frame.width - RIGHT, frame.height - BOTTOM
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="#fff"/>')
    for tick in nice_ticks(frame.low, frame.high):
        y = frame.y(tick)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{tick:.4g}</text>')
    daily = all(w.hour == 0 and w.minute == 0 for w in frame.windows)
    fits = max(int((right - LEFT) // (62 if daily else 96)), 1)
    every = math.ceil(len(frame.windows) / fits)
    for i in range(0, len(frame.windows), every):
        x = frame.x(i)
        label = frame.windows[i].strftime("%b %d" if daily else "%b %d %H:%M")
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 17}" text-anchor="middle" {FONT}>{label}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>')
    return parts


def _runs(values: Sequence[T | None]) -> list[list[tuple[int, T]]]:
    """(index, value) of each unbroken run of values: a line is drawn through each run, and breaks where a
    value is missing (or not a finite number)."""
    runs: list[list[tuple[int, T]]] = []
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if runs and runs[-1][-1][0] == i - 1:
            runs[-1].append((i, value))
        else:
            runs.append([(i, value)])
    return runs


def _line(frame: _Frame, s: Series) -> list[str]:
    parts = []
    dash = ' stroke-dasharray="7 4"' if s.dashed else ""
    runs = _runs(s.values)
    for run in runs:
        points = " ".join(f"{frame.x(i):.1f},{frame.y(v):.1f}" for i, v in run)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{s.colour}" stroke-width="2.5"{dash} '
            f'stroke-linejoin="round"><title>{escape(s.name)}</title></polyline>'
        )
    if not s.markers:
        return parts
    for i, v in (point for run in runs for point in run):
        alert = s.alerts is not None and s.alerts[i]
        ring = ' stroke="#d62728" stroke-width="2"' if alert else ""
        tip = s.tips[i] if s.tips else f"{s.name}: {v:.4g}"
        parts.append(
            f'<circle cx="{frame.x(i):.1f}" cy="{frame.y(v):.1f}" r="{5 if alert else 3.5}" fill="{s.colour}"{ring}>'
            f"<title>{escape(tip)}</title></circle>"
        )
    return parts


def _band(frame: _Frame, band: Band) -> list[str]:
    """The band as one polygon per run of windows with both bounds; a lone window's band is a short bar."""
    parts = []
    spans = [None if lo is None or up is None else (lo, up) for lo, up in zip(band.lower, band.upper)]
    for run in _runs(spans):
        half = max(frame.slot * 0.2, 4) if len(run) == 1 else 0.0
        upper = [
            f"{frame.x(i) - half:.1f},{frame.y(up):.1f} {frame.x(i) + half:.1f},{frame.y(up):.1f}" for i, (_, up) in run
        ]
        lower = [
            f"{frame.x(i) + half:.1f},{frame.y(lo):.1f} {frame.x(i) - half:.1f},{frame.y(lo):.1f}" for i, (lo, _) in run
        ]
        parts.append(f'<polygon points="{" ".join(upper + lower[::-1])}" fill="{band.colour}"/>')
    return parts


def _svg(frame: _Frame, title: str, parts: list[str]) -> str:
    return (
        f'<svg width="{frame.width}" height="{frame.height}" '
        f'viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>'
    )
