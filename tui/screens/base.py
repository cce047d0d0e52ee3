"""What every console screen shares: a header, a banner for the API's troubles, a footer of keys, and the
refresh cycle — `load` runs in a worker thread against the API, `show` paints its result."""

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui.dao import ConsoleData
from tui.screens.table import FittingTable

if TYPE_CHECKING:
    from textual import getters

    from tui.app import StrataConsole


class DataScreen(Screen[None]):
    """A screen that refreshes from the API every few seconds, without blocking the UI. Its tables sit in
    `.pane` containers, a table `X` in `#X-pane`, whose bottom border names the columns the width hides."""

    DEFAULT_CSS = """
    DataScreen .pane { height: 1fr; border: round $primary-darken-2; border-subtitle-color: $warning; }
    DataScreen .pane > Label { text-style: bold; color: $accent; }
    """

    if TYPE_CHECKING:  # Textual's typed `app` (its `getters.app`), for type checkers only: tui.app imports this
        app = getters.app(StrataConsole)

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

    def on_fitting_table_fitted(self, event: FittingTable.Fitted) -> None:
        hidden = event.hidden
        note = f"{len(hidden)} hidden: {', '.join(hidden)}" if hidden else ""
        self.query_one(f"#{event.table.id}-pane").border_subtitle = note

    def on_screen_resume(self) -> None:
        self.app.refresh_data()
