"""One build's log (`l` on a build in a tenant's screen): its output as the build streamed it, and how it ended.

A finished build's log is fetched once; a running one's is fetched again at each refresh, with its state, until
it ends (only what was added is written, so the view keeps its place).
"""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Log

from tenants.enums import BuildState
from tenants.schemas import BuildRead
from tui.dao import BUILDS_SHOWN, ConsoleData
from tui.screens.base import DataScreen

MAX_LINES = 20_000

BuildLog = tuple[BuildRead, str]


class BuildLogScreen(DataScreen):
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, tenant: str, build: BuildRead) -> None:
        super().__init__()
        self.tenant, self.build = tenant, build
        self.text: str | None = None  # the log as shown
        self.titled()

    def body(self) -> ComposeResult:
        yield Log(max_lines=MAX_LINES, id="log")

    def on_mount(self) -> None:
        self.query_one("#log", Log).focus()

    def titled(self) -> None:
        build = self.build
        self.sub_title = f"build {build.id} of {self.tenant}/{build.app} · {build.state}"

    def load(self, data: ConsoleData) -> BuildLog | None:
        """The build's state, then its log (so that a finished state comes with the whole log); nothing once the
        whole log of a finished build is shown."""
        build = self.build
        if build.state != BuildState.BUILDING:
            return None if self.text is not None else (build, data.build_log(self.tenant, build.id))
        latest = data.builds(self.tenant, build.app, limit=BUILDS_SHOWN)  # a running build is its app's newest
        build = next((b for b in latest if b.id == build.id), build)
        return build, data.build_log(self.tenant, build.id)

    def show(self, payload: BuildLog | None) -> None:
        if payload is None:
            return
        self.build, text = payload
        self.titled()
        log = self.query_one("#log", Log)
        if self.text is not None and text.startswith(self.text):
            log.write(text[len(self.text) :])
        else:
            log.clear()
            log.write(text)
        self.text = text

    def action_back(self) -> None:
        self.app.pop_screen()
