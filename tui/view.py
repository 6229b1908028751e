"""A dashboard tab: gathers its data on a worker thread, then shows it, never blocking the screen."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from appliance.errors import ApplianceError
from storage.errors import StorageError
from tui.data_dir import DataDirectory


class View(Vertical):
    """Subclasses implement ``gather`` (worker thread, returns data) and ``show`` (UI thread)."""

    live = False  # reloaded on the app's refresh tick while visible

    @property
    def data(self) -> DataDirectory:
        return self.app.data  # type: ignore[attr-defined]

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Gather and show again; the first load shows a loading indicator."""
        if not getattr(self, "_shown", False):
            self.loading = True
        self._gather()

    @work(thread=True, exclusive=True, group="gather")
    def _gather(self) -> None:
        self.in_worker(self.gather, self._show)

    def in_worker(self, gather, show) -> None:
        """On a worker thread: gather, then show on the UI thread; quiet once the app has closed its data."""
        try:
            found = gather()
        except (ApplianceError, StorageError) as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        except Exception:
            if self.data.closed:  # the app quit while this worker read
                return
            raise
        if not self.data.closed:
            self.app.call_from_thread(show, found)

    def _show(self, found: Any) -> None:
        self._shown = True
        self.loading = False
        self.show(found)

    def _failed(self, message: str) -> None:
        self.loading = False
        self.notify(message, severity="error", timeout=8)

    def gather(self) -> Any:
        raise NotImplementedError

    def show(self, found: Any) -> None:
        raise NotImplementedError

    def act(self, action, done: str) -> None:
        """Run an action on a worker; say ``done`` (formatted with its result) or the error, then reload."""
        self._act(action, done)

    @work(thread=True, group="act")
    def _act(self, action, done: str) -> None:
        try:
            result = action()
        except (ApplianceError, StorageError) as e:
            self.app.call_from_thread(self.notify, str(e), severity="error", timeout=10)
        else:
            self.app.call_from_thread(self.notify, done.format(result=result), timeout=6)
        self.app.call_from_thread(self.app.reload_all)  # type: ignore[attr-defined]


class Empty(Static):
    """A plain sentence where data would be, saying what to do to get some."""

    DEFAULT_CSS = "Empty { color: $text-muted; padding: 1 2; }"

    def update(self, content="") -> None:
        super().update(content)
        self.display = bool(content)  # an empty sentence takes no room


def table_and_detail(name: str, detail: str) -> ComposeResult:
    """A list tab's body: the sentence shown where it has no rows (``{name}-empty``), its table
    (``{name}-table``) and, scrolling below it, the chosen row's detail (the Static ``detail``)."""
    yield Empty("", id=f"{name}-empty")
    yield DataTable(id=f"{name}-table", cursor_type="row", zebra_stripes=True)
    with VerticalScroll():
        yield Static("", id=detail, markup=False)
