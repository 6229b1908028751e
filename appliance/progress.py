"""How far long work has got: the domain reports steps, and never prints.

A stage opens a step and updates it as it goes::

    with progress.step("materialize fraud", total=len(rows), unit="rows") as s:
        for ...:
            s.update(done, {"valid auc": 0.81})

What is reported reaches three places, each as one line of the open steps (``epoch 7/40 · loss 0.32 ›
batch 120/400``), at most ``LINE_EVERY_S`` apart:

- the terminal: the line on stderr, rewritten in place (``\\r``) once the outermost step has taken
  ``SHOW_AFTER_S`` (quick work stays quiet), ended with a newline when that step ends. When stderr is no
  terminal (systemd, a pipe, a test, ``--json``, the dashboard's captured stderr) nothing is written, so
  logs and JSON stay clean;
- watchers (``watching``): a tracked run records how far its training is, which the Runs tab shows;
- a training worker process hands its lines to the process that waits for it (``draw_with``), which puts
  them on its own terminal, if it has one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping

LINE_EVERY_S = 0.25  # a few lines a second: readable, and cheap for a step updated every iteration
SHOW_AFTER_S = 0.5  # work quicker than this never draws a line

Draw = Callable[[str, bool], None]  # (the line, whether it is the last of its work: end it with a newline)


class Step:
    """One piece of long work: ``done`` of ``total`` (None: not known), and a few values to show beside it."""

    def __init__(self, label: str, total: int | None, unit: str):
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.doing = ""  # the phase of work that has no count (reading a file, one SQL query)
        self.values: dict[str, float | str] = {}
        self.started = time.monotonic()

    def update(
        self, done: int | None = None, values: Mapping[str, float | str] | None = None, doing: str | None = None
    ) -> None:
        """Say how far the work is, what it is doing, and values to show (e.g. the iteration's validation metric)."""
        if done is not None:
            self.done = done
        if doing is not None:
            self.doing = doing
        if values:
            self.values.update(values)
        _report()

    def advance(self, n: int = 1) -> None:
        """``n`` more done."""
        self.update(self.done + n)

    def text(self) -> str:
        """The step as its line shows it: ``epoch 7/40 · loss 0.32``, ``ingest fraud · reading x.csv``."""
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}" if self.done else ""
        parts = [" ".join(p for p in (self.label, count, self.unit if count else "") if p)]
        parts += [self.doing] if self.doing else []
        parts += [f"{name} {_shown(value)}" for name, value in self.values.items()]
        return " · ".join(parts)


_steps: list[Step] = []
_watchers: list[Callable[[str], None]] = []
_lock = threading.Lock()
_next_line = 0.0
_drawn = False  # a line is on the terminal that the outermost step's end must finish with a newline


def on_terminal(stream: object) -> bool:
    """Whether ``stream`` writes to a terminal a person reads; a stream that only says it is one (Textual's
    captured stderr answers isatty() with True, and has no file descriptor) does not count."""
    try:
        return os.isatty(stream.fileno()) and os.environ.get("TERM") != "dumb"  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def terminal(line: str, last: bool) -> None:
    """Draw the line over the previous one on stderr, when stderr is a terminal."""
    stream = sys.stderr
    if not on_terminal(stream):
        return
    width = shutil.get_terminal_size().columns
    stream.write("\r" + line[: max(width - 1, 1)] + "\x1b[K" + ("\n" if last else ""))
    stream.flush()


_draw: Draw = terminal


def draw_with(draw: Draw) -> None:
    """Send this process's lines to ``draw`` instead of its own terminal (a worker to its parent)."""
    global _draw
    _draw = draw


def draw(line: str, last: bool) -> None:
    """Show a line reported elsewhere (a worker's) as this process shows its own."""
    _draw(line, last)


@contextlib.contextmanager
def step(label: str, total: int | None = None, unit: str = "") -> Iterator[Step]:
    """A step of long work for the block; steps opened inside it show after it on the same line."""
    s = Step(label, total, unit)
    with _lock:
        _steps.append(s)
    try:
        yield s
    finally:
        _end(s)


@contextlib.contextmanager
def watching(watcher: Callable[[str], None]) -> Iterator[None]:
    """Hand ``watcher`` each line while the block runs (a few a second, and the last of each outermost step)."""
    with _lock:
        _watchers.append(watcher)
    try:
        yield
    finally:
        with _lock:
            _watchers.remove(watcher)


def clear() -> None:
    """Take the line off the terminal, so that what is printed next stands on a line of its own; the next
    update draws it again."""
    global _next_line
    with _lock:
        drawn, _next_line = _drawn, 0.0
    if drawn:
        _draw("", False)


def _line() -> str:
    return " › ".join(s.text() for s in _steps)


def _report() -> None:
    global _next_line, _drawn
    now = time.monotonic()
    with _lock:
        if now < _next_line or not _steps:
            return
        _next_line = now + LINE_EVERY_S
        line, watchers = _line(), list(_watchers)
        show = now - _steps[0].started >= SHOW_AFTER_S
        _drawn = _drawn or show
    for watcher in watchers:
        watcher(line)
    if show:
        _draw(line, False)


def _end(s: Step) -> None:
    """Close a step: the outermost one leaves its last line (and a newline) if it drew any."""
    global _drawn, _next_line
    with _lock:
        outermost = bool(_steps) and _steps[0] is s
        line = _line() if outermost else ""
        _steps.remove(s)
        drawn, watchers = _drawn and outermost, list(_watchers) if outermost else []
        if outermost:
            _drawn, _next_line = False, 0.0
    for watcher in watchers:
        watcher(line)
    if drawn:
        _draw(line + f" · {time.monotonic() - s.started:.1f} s", True)


def _shown(value: float | str) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
