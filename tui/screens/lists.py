"""Plain listings: the nodes (`:nodes`) and the audit log (`:events`)."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from tenants.schemas import EventRead, NodeRead
from tui import render
from tui.dao import ConsoleData
from tui.screens.base import DataScreen


class NodesScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def body(self) -> ComposeResult:
        table: DataTable[object] = DataTable(id="nodes", cursor_type="row")
        table.add_columns(
            "NODE",
            "DRIVER",
            "ACCEL",
            "STATE",
            "TENANT",
            "INSTANCES",
            "CPU ALLOCATED",
            "MEMORY ALLOCATED",
            "VM",
            "TENANTS",
        )
        yield table

    def load(self, data: ConsoleData) -> list[NodeRead]:
        return data.nodes()

    def show(self, payload: list[NodeRead]) -> None:
        table = self.query_one("#nodes", DataTable)
        table.clear()
        for node in payload:
            table.add_row(
                node.name,
                node.driver,
                node.accel or "-",
                render.node_state(node),
                node.tenant or "shared",
                str(node.instances),
                render.usage(node.allocated_cpu_millicores, node.cpu_millicores, "m"),
                render.usage(node.allocated_memory_mib, node.memory_mib, "Mi"),
                render.vm(node),
                ", ".join(node.tenants) or "-",
            )


class EventsScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def body(self) -> ComposeResult:
        table: DataTable[object] = DataTable(id="events", cursor_type="row")
        table.add_columns("TIME", "ACTOR", "TENANT", "ACTION", "DETAIL")
        yield table

    def load(self, data: ConsoleData) -> list[EventRead]:
        return data.events()

    def show(self, payload: list[EventRead]) -> None:
        table = self.query_one("#events", DataTable)
        table.clear()
        for event in payload:
            detail = " ".join(f"{key}={value}" for key, value in event.detail.items())
            table.add_row(event.time.strftime("%H:%M:%S"), event.actor, event.tenant or "-", event.action, detail)
