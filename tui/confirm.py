"""The confirmation every action passes: what will change, the evidence, and a way out."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class Confirm(ModalScreen[bool]):
    """Asks before an action; dismisses with True only on the confirm button (or y)."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical { width: 95%; max-width: 110; height: 90%; max-height: 40; border: thick $warning;
                         background: $surface; padding: 0 1; }
    Confirm #title { text-style: bold; padding-bottom: 1; }
    Confirm VerticalScroll { height: 1fr; }
    Confirm Horizontal { height: 3; align-horizontal: right; }
    Confirm Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Confirm"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, body: str, confirm: str = "Confirm"):
        super().__init__()
        self.title_text, self.body, self.confirm = title, body, confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="title")
            with VerticalScroll():
                yield Static(self.body, id="body", markup=False)
            with Horizontal():
                yield Button("Cancel (n)", id="cancel")
                yield Button(f"{self.confirm} (y)", id="confirm", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # Enter alone never changes production

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class Choose(ModalScreen[str | None]):
    """Asks which of a few ways to go on; dismisses with the chosen key's value, or None (n, escape)."""

    DEFAULT_CSS = """
    Choose { align: center middle; }
    Choose > Vertical { width: auto; max-width: 95%; height: auto; border: thick $accent; background: $surface;
                        padding: 0 1; }
    Choose #title { text-style: bold; padding-bottom: 1; }
    Choose Horizontal { height: 3; width: auto; }
    Choose Button { margin-right: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("n,escape", "choose(None)", "Cancel")]

    def __init__(self, title: str, choices: dict[str, tuple[str, str]]):
        """``choices``: key → (label, value); pressing the key or its button picks the value."""
        super().__init__()
        self.title_text, self.choices = title, choices

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="title")
            with Horizontal():
                for key, (label, _) in self.choices.items():
                    yield Button(f"{label} ({key})", id=f"choice-{key}")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        key = (event.button.id or "").removeprefix("choice-")
        self.action_choose(self.choices[key][1] if key in self.choices else None)

    def on_key(self, event: events.Key) -> None:
        if event.key in self.choices:
            event.stop()
            self.action_choose(self.choices[event.key][1])

    def action_choose(self, value: str | None) -> None:
        self.dismiss(value)
