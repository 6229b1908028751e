"""The log pane: every log line and the demo's narrative inside the dashboard, never written over it.

While the dashboard owns the terminal, anything written to stderr lands on top of its screen. So for as
long as it runs, the root logger (and Python's warnings) writes into a `LogFeed` instead, and the pane at
the bottom of the dashboard shows the feed. Lines may come from any thread (the API server, the
scheduler, the demo replay) and before the pane exists (the demo starts with the server): the feed keeps
them until the pane attaches, then posts each one to it, which is the one thread-safe way into a Textual
widget.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from textual.message import Message
from textual.widgets import Log

KEEP = 1000  # lines the pane scrolls back through, and the feed keeps before the pane attaches


class LogFeed:
    """Lines for the pane from any thread; kept until the pane attaches, then handed straight on."""

    def __init__(self, keep: int = KEEP):
        self._lock = threading.Lock()
        self._waiting: deque[str] = deque(maxlen=keep)
        self._sink: Callable[[str], None] | None = None

    def say(self, line: str) -> None:
        """A narrative line (the demo's, the API address), stamped with the local time like a log line."""
        self.write(f"{datetime.now():%H:%M:%S} {line}")

    def write(self, line: str) -> None:
        with self._lock:
            sink = self._sink
            if sink is None:
                self._waiting.append(line)
                return
        sink(line)

    def attach(self, sink: Callable[[str], None]) -> list[str]:
        """From now on lines go to ``sink``; returns those that came before, oldest first."""
        with self._lock:
            self._sink = sink
            backlog = list(self._waiting)
            self._waiting.clear()
        return backlog

    def detach(self) -> None:
        with self._lock:
            self._sink = None


class _FeedHandler(logging.Handler):
    def __init__(self, feed: LogFeed):
        super().__init__()
        self.feed = feed
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            for line in self.format(record).splitlines():  # a traceback is several lines of the pane
                self.feed.write(line)
        except Exception:
            self.handleError(record)


@contextmanager
def logging_into(feed: LogFeed) -> Iterator[None]:
    """Route the root logger and warnings into ``feed`` for the block; the handlers before are restored after
    (what is logged once the dashboard has quit, such as the server stopping, goes to the terminal again)."""
    root = logging.getLogger()
    before = root.handlers[:]
    root.handlers[:] = [_FeedHandler(feed)]
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = before


class LogPane(Log):
    """The bottom of the dashboard: the newest lines of the feed, scrolling."""

    DEFAULT_CSS = """
    LogPane { dock: bottom; height: 6; border-top: solid $primary-darken-2; overflow-x: hidden; overflow-y: auto; }
    LogPane.hidden { display: none; }
    """

    class Line(Message):
        def __init__(self, text: str):
            super().__init__()
            self.text = text

    def __init__(self, feed: LogFeed, **kwargs):
        super().__init__(max_lines=KEEP, **kwargs)
        self.feed = feed
        self.border_title = "log (l hides)"

    def on_mount(self) -> None:
        for line in self.feed.attach(self._post):
            self.write_line(line)

    def _post(self, text: str) -> None:
        self.post_message(self.Line(text))

    def on_unmount(self) -> None:
        self.feed.detach()

    def on_log_pane_line(self, message: LogPane.Line) -> None:
        self.write_line(message.text)
