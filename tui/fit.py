"""Tables that fit the tab's width, as Overview's do: where every column does not fit, the columns that identify
and judge a row stay and the rest go (they are in the row's detail below the table), dates shorten, and the
free-text columns (a name, a message) are cut with "…" to the room the others leave; nothing is cut off the
right edge, so a table never scrolls sideways."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widgets import DataTable

from tui.view import View

CELL_PADDING = 2  # a DataTable pads each cell by one on either side
SCROLLBAR = 2  # kept free for the table's vertical scrollbar, which shows once its rows overflow
SHORTEST_CUT = 8  # a cut column keeps at least this many characters: fewer say nothing
WHOLE_CUT = 24  # nor fewer than this with every column shown: dropping the others says more


class Column(NamedTuple):
    header: str
    narrow: bool = True  # kept where the whole table does not fit: it identifies or judges a row
    cut: bool = False  # free text: cut with "…" to the room the other columns leave


Row = tuple[str, Sequence[str]]  # the row's key, and its cells in every column
Rows = Callable[[bool], Sequence[Row]]  # the rows, with short cells (dates) where narrow


def short_when(moment: float | datetime | None) -> str:
    """A time as 'MM-DD HH:MM' UTC, for a narrow column (the year is the detail's)."""
    if moment is None:
        return "-"
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%m-%d %H:%M")
    return datetime.fromtimestamp(moment, UTC).strftime("%m-%d %H:%M")


def fill(table: DataTable, columns: Sequence[Column], rows: Rows, width: int) -> bool:
    """Fill ``table`` with ``rows`` in the columns that fit ``width`` (every one, else the narrow ones) and
    column widths that add up to it at most; True where it is narrow. The cells keep their whole text (a cut
    one is cut on screen only), so what a row says is the same at any width."""
    room = width - SCROLLBAR
    for narrow in (False, True):
        shown = [c for c in columns if c.narrow or not narrow]
        at = [columns.index(c) for c in shown]
        found = [(key, [cells[i] for i in at]) for key, cells in rows(narrow)]
        natural = [max([cell_len(c.header), *(cell_len(cells[j]) for _, cells in found)]) for j, c in enumerate(shown)]
        shortest = SHORTEST_CUT if narrow else WHOLE_CUT
        widths = _widths(natural, [c.cut for c in shown], room - CELL_PADDING * len(shown), shortest)
        if widths is not None:
            break
    if widths is None:  # not even the narrow columns fit: each cut one at its shortest, the table scrolls
        widths = [min(n, SHORTEST_CUT) if c.cut else n for n, c in zip(natural, shown)]
    table.clear(columns=True)
    for c, w in zip(shown, widths):
        table.add_column(c.header, width=w)
    for key, cells in found:
        table.add_row(
            *(Text(cell, overflow="ellipsis", no_wrap=True) if c.cut else cell for c, cell in zip(shown, cells)),
            key=key,
        )
    return narrow


def _widths(natural: list[int], cut: list[bool], room: int, shortest: int) -> list[int] | None:
    """Each column's width within ``room``: the others whole, the cut ones sharing what is left evenly (one
    shorter than its share keeps its own width and leaves the rest to the others), none shorter than
    ``shortest``; None where that does not fit."""
    if sum(natural) <= room:
        return natural
    left = room - sum(n for n, c in zip(natural, cut) if not c)
    cuttable = sorted((n, i) for i, (n, c) in enumerate(zip(natural, cut)) if c)
    if not cuttable or left < sum(min(n, shortest) for n, _ in cuttable):
        return None
    widths = list(natural)
    for k, (n, i) in enumerate(cuttable):  # the shortest first: what one does not need goes to the longer ones
        share = left // (len(cuttable) - k)
        widths[i] = max(min(n, shortest), min(n, share))
        left -= widths[i]
    return widths


class FittingView(View):
    """A tab whose tables fit its width: shown again from what it last gathered when its width changes."""

    found: Any = None  # what ``show`` was last given
    shown_width = 0  # the width the tables were last fitted to

    @property
    def width(self) -> int:
        """The tab's width; before its first layout, the screen's."""
        return self.size.width or self.app.size.width

    def fill(self, table: DataTable, columns: Sequence[Column], rows: Rows, gutter: int = 0) -> bool:
        """``fill`` the table to the tab's width less ``gutter`` (a scrolling pane's bar around it)."""
        self.shown_width = self.width
        return fill(table, columns, rows, self.width - gutter)

    def on_resize(self, event: events.Resize) -> None:
        if self.found is not None and event.size.width != self.shown_width:
            self.show(self.found)
