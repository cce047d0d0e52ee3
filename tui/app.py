"""The Strata console: IaaS, PaaS and SaaS per tenant, for operators (and, scoped, for tenants).

Keys as k9s users know them: `:` command (`:tenants`, `:nodes`, `:events`), `/` filter, `?` help,
Enter drill down, `esc` back, `l` logs, `ctrl+d` delete (with confirmation), `q` quit.
"""

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

from tenants.client import ApiError
from tui.dao import ConsoleData
from tui.screens.base import DataScreen
from tui.screens.catalog import CatalogScreen
from tui.screens.dialogs import message, prompt
from tui.screens.lists import EventsScreen, NodesScreen
from tui.screens.overview import OverviewScreen
from tui.screens.usage import UsageScreen

REFRESH_SECONDS = 2.0
KEYS = [  # (key, what it does, for operators only)
    ("`Enter`", "open the tenant under the cursor (an event: its whole record)", False),
    ("`esc`", "back", False),
    ("`/`", "filter tenants", False),
    ("`o`", "change the sort order", False),
    ("`:`", "command: {commands}", False),
    ("`d`", "deploy an app to the tenant (a form)", False),
    ("`n`", "new tenant", True),
    ("`p`", "suspend or resume the tenant", True),
    ("`+` / `-`", "scale the app under the cursor", False),
    ("`r`", "restart the app, one instance at a time", False),
    ("`l`", "the app's logs, live (`p` pauses, `/` searches); in the builds pane, the build's log", False),
    ("`s`", "a shell in the instance (or the app's first ready one)", False),
    ("`ctrl+d`", "delete (asks first; a tenant: operators only)", False),
    ("`q`", "quit", False),
]
COMMANDS = {
    "tenants": OverviewScreen,
    "nodes": NodesScreen,
    "events": EventsScreen,
    "usage": UsageScreen,
    "catalog": CatalogScreen,
}
OPERATOR_COMMANDS = {"nodes"}


def commands(operator: bool) -> list[str]:
    """The `:` commands this token may use (a tenant's may not see nodes)."""
    return [word for word in COMMANDS if operator or word not in OPERATOR_COMMANDS] + ["quit"]


def help_text(operator: bool) -> str:
    """The help, listing only the keys and commands this token may use."""
    words = ", ".join(f"`{word}`" for word in commands(operator))
    rows = [f"| {key} | {does.format(commands=words)} |" for key, does, only in KEYS if operator or not only]
    return "\n".join(["# Strata console", "", "| key | does |", "|---|---|", *rows, ""])


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = "HelpScreen { align: center middle; } Markdown { width: 70; height: auto; }"
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]

    def __init__(self, operator: bool) -> None:
        super().__init__()
        self.operator = operator

    def compose(self) -> ComposeResult:
        yield Markdown(help_text(self.operator))


class StrataConsole(App[None]):
    TITLE = "Strata"
    # `:` is the console's palette; Textual's own (ctrl+p) would offer a tenant's SSH session commands beyond its
    # token, such as saving a screenshot to a file on the server, and takes footer room that 80 columns lack.
    ENABLE_COMMAND_PALETTE = False
    CSS = "#banner { display: none; background: $error; color: $text; padding: 0 1; } #banner.shown { display: block; }"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("colon", "command", "Command", key_display=":"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, data: ConsoleData, refresh_seconds: float = REFRESH_SECONDS) -> None:
        super().__init__()
        self.data = data
        self.refresh_seconds = refresh_seconds

    def on_mount(self) -> None:
        self.push_screen(OverviewScreen())
        self.set_interval(self.refresh_seconds, self.refresh_data)

    def refresh_data(self) -> None:
        screen = self.screen_stack[-1] if self.screen_stack else None  # none while the console closes
        if isinstance(screen, DataScreen):
            self.fetch(screen)

    @work(thread=True, exclusive=True, group="refresh")
    def fetch(self, screen: DataScreen) -> None:
        try:
            payload = screen.load(self.data)
        except ApiError as exc:
            self.call_from_thread(self.banner, screen, f"{exc.message} — retrying every {self.refresh_seconds:.0f} s")
            return
        self.call_from_thread(self.painted, screen, payload)

    def painted(self, screen: DataScreen, payload: Any) -> None:
        if not screen.is_attached:
            return  # gone meanwhile
        if not screen.is_mounted:  # an answer may beat a screen's first compose: paint it once composed
            self.call_after_refresh(self.painted, screen, payload)
            return
        self.banner(screen, None)
        screen.show(payload)
        screen.refresh_bindings()  # the first answer tells whether operator keys apply

    def banner(self, screen: DataScreen, message: str | None) -> None:
        if not (screen.is_attached and screen.is_mounted):
            return
        banner = screen.query_one("#banner", Static)
        banner.update(Text(message or ""))
        banner.set_class(message is not None, "shown")

    def act(self, change: Callable[[ConsoleData], object], done: str) -> None:
        """Run a change through the API; its refusal (a quota, say, or input a model refuses) is shown as words."""
        self._act(change, done)

    @work(thread=True, group="actions")
    def _act(self, change: Callable[[ConsoleData], object], done: str) -> None:
        try:
            change(self.data)
        except (ApiError, ValueError) as exc:  # pydantic's ValidationError and Invalid are ValueErrors
            self.call_from_thread(self.notify, message(exc), title="refused", severity="error", timeout=8, markup=False)
            return
        self.call_from_thread(self.acted, done)

    def acted(self, done: str) -> None:
        """A change went through (from a key or a form): say so, and show its effect at once."""
        self.notify(done, markup=False)
        self.refresh_data()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.data.known_operator))

    def action_command(self) -> None:
        allowed = commands(self.data.known_operator)

        def check(command: str) -> None:
            word = command.lstrip(":").strip().lower()
            if word and word not in allowed and word != "q":
                raise ValueError(f"unknown command {word!r}; try {', '.join(allowed)}")

        def run(command: str | None) -> None:
            word = (command or "").lstrip(":").strip().lower()
            if word in ("q", "quit"):
                self.exit()
            elif word in COMMANDS:
                tenant = getattr(self.screen, "tenant", None)
                while len(self.screen_stack) > 2:
                    self.pop_screen()
                if word == "catalog":
                    self.push_screen(CatalogScreen(tenant))  # from a tenant's screen: deploy there
                elif word != "tenants":
                    self.push_screen(COMMANDS[word]())

        self.push_screen(prompt("Command", " | ".join(allowed), check), run)
