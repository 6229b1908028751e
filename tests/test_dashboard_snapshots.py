"""Every tab of the dashboard at 80×24 and 160×50 over fixed data (tests/dashboard_data.py), compared with its
SVG snapshot in tests/__snapshots__/ on every run, so that a broken layout fails a test. A change meant to move
the screen rewrites them: `pytest tests/test_dashboard_snapshots.py --snapshot-update`, then look at them."""

from __future__ import annotations

import pytest
import pytest_textual_snapshot
from dashboard_data import ROOT, SUB_TITLE, FixedDirectory
from test_tui import settle
from textual.containers import VerticalScroll

from tui.app import TABS, Dashboard

# The plugin (1.0.0) names its extension for syrupy before 5, which reads ``file_extension``: without this the
# snapshots are written as .raw files, which no browser or code review shows as the pictures they are.
pytest_textual_snapshot.SVGImageExtension.file_extension = "svg"

SIZES = {"80x24": (80, 24), "160x50": (160, 50)}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("key", [str(i) for i in range(1, len(TABS) + 1)], ids=[tab for tab, _, _ in TABS])
def test_tab_looks_as_its_snapshot(snap_compare, key: str, size: tuple[int, int]) -> None:
    app = Dashboard(ROOT, refresh_seconds=0, data=FixedDirectory())

    async def run_before(pilot) -> None:
        pilot.app.sub_title = SUB_TITLE
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        # The screen as it stands once the tab has refreshed (f5 stands in for the live tick, off here): a tab
        # drawn as it was shown can have drawn before its first layout, at width 0 (Runs' training curve).
        await pilot.press("f5")
        await settle(pilot)
        # Focusing a tab's table scrolls its pane to centre it, or not, depending on whether its rows came first
        # (when it does, GPU & cost at 80×24 loses its first line): each pane from its top.
        for pane in pilot.app.active_view().query(VerticalScroll):
            pane.scroll_home(animate=False)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
