"""Small modal dialogs: a yes/no confirmation and a one-line prompt."""

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

DIALOG_CSS = """
Vertical { width: 60; height: auto; padding: 1 2; border: thick $accent; background: $surface; }
"""


class ConfirmDialog(ModalScreen[bool]):
    """`y` confirms, anything else (`n`, `esc`) declines."""

    DEFAULT_CSS = "ConfirmDialog { align: center middle; }" + DIALOG_CSS
    BINDINGS = [("y", "answer(True)", "Yes"), ("n", "answer(False)", "No"), ("escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Label("[b]y[/b] yes    [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptDialog(ModalScreen[str | None]):
    """One line of input; Enter returns it, `esc` returns None."""

    DEFAULT_CSS = "PromptDialog { align: center middle; }" + DIALOG_CSS
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, label: str, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.label, self.placeholder, self.value = label, placeholder, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.label)
            yield Input(value=self.value, placeholder=self.placeholder)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
