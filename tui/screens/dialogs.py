"""Modal dialogs: a yes/no confirmation, forms (a one-line prompt, a new tenant, a deploy), and an event's
whole record. No input may crash the console: a form says what is wrong inside itself and sends nothing."""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tenants.catalog import Template, TemplateDeploy
from tenants.client import ApiError
from tenants.errors import Invalid
from tenants.names import check_name
from tenants.schemas import AppSpec, EventRead, TenantCreate
from tui import render
from tui.dao import ConsoleData

if TYPE_CHECKING:
    from textual import getters

    from tui.app import StrataConsole

Result = TypeVar("Result")
DIALOG_CSS = """
#dialog { width: 70; height: auto; max-height: 90%; padding: 1 2; border: thick $accent; background: $surface; }
#dialog > .label { margin-top: 1; }
#dialog > #title, #dialog > #note { width: 100%; }
#error { color: $error; margin-top: 1; }
"""
HINT = "Enter submits, esc cancels"


def message(exc: Exception) -> str:
    """What was refused, in the words of the check that refused it (the API's, or a model's)."""
    if isinstance(exc, ApiError):
        return exc.message
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, Invalid):
            return cause.message
        where = ".".join(map(str, first["loc"]))
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc)


class ConfirmDialog(ModalScreen[bool]):
    """`y` confirms, anything else (`n`, `esc`) declines."""

    DEFAULT_CSS = "ConfirmDialog { align: center middle; }" + DIALOG_CSS
    BINDINGS = [("y", "answer(True)", "Yes"), ("n", "answer(False)", "No"), ("escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text(self.question))
            yield Label("[b]y[/b] yes    [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class FormBody(VerticalScroll, can_focus=False):
    """A form, scrolled when taller than the terminal (to its error, when refused); the focus goes to the first
    input, never to the scrolling itself."""


@dataclass(frozen=True)
class Field:
    """One input of a form: its id (the key of its value), a label above it, what it starts with."""

    id: str
    label: str
    value: str = ""
    placeholder: str = ""


class FormDialog(ModalScreen[Result | None], Generic[Result]):
    """Labelled inputs. Enter hands their values (stripped, by field id) to `parse`; what it returns goes to
    `send` (in a worker, through the API), and the form closes with it once sent. A refusal of either (an
    `ApiError`, or a `ValueError`, which pydantic's `ValidationError` and `Invalid` are) is said under the form,
    which stays open: nothing bad is sent, and nothing is half-done. `esc` closes it with None. A `note` under the
    title says what else sending does; `waiting` is said while the answer is awaited."""

    DEFAULT_CSS = "FormDialog { align: center middle; }" + DIALOG_CSS
    BINDINGS = [("escape", "cancel", "Cancel")]

    if TYPE_CHECKING:  # Textual's typed `app` (its `getters.app`), for type checkers only: tui.app imports this
        app = getters.app(StrataConsole)

    def __init__(
        self,
        title: str | Text,
        fields: Sequence[Field],
        parse: Callable[[dict[str, str]], Result],
        send: Callable[[ConsoleData, Result], object] | None = None,
        *,
        note: Text | None = None,
        waiting: str = "sending…",
    ) -> None:
        super().__init__()
        self.title_text, self.fields, self.parse, self.send = title, fields, parse, send
        self.note, self.waiting = note, waiting
        self.busy = False  # sent, no answer yet: Enter and esc wait for it (its answer closes or refuses)

    def compose(self) -> ComposeResult:
        with FormBody(id="dialog"):
            yield Label(self.title_text, id="title")
            if self.note is not None:
                yield Label(self.note, id="note", classes="label")
            for field in self.fields:
                if field.label:
                    yield Label(Text(field.label), classes="label")
                yield Input(value=field.value, placeholder=field.placeholder, id=field.id)
            yield Label(HINT, id="error")

    def on_mount(self) -> None:
        self.call_after_refresh(self.query_one(FormBody).scroll_home, animate=False)  # the title first

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.busy:
            return
        values = {field.id: self.query_one(f"#{field.id}", Input).value.strip() for field in self.fields}
        try:
            result = self.parse(values)
        except ValueError as exc:
            self.refuse(exc)
            return
        if self.send is None:
            self.dismiss(result)
        else:
            self.busy = True
            self.query_one("#error", Label).update(Text(self.waiting))
            self.sending(self.send, result)

    @work(thread=True, exclusive=True, group="form")
    def sending(self, send: Callable[[ConsoleData, Result], object], result: Result) -> None:
        try:
            send(self.app.data, result)
        except (ApiError, ValueError) as exc:
            self.app.call_from_thread(self.refuse, exc)
            return
        self.app.call_from_thread(self.dismiss, result)

    def refuse(self, exc: Exception) -> None:
        self.busy = False
        error = self.query_one("#error", Label)
        error.update(Text(message(exc), style="bold"))
        error.scroll_visible(animate=False)

    def action_cancel(self) -> None:
        if not self.busy:
            self.dismiss(None)


def prompt(title: str, placeholder: str = "", check: Callable[[str], object] | None = None) -> FormDialog[str]:
    """One line; `check` (raising `ValueError`) refuses a bad one in the prompt. Returns what was typed."""

    def parse(values: dict[str, str]) -> str:
        if check is not None:
            check(values["line"])
        return values["line"]

    return FormDialog(title, [Field("line", "", placeholder=placeholder)], parse)


def new_tenant_form() -> FormDialog[TenantCreate]:
    """A tenant's name and plan, checked here (the name) and by the API (the plan) before the form closes."""

    def parse(values: dict[str, str]) -> TenantCreate:
        return TenantCreate(name=values["name"], plan=values["plan"] or "small")

    fields = [Field("name", "Name (a DNS label)", placeholder="acme"), Field("plan", "Plan", "small", "small")]
    return FormDialog("New tenant", fields, parse, lambda data, spec: data.create_tenant(spec.name, spec.plan))


def app_fields(t: Template) -> list[Field]:
    """App name, image, replicas and the template's environment (required ones marked *), the template's values
    filled in."""
    return [
        Field("app", "App name (a DNS label)", t.name, "web"),
        Field("image", "Image", t.image, "strata/hello"),
        Field("replicas", "Replicas", str(t.replicas), "1"),
        *(
            Field(
                f"env-{f.name}",
                f"{f.name}{'*' if f.required else ''}" + (f" — {f.description}" if f.description else ""),
                f.default,
                f.name,
            )
            for f in t.env
        ),
    ]


def template_deploy(t: Template, values: dict[str, str]) -> TemplateDeploy:
    """The form's values as a deploy of template `t`, checked as the API will check them (the spec it makes)."""
    check_name(values["app"], field="app")
    replicas = values["replicas"] or str(t.replicas)
    if not replicas.isdecimal():
        raise Invalid(f"replicas must be a whole number, not {replicas!r}", field="replicas")
    env = {f.name: values[f"env-{f.name}"] for f in t.env}
    body = TemplateDeploy.model_validate(
        {"app": values["app"], "image": values["image"] or t.image, "replicas": int(replicas), "env": env}
    )
    body.spec(t)
    return body


def deploy_form(tenant: str) -> FormDialog[tuple[str, AppSpec]]:
    """Any image as an app of `tenant`: name, image, replicas; sent as a deploy."""
    blank = Template(name="", description="", image="")

    def parse(values: dict[str, str]) -> tuple[str, AppSpec]:
        body = template_deploy(blank, values)
        return body.app, body.spec(blank)

    title = Text.assemble("Deploy to ", (tenant, "bold"))
    return FormDialog(title, app_fields(blank), parse, lambda data, app: data.deploy(tenant, *app))


def template_form(tenant: str, template: Template) -> FormDialog[TemplateDeploy]:
    """A catalog template for `tenant`: its app's fields, and under the title the services it makes (unless the
    tenant has them) and binds; sent as one deploy of the template, which the API carries out whole."""
    note = None
    if template.services:
        made = ", ".join(f"{s.name} ({s.kind}, {render.size(s.size_mib)})" for s in template.services)
        note = Text.assemble(
            "Also makes ",
            (made, "bold"),
            " unless the tenant has it, and binds it to the app (DATABASE_URL). The platform's first database "
            "builds its image: minutes.",
        )
    title = Text.assemble("Deploy to ", (tenant, "bold"), f": {template.description}")
    return FormDialog(
        title,
        app_fields(template),
        lambda values: template_deploy(template, values),
        lambda data, body: data.deploy_template(tenant, template.name, body),
        note=note,
        waiting="deploying… (minutes if an image is built)" if template.services else "sending…",
    )


class EventDialog(ModalScreen[None]):
    """One audit event, whole: the events table cuts its detail to the line."""

    DEFAULT_CSS = "EventDialog { align: center middle; } #dialog { width: 90; }" + DIALOG_CSS
    BINDINGS = [("escape,enter,q", "app.pop_screen", "Close")]

    def __init__(self, event: EventRead) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        e = self.event
        record: dict[str, Any] = {
            "time": e.time.isoformat(),
            "actor": e.actor,
            "tenant": e.tenant,
            "action": e.action,
        }
        with VerticalScroll(id="dialog"):
            yield Static(Text(f"event {e.id}", style="bold"))
            yield Static(Text("\n".join(f"{key}: {value}" for key, value in record.items())))
            yield Static(Text(json.dumps(e.detail, indent=2, ensure_ascii=False, default=str)), classes="label")
