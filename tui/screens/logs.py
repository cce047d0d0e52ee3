"""An app's logs, streaming (`l`): every instance's lines, prefixed by instance; `p` pauses the follow."""

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Log

from tenants.client import ApiError

MAX_LINES = 5_000


class LogsScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("p", "pause", "Pause/follow")]

    def __init__(self, tenant: str, app: str) -> None:
        super().__init__()
        self.tenant, self.app_name = tenant, app
        self.paused = False
        self.held: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Log(max_lines=MAX_LINES, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.app.sub_title = f"logs of {self.tenant}/{self.app_name}"
        self.stream()

    @work(exclusive=True, group="logs")
    async def stream(self) -> None:
        """Follow the logs until the screen goes (its workers are cancelled, which closes the stream)."""
        try:
            async for line in self.app.data.logs(self.tenant, self.app_name):  # type: ignore[attr-defined]
                self.add(line)
        except ApiError as exc:
            self.add(f"(logs unavailable: {exc.message})")

    def add(self, line: str) -> None:
        if self.paused:
            self.held.append(line)
        else:
            self.query_one("#log", Log).write_line(line)

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.query_one("#log", Log).write_lines(self.held)
            self.held.clear()
        self.notify("paused" if self.paused else "following")
