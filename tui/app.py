"""The Strata console: IaaS, PaaS and SaaS per tenant, for operators (and, scoped, for tenants).

Keys as k9s users know them: `:` command (`:tenants`, `:nodes`, `:events`), `/` filter, `?` help,
Enter drill down, `esc` back, `l` logs, `ctrl+d` delete (with confirmation), `q` quit.
"""

from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

from tenants.client import ApiError
from tui.dao import ConsoleData
from tui.screens.base import DataScreen
from tui.screens.catalog import CatalogScreen
from tui.screens.dialogs import PromptDialog
from tui.screens.lists import EventsScreen, NodesScreen
from tui.screens.overview import OverviewScreen

REFRESH_SECONDS = 2.0
HELP = """\
# Strata console

| key | does |
|---|---|
| `Enter` | open the tenant under the cursor |
| `esc` | back |
| `/` | filter tenants |
| `o` | change the sort order |
| `:` | command: `tenants`, `nodes`, `events`, `catalog`, `quit` |
| `d` | deploy an app to the tenant (a form) |
| `n` | new tenant (operators) |
| `p` | suspend or resume the tenant (operators) |
| `+` / `-` | scale the app under the cursor |
| `r` | restart the app, one instance at a time |
| `l` | the app's logs, live (`p` pauses, `/` searches) |
| `s` | a shell in the instance (or the app's first ready one) |
| `ctrl+d` | delete (asks first) |
| `q` | quit |
"""
COMMANDS = {"tenants": OverviewScreen, "nodes": NodesScreen, "events": EventsScreen, "catalog": CatalogScreen}


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = "HelpScreen { align: center middle; } Markdown { width: 70; height: auto; }"
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]

    def compose(self):  # type: ignore[no-untyped-def]
        yield Markdown(HELP)


class StrataConsole(App[None]):
    TITLE = "Strata"
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
        screen = self.screen
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
        if screen.is_attached:
            self.banner(screen, None)
            screen.show(payload)

    def banner(self, screen: DataScreen, message: str | None) -> None:
        if not screen.is_attached:
            return
        banner = screen.query_one("#banner", Static)
        banner.update(message or "")
        banner.set_class(message is not None, "shown")

    def act(self, change: Callable[[ConsoleData], object], done: str) -> None:
        """Run a change through the API; its refusal (a quota, say) is shown as the API words it."""
        self._act(change, done)

    @work(thread=True, group="actions")
    def _act(self, change: Callable[[ConsoleData], object], done: str) -> None:
        try:
            change(self.data)
        except ApiError as exc:
            self.call_from_thread(self.notify, exc.message, title="refused", severity="error", timeout=8)
            return
        self.call_from_thread(self.notify, done)
        self.call_from_thread(self.refresh_data)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_command(self) -> None:
        def run(command: str | None) -> None:
            if not command:
                return
            word = command.lstrip(":").split()[0].lower()
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
            else:
                self.notify(f"unknown command {word!r}; try tenants, nodes, events, catalog", severity="warning")

        self.push_screen(PromptDialog("Command", "tenants | nodes | events | catalog | quit"), run)
