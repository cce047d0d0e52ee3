"""The overview: every tenant the token may see, with its apps' readiness, claims and traffic."""

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input

from tenants.enums import TenantStatus
from tenants.schemas import NodeRead, StatusRead, TenantCreate, TenantSummary
from tui import render
from tui.dao import ConsoleData
from tui.model import Column, ordered, visible
from tui.screens.base import DataScreen
from tui.screens.dialogs import ConfirmDialog, new_tenant_form
from tui.screens.table import FittingTable

COLUMNS = [
    Column("TENANT", 0),
    Column("PLAN", 8),
    Column("ISOLATION", 9),
    Column("STATUS", 1),
    Column("APPS", 7),
    Column("READY", 2),
    Column("CPU", 5),
    Column("MEMORY", 6),
    Column("REQ/S", 4),
    Column("ERRORS", 3),
]
SORTS = {
    "name": lambda t: t.name,
    "req/s": lambda t: -t.requests_per_second,
    "errors": lambda t: -t.error_rate,
    "memory": lambda t: -t.memory_mib,
    "cpu": lambda t: -t.cpu_millicores,
}


FILTER_PAUSE_SECONDS = 0.15
OPERATOR_ACTIONS = {"new", "pause", "delete"}  # the API refuses them to a tenant's token


def cells(t: TenantSummary) -> tuple[object, ...]:
    return (
        Text(t.name),
        Text(t.plan),
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
        with Vertical(id="tenants-pane", classes="pane"):
            table = FittingTable(COLUMNS, id="tenants")
            table.zebra_stripes = True
            yield table

    def on_mount(self) -> None:
        self.query_one("#tenants", DataTable).focus()

    def load(self, data: ConsoleData) -> tuple[list[TenantSummary], list[NodeRead] | None, StatusRead | None]:
        if not data.is_operator:
            return data.overview(), None, None
        return data.overview(), data.nodes(), data.status()

    def show(self, payload: tuple[list[TenantSummary], list[NodeRead] | None, StatusRead | None]) -> None:
        tenants, nodes, status = payload
        total = sum(t.requests_per_second for t in tenants)
        health = [render.plural(len(tenants), "tenant"), f"gateway {total:.1f} req/s"]
        if nodes is not None:
            health.insert(1, f"docker engines {sum(n.state == 'ready' for n in nodes)}/{len(nodes)} ready")
        if status is not None:
            health.append(_leader(status))
        self.sub_title = " · ".join(health)
        if tenants == self.rows:
            return  # nothing changed: nothing to paint
        self.rows = tenants
        self.repaint()

    def repaint(self) -> None:
        if self.rows is None:
            return  # nothing to paint before the first answer (a sort or a filter may come sooner)
        text = self.query_one("#filter", Input).value
        shown = ordered(
            visible(self.rows, text, lambda t: f"{t.name} {t.plan} {t.status}"), SORTS[self.sort_name], reverse=False
        )
        self.query_one("#tenants", FittingTable).show([(t.name, cells(t)) for t in shown])

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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool:
        """Offer the operators' keys only to a token known to be an operator's: a tenant gets what it may use."""
        return action not in OPERATOR_ACTIONS or self.app.data.known_operator

    def action_new(self) -> None:
        def created(spec: TenantCreate | None) -> None:
            if spec:
                self.app.acted(f"tenant {spec.name} created")

        self.app.push_screen(new_tenant_form(), created)

    def action_pause(self) -> None:
        row = next((t for t in self.rows or [] if t.name == self.selected()), None)
        if row is None:
            return
        status = TenantStatus.ACTIVE if row.status == TenantStatus.SUSPENDED else TenantStatus.SUSPENDED
        self.app.act(lambda data: data.set_status(row.name, status), f"tenant {row.name} {status}")

    def action_delete(self) -> None:
        name = self.selected()
        if not name:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.act(lambda data: data.delete_tenant(name), f"tenant {name} deleted")

        self.app.push_screen(ConfirmDialog(f"Delete tenant {name} with all its apps, keys and tokens?"), confirmed)


def _leader(status: StatusRead) -> str:
    """Which daemon leads, since when (local time), among how many; or that none does now."""
    if status.leader is None or status.leader.leading_since is None:
        return "no leader now"
    since = status.leader.leading_since.astimezone().strftime("%H:%M")
    others = sum(d.alive for d in status.daemons) - 1
    return f"leader {status.leader.name} since {since}" + (f" (+{others} standby)" if others > 0 else "")
