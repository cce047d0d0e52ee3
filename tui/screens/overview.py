"""The overview: every tenant the token may see, with its apps' readiness, claims and traffic."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Input

from tenants.enums import TenantStatus
from tenants.schemas import NodeRead, TenantSummary
from tui import render
from tui.dao import ConsoleData
from tui.model import fill, ordered, visible
from tui.screens.base import DataScreen
from tui.screens.dialogs import ConfirmDialog, PromptDialog

COLUMNS = ("TENANT", "PLAN", "ISOLATION", "STATUS", "APPS", "READY", "CPU", "MEMORY", "REQ/S", "ERRORS")
SORTS = {
    "name": lambda t: t.name,
    "req/s": lambda t: -t.requests_per_second,
    "errors": lambda t: -t.error_rate,
    "memory": lambda t: -t.memory_mib,
    "cpu": lambda t: -t.cpu_millicores,
}


FILTER_PAUSE_SECONDS = 0.15


def cells(t: TenantSummary) -> tuple[object, ...]:
    return (
        t.name,
        t.plan,
        t.isolation,
        render.state(t.status),
        str(t.apps),
        render.ready_of(t.instances_ready, t.instances_desired),
        render.usage(t.cpu_millicores, t.max_cpu_millicores, "m"),
        render.usage(t.memory_mib, t.max_memory_mib, "Mi"),
        render.rate(t.requests_per_second),
        render.percent(t.error_rate),
    )


class OverviewScreen(DataScreen):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("o", "sort", "Sort"),
        Binding("n", "new", "New tenant"),
        Binding("p", "pause", "Suspend/resume"),
        Binding("ctrl+d", "delete", "Delete"),
    ]
    DEFAULT_CSS = "#filter { display: none; } #filter.shown { display: block; }"

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[TenantSummary] | None = None  # None until the first answer
        self.sort_name = "name"
        self.typing: Timer | None = None

    def body(self) -> ComposeResult:
        yield Input(placeholder="filter tenants (esc clears)", id="filter")
        table: DataTable[object] = DataTable(id="tenants", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table

    def on_mount(self) -> None:
        self.query_one("#tenants", DataTable).focus()

    def load(self, data: ConsoleData) -> tuple[list[TenantSummary], list[NodeRead] | None]:
        return data.overview(), data.nodes() if data.is_operator else None

    def show(self, payload: tuple[list[TenantSummary], list[NodeRead] | None]) -> None:
        tenants, nodes = payload
        total = sum(t.requests_per_second for t in tenants)
        health = [f"{len(tenants)} tenants", f"gateway {total:.1f} req/s"]
        if nodes is not None:
            health.insert(1, f"docker engines {sum(n.state == 'ready' for n in nodes)}/{len(nodes)} ready")
        self.app.sub_title = " · ".join(health)
        if tenants == self.rows:
            return  # nothing changed: nothing to paint
        self.rows = tenants
        self.repaint()

    def repaint(self) -> None:
        text = self.query_one("#filter", Input).value
        shown = ordered(
            visible(self.rows, text, lambda t: f"{t.name} {t.plan} {t.status}"), SORTS[self.sort_name], reverse=False
        )
        fill(self.query_one("#tenants", DataTable), [(t.name, cells(t)) for t in shown])

    def selected(self) -> str | None:
        table = self.query_one("#tenants", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    # keys

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from tui.screens.tenant import TenantScreen

        name = self.selected()
        if name:
            self.app.push_screen(TenantScreen(name))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.typing is not None:
            self.typing.stop()
        self.typing = self.set_timer(FILTER_PAUSE_SECONDS, self.repaint)  # repaint once typing pauses

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#tenants", DataTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.query_one("#tenants", DataTable).focus()

    def action_sort(self) -> None:
        names = list(SORTS)
        self.sort_name = names[(names.index(self.sort_name) + 1) % len(names)]
        self.notify(f"sorted by {self.sort_name}")
        self.repaint()

    def action_new(self) -> None:
        def create(answer: str | None) -> None:
            if answer:
                name, _, plan = answer.partition(" ")
                self.app.act(
                    lambda data: data.create_tenant(name, plan.strip() or "small"),  # type: ignore[attr-defined]
                    f"tenant {name} created",
                )

        self.app.push_screen(PromptDialog("New tenant: NAME [PLAN]", "acme small"), create)

    def action_pause(self) -> None:
        row = next((t for t in self.rows or [] if t.name == self.selected()), None)
        if row is None:
            return
        status = TenantStatus.ACTIVE if row.status == TenantStatus.SUSPENDED else TenantStatus.SUSPENDED
        self.app.act(lambda data: data.set_status(row.name, status), f"tenant {row.name} {status}")  # type: ignore[attr-defined]

    def action_delete(self) -> None:
        name = self.selected()
        if not name:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.act(lambda data: data.delete_tenant(name), f"tenant {name} deleted")  # type: ignore[attr-defined]

        self.app.push_screen(ConfirmDialog(f"Delete tenant {name} with all its apps, keys and tokens?"), confirmed)
