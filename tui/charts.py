"""Charts for the terminal: block-character column charts, heat cells and paired bars of distributions, and
plotext charts of lines over dated event-time windows (the windows' dates on the x axis)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

BLOCKS = " ▁▂▃▄▅▆▇█"


def column_chart(values: list[float], width: int = 60, height: int = 5) -> list[str]:
    """Values as columns ``height`` rows high, resampled to ``width`` columns; the scale is on the right."""
    points = [v for v in values if v is not None and not math.isnan(v)]
    if not points:
        return ["(no points)"]
    shown = _resample([v if v is not None and not math.isnan(v) else None for v in values], width)
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    eighths = [None if v is None else round((v - low) / span * (height * 8 - 1)) + 1 for v in shown]
    rows = []
    for row in range(height - 1, -1, -1):
        line = "".join(" " if e is None else BLOCKS[max(0, min(8, e - row * 8))] for e in eighths)
        label = f"{high:.4g}" if row == height - 1 else f"{low:.4g}" if row == 0 else ""
        rows.append(f"{line} {label}")
    return rows


def _resample(values: list[float | None], width: int) -> list[float | None]:
    if len(values) <= width:
        return values
    return [values[int(i * len(values) / width)] for i in range(width)]


def heat(value: float | None, score: float | None) -> Text:
    """A statistic's raw value, coloured by its score (the value against its own threshold, so statistics on
    different scales share one): green below 0.5, amber to 1, red at 1 and above, where it alarms; plain text
    where the statistic has no threshold."""
    if value is None or math.isnan(value):
        return Text("  -  ", style="dim")
    shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if score is None or math.isnan(score):
        return Text(shown)
    style = "bold white on red" if score >= 1 else "black on yellow" if score >= 0.5 else "black on green"
    return Text(shown, style=style)


def window_dates(windows: Sequence[datetime]) -> list[str]:
    """Short labels of event-time windows: the day ("10-20") when every window starts at midnight, else the day
    and the hour ("10-20 14:00")."""
    utc = [w.astimezone(UTC) for w in windows]
    daily = all(w.hour == 0 and w.minute == 0 for w in utc)
    return [w.strftime("%m-%d" if daily else "%m-%d %H:%M") for w in utc]


class Line(NamedTuple):
    label: str
    values: Sequence[float | None]  # one per window; None where there is no value
    color: str | None = None


class DatedChart(PlotextPlot):
    """Lines over event-time windows, the x axis in time with the windows' dates as ticks (as many as the
    width fits, the newest always among them)."""

    DEFAULT_CSS = "DatedChart { height: 14; }"

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.windows: list[datetime] = []

    def draw(self, title: str, windows: Sequence[datetime], lines: Sequence[Line]) -> None:
        self.windows = list(windows)
        plt = self.plt
        plt.clear_figure()
        plt.title(title)
        x = [w.timestamp() for w in self.windows]
        for line in lines:
            points = [(at, v) for at, v in zip(x, line.values) if v is not None and not math.isnan(v)]
            if points:
                plt.plot(*zip(*points), label=line.label, color=line.color)
        self.refresh()

    def dates(self) -> list[str]:
        """The dates on the x axis at the chart's width."""
        return [label for _, label in self._ticks()]

    def _ticks(self) -> list[tuple[float, str]]:
        labels = window_dates(self.windows)
        fit = max(2, (self.size.width - 8) // (len(labels[0]) + 4)) if labels else 0
        step = max(1, math.ceil(len(labels) / fit)) if fit else 1
        chosen = list(range(len(labels) - 1, -1, -step))[::-1]  # counted back from the newest window
        return [(self.windows[i].timestamp(), labels[i]) for i in chosen]

    def render(self) -> RenderResult:
        ticks = self._ticks()
        if ticks:
            self.plt.xticks([at for at, _ in ticks], [label for _, label in ticks])
        return super().render()


PARTIAL = " ▏▎▍▌▋▊▉"  # eighths of a character cell, left to right
PAIR_STYLES = ("blue", "dark_orange")


def paired_bars(labels: Sequence[str], series: dict[str, Sequence[float]], width: int) -> Text:
    """Shares of distributions over the same labels as bars side by side: under each label a line per series
    with its bar and its percent of rows, on one scale (the largest share fills the width)."""
    label_width = max(len(label) for label in labels)
    name_width = max(len(name) for name in series)
    bar_width = max(10, width - label_width - name_width - 12)
    top = max((share for shares in series.values() for share in shares), default=0.0) or 1.0
    text = Text(no_wrap=True)
    for i, label in enumerate(labels):
        for j, (name, shares) in enumerate(series.items()):
            eighths = round(shares[i] / top * bar_width * 8)
            bar = "█" * (eighths // 8) + PARTIAL[eighths % 8].strip()
            text.append(f"{label if j == 0 else '':<{label_width}}  {name:<{name_width}} ")
            text.append(f"{bar:<{bar_width}}", style=PAIR_STYLES[j % len(PAIR_STYLES)])
            text.append(f" {100 * shares[i]:5.1f} %\n")
    text.rstrip()
    return text
