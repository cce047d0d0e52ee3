"""An app's logs, streaming (`l`): every instance's lines, prefixed by instance; `p` pauses the follow,
`/` shows only the lines that contain what is typed (esc shows all again)."""

from collections import deque
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Log

from tenants.client import ApiError

if TYPE_CHECKING:
    from textual import getters

    from tui.app import StrataConsole

MAX_LINES = 5_000


class LogsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("p", "pause", "Pause/follow"),
        Binding("slash", "search", "Search", key_display="/"),
    ]
    DEFAULT_CSS = "#search { display: none; } #search.shown { display: block; }"

    if TYPE_CHECKING:  # Textual's typed `app` (its `getters.app`), for type checkers only: tui.app imports this
        app = getters.app(StrataConsole)

    def __init__(self, tenant: str, app: str) -> None:
        super().__init__()
        self.tenant, self.app_name = tenant, app
        self.paused = False
        self.sub_title = f"logs of {tenant}/{app}"
        self.lines: deque[str] = deque(maxlen=MAX_LINES)  # everything received, for searching

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search (esc shows all)", id="search")
        yield Log(max_lines=MAX_LINES, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log", Log).focus()
        self.stream()

    @work(exclusive=True, group="logs")
    async def stream(self) -> None:
        """Follow the logs until the screen goes (its workers are cancelled, which closes the stream)."""
        try:
            async for line in self.app.data.logs(self.tenant, self.app_name):
                self.add(line)
        except ApiError as exc:
            self.add(f"(logs unavailable: {exc.message})")

    @property
    def needle(self) -> str:
        return self.query_one("#search", Input).value

    def add(self, line: str) -> None:
        self.lines.append(line)
        if not self.paused and self.needle.lower() in line.lower():
            self.query_one("#log", Log).write_line(line)

    def redraw(self) -> None:
        needle = self.needle.lower()
        log = self.query_one("#log", Log)
        log.clear()
        log.write_lines([line for line in self.lines if needle in line.lower()])

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.redraw()
        self.notify("paused" if self.paused else "following")

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#log", Log).focus()

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.redraw()
            return
        self.app.pop_screen()
