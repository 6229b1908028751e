"""Charts for the terminal: block-character column charts, heat cells and paired bars of distributions, and
plotext charts of lines over dated event-time windows (the windows' dates on the x axis, round values on the y
axis, the legend above the plot)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from plotext._dict import color_codes  # type: ignore[import-untyped]  # (textual-plotext reads it too)
from rich.color import Color
from rich.style import Style
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
    color: str | None = None  # a plotext colour (PLOTEXT_COLORS); None: the next of LINE_COLORS
    dashed: bool = False  # a reference, e.g. a threshold: drawn dashed and under the values


PLOTEXT_COLORS = frozenset(color_codes)  # the names plotext knows ("orange+", not "yellow+")
LINE_COLORS = ("cyan+", "green+", "orange+", "magenta+", "blue+", "white")
# The finest plotext marker (braille: two by four dots a cell), so that lines with close values stay apart
LINE_MARKER = "braille"
DASH = "┄"  # a reference line's marker: one light dash a cell
MOST_Y_TICKS = 5


def round_ticks(low: float, high: float, most: int = MOST_Y_TICKS) -> list[float]:
    """At most ``most`` (three or more: two cannot always straddle zero) evenly spaced ticks at round values
    (1, 2, 2.5 or 5 times a power of ten) from at or below ``low`` to at or above ``high``."""
    if high <= low:  # one value: a unit around it
        low, high = low - (abs(low) or 1.0) / 2, high + (abs(high) or 1.0) / 2
    magnitude = 10.0 ** math.floor(math.log10((high - low) / (most - 1)))
    while True:
        for m in (1, 2, 2.5, 5):
            step = float(f"{m * magnitude:.6g}")
            first, last = math.floor(low / step), math.ceil(high / step)
            if last - first < most:
                return [float(f"{i * step:.12g}") for i in range(first, last + 1)]
        magnitude *= 10


def tick_labels(ticks: list[float]) -> list[str]:
    """Ticks written with as many decimals as their step needs: 0.25 and 0.5 as "0.25", "0.50"."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else ticks[0]
    exponent = Decimal(f"{step:.6g}").normalize().as_tuple().exponent
    decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    return [f"{t:.{decimals}f}" for t in ticks]


class DatedChart(PlotextPlot):
    """Lines over event-time windows, the x axis in time with the windows' dates as ticks (as many as the
    width fits, the newest always among them), the y axis with a few round ticks; the title and a legend of the
    lines on the lines above the plot, never over it."""

    DEFAULT_CSS = "DatedChart { height: 14; }"

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.windows: list[datetime] = []
        self.title = ""
        self.lines: list[Line] = []  # those drawn, with their colours, for the legend
        self.span: tuple[float, float] | None = None  # the lowest and highest value drawn

    def draw(self, title: str, windows: Sequence[datetime], lines: Sequence[Line]) -> None:
        self.windows, self.title = list(windows), title
        plt = self.plt
        plt.clear_figure()
        x = [w.timestamp() for w in self.windows]
        coloured = [  # a name plotext does not know would draw in a colour the legend could not show
            line if line.color in PLOTEXT_COLORS else line._replace(color=LINE_COLORS[i % len(LINE_COLORS)])
            for i, line in enumerate(lines)
        ]
        drawn, values = [], []
        for line in sorted(coloured, key=lambda line: not line.dashed):  # the references first: values over them
            points = [(at, v) for at, v in zip(x, line.values) if v is not None and not math.isnan(v)]
            if points:
                plt.plot(*zip(*points), color=line.color, marker=DASH if line.dashed else LINE_MARKER)
                drawn.append(line.label)
                values += [v for _, v in points]
        self.lines = [line for line in coloured if line.label in drawn]
        self.span = (min(values), max(values)) if values else None
        self.refresh()

    def _head(self, width: int) -> list[Text]:
        """The title, then the legend: each line's marker in its colour and its label."""
        legend = Text("  ").join(
            Text(DASH * 2 if line.dashed else "──", Style(color=Color.from_ansi(color_codes[line.color])))
            + f" {line.label}"
            for line in self.lines
        )
        lines = [*Text(self.title, style="bold").wrap(self.app.console, width), *legend.wrap(self.app.console, width)]
        for line in lines:
            line.align("center", width)
        return lines

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
        width, height = self.size
        head = self._head(width)
        plot = max(1, height - len(head))
        plt = self.plt
        ticks = self._ticks()
        if ticks:
            plt.xticks([at for at, _ in ticks], [label for _, label in ticks])
        if self.span is not None:  # a tick every other row at most: the frame and the dates take three
            y = round_ticks(*self.span, most=max(3, min(MOST_Y_TICKS, (plot - 3) // 2 + 1)))
            plt.yticks(y, tick_labels(y))
            plt.ylim(y[0], y[-1])
        # as PlotextPlot.render does, at the height the title and legend leave
        plt.plotsize(width, plot)
        plt._set_size(width, plot)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        return Text("\n").join([*head, Text.from_ansi(plt.build())])


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
