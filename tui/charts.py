"""Charts in block characters, readable in any terminal: column charts and heat cells."""

from __future__ import annotations

import math

from rich.text import Text

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


def heat(value: float | None, threshold: float | None, alert: bool = False) -> Text:
    """A cell coloured by how close a value is to its threshold: green, amber, red once it alerts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Text("  -  ", style="dim")
    ratio = value / threshold if threshold else 0.0
    style = "bold white on red" if alert or ratio >= 1 else "black on yellow" if ratio >= 0.5 else "black on green"
    return Text(f"{value:.3f}", style=style)
