"""What every console screen shares: a header, a banner for the API's troubles, a footer of keys, and the
refresh cycle — `load` runs in a worker thread against the API, `show` paints its result."""

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui.dao import ConsoleData


class DataScreen(Screen[None]):
    """A screen that refreshes from the API every few seconds, without blocking the UI."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner")
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        raise NotImplementedError

    def load(self, data: ConsoleData) -> Any:
        """Fetch what the screen shows (in a worker thread)."""
        raise NotImplementedError

    def show(self, payload: Any) -> None:
        """Paint `payload` (on the UI thread)."""
        raise NotImplementedError

    def on_screen_resume(self) -> None:
        self.app.refresh_data()  # type: ignore[attr-defined]
