"""Plain listings: the nodes (`:nodes`) and the audit log (`:events`)."""

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable

from tenants.schemas import EventRead, NodeRead
from tui import render
from tui.dao import ConsoleData
from tui.model import Column
from tui.screens.base import DataScreen
from tui.screens.dialogs import EventDialog
from tui.screens.table import FittingTable

NODES = [
    Column("NODE", 0),
    Column("DRIVER", 7),
    Column("ACCEL", 8),
    Column("STATE", 1),
    Column("TENANT", 6),
    Column("INSTANCES", 4),
    Column("CPU ALLOCATED", 2),
    Column("MEMORY ALLOCATED", 3),
    Column("VM", 9),
    Column("TENANTS", 5),
]
EVENTS = [Column("TIME", 0), Column("ACTOR", 3), Column("TENANT", 2), Column("ACTION", 1), Column("DETAIL", 4)]
DETAIL_WIDTH = 60  # of an event's detail in the table; Enter shows it whole


class NodesScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def body(self) -> ComposeResult:
        with Vertical(id="nodes-pane", classes="pane"):
            yield FittingTable(NODES, id="nodes")

    def load(self, data: ConsoleData) -> list[NodeRead]:
        return data.nodes()

    def show(self, payload: list[NodeRead]) -> None:
        self.sub_title = render.plural(len(payload), "node")
        self.query_one("#nodes", FittingTable).show([(node.name, node_cells(node)) for node in payload])


def node_cells(node: NodeRead) -> list[object]:
    return [
        Text(node.name),
        Text(node.driver),
        Text(node.accel or "-"),
        render.node_state(node),
        Text(node.tenant or "shared"),
        str(node.instances),
        render.usage(node.allocated_cpu_millicores, node.cpu_millicores, "m"),
        render.usage(node.allocated_memory_mib, node.memory_mib, "Mi"),
        render.vm(node),
        Text(", ".join(node.tenants) or "-"),
    ]


class EventsScreen(DataScreen):
    """The audit log, newest first; Enter shows an event whole (its detail is cut to the line here)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "open", "Details")]

    def __init__(self) -> None:
        super().__init__()
        self.events: list[EventRead] = []

    def body(self) -> ComposeResult:
        with Vertical(id="events-pane", classes="pane"):
            yield FittingTable(EVENTS, id="events")

    def load(self, data: ConsoleData) -> list[EventRead]:
        return data.events()

    def show(self, payload: list[EventRead]) -> None:
        self.sub_title = f"audit log · {render.plural(len(payload), 'event')}"
        if payload == self.events:
            return  # repainting would move the cursor back to the top
        self.events = payload
        self.query_one("#events", FittingTable).show([(str(event.id), event_cells(event)) for event in payload])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one("#events", DataTable)
        if table.row_count:
            self.app.push_screen(EventDialog(self.events[table.cursor_row]))


def event_cells(event: EventRead) -> list[object]:
    detail = " ".join(f"{key}={value}" for key, value in event.detail.items())
    if len(detail) > DETAIL_WIDTH:
        detail = detail[: DETAIL_WIDTH - 1] + "…"
    return [
        event.time.strftime("%H:%M:%S"),
        Text(event.actor),
        Text(event.tenant or "-"),
        Text(event.action),
        Text(detail),
    ]
