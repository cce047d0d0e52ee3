"""Modal dialogs: a yes/no confirmation, a one-line prompt, and the deploy form."""

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tenants.catalog import Template
from tenants.errors import Invalid
from tenants.names import check_name
from tenants.schemas import AppSpec

DIALOG_CSS = """
#dialog { width: 70; height: auto; max-height: 90%; padding: 1 2; border: thick $accent; background: $surface; }
"""


class ConfirmDialog(ModalScreen[bool]):
    """`y` confirms, anything else (`n`, `esc`) declines."""

    DEFAULT_CSS = "ConfirmDialog { align: center middle; }" + DIALOG_CSS
    BINDINGS = [("y", "answer(True)", "Yes"), ("n", "answer(False)", "No"), ("escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
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
        with Vertical(id="dialog"):
            yield Label(self.label)
            yield Input(value=self.value, placeholder=self.placeholder)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class DeployDialog(ModalScreen[tuple[str, AppSpec] | None]):
    """A deploy form: app name, image, replicas, and the template's environment (required ones marked *).
    Returns (app name, spec), or None when cancelled; bad input is said under the form, nothing is sent."""

    DEFAULT_CSS = "DeployDialog { align: center middle; } #error { color: $error; }" + DIALOG_CSS
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, tenant: str, template: Template | None = None) -> None:
        super().__init__()
        self.tenant = tenant
        self.template = template or Template(name="", description="", image="")

    def compose(self) -> ComposeResult:
        t = self.template
        with Vertical(id="dialog"):
            yield Label(f"Deploy to [b]{self.tenant}[/b]" + (f": {t.description}" if t.description else ""))
            yield Input(value=t.name, placeholder="app name (a DNS label)", id="app")
            yield Input(value=t.image, placeholder="image, e.g. strata/hello", id="image")
            yield Input(value=str(t.replicas), placeholder="replicas", id="replicas")
            for field in t.env:
                mark = "*" if field.required else ""
                yield Label(f"{field.name}{mark} — {field.description}" if field.description else field.name + mark)
                yield Input(value=field.default, placeholder=field.name, id=f"env-{field.name}")
            yield Label("Enter deploys, esc cancels", id="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        values = {i.id: i.value.strip() for i in self.query(Input) if i.id}
        try:
            env = {f.name: values[f"env-{f.name}"] for f in self.template.env}
            template = self.template.model_copy(update={"image": values["image"]})
            spec = template.spec(env).model_copy(update={"replicas": int(values["replicas"] or 1)})
            spec = AppSpec.model_validate(spec.model_dump())
            check_name(values["app"], field="app")
        except (Invalid, ValidationError, ValueError) as exc:
            self.query_one("#error", Label).update(f"[b]{_message(exc)}[/b]")
            return
        self.dismiss((values["app"], spec))

    def action_cancel(self) -> None:
        self.dismiss(None)


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc)
