"""One tenant across the three layers, side by side: IaaS (nodes), PaaS (apps, instances), SaaS (traffic).

Moving onto an app in the PaaS pane marks its instances' nodes (◆) and its traffic row: a drill-down across
the layers.
"""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.widgets import DataTable, Label

from tenants.schemas import AppSpec
from tui import render
from tui.dao import ConsoleData, TenantDetail
from tui.model import History
from tui.screens.base import DataScreen
from tui.screens.dialogs import ConfirmDialog, DeployDialog

MARK = "◆"
WIDE_ENOUGH = 150  # side by side from this width; stacked below it (80×24 works)


class TenantScreen(DataScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("plus,equals_sign", "scale(1)", "Scale +1", key_display="+"),
        Binding("minus", "scale(-1)", "Scale -1", key_display="-"),
        Binding("r", "restart", "Restart"),
        Binding("l", "logs", "Logs"),
        Binding("d", "deploy", "Deploy"),
        Binding("s", "shell", "Shell"),
        Binding("ctrl+d", "delete", "Delete app"),
    ]
    DEFAULT_CSS = """
    #layers { layout: vertical; height: 1fr; }
    #layers.wide { layout: horizontal; }
    #layers > Vertical { height: 1fr; border: round $primary-darken-2; }
    #layers.wide > Vertical { width: 1fr; }
    #layers > Vertical > Label { text-style: bold; color: $accent; }
    """

    def __init__(self, tenant: str) -> None:
        super().__init__()
        self.tenant = tenant
        self.detail: TenantDetail | None = None
        self.history = History()

    def body(self) -> ComposeResult:
        with Container(id="layers"):
            for pane, title, columns in (
                ("iaas", "IaaS — nodes", ("", "NODE", "STATE", "INSTANCES", "CPU", "MEMORY", "VM")),
                (
                    "paas",
                    "PaaS — apps and instances",
                    ("APP / INSTANCE", "REV", "STATE", "NODE", "RESTARTS", "UP", "CPU", "MEMORY", "ENDPOINT"),
                ),
                ("saas", "SaaS — as users see it", ("", "URL", "REQ/S", "P50", "P99", "ERRORS", "LAST MINUTES")),
            ):
                with Vertical():
                    yield Label(title)
                    table: DataTable[object] = DataTable(id=pane, cursor_type="row")
                    table.add_columns(*columns)
                    yield table

    def on_mount(self) -> None:
        self.app.sub_title = f"tenant {self.tenant}"
        self.query_one("#paas", DataTable).focus()

    def on_resize(self) -> None:
        self.query_one("#layers").set_class(self.size.width >= WIDE_ENOUGH, "wide")

    def load(self, data: ConsoleData) -> TenantDetail:
        return data.tenant(self.tenant)

    def show(self, payload: TenantDetail) -> None:
        self.detail = payload
        for app, traffic in payload.traffic.items():
            self.history.add(app, traffic.requests_per_second)
        self.repaint()

    def repaint(self) -> None:
        detail = self.detail
        if detail is None:
            return
        chosen = self.chosen_app()
        on_nodes = {i.node for a in detail.apps if a.name == chosen for i in a.instances}
        paas = self.query_one("#paas", DataTable)
        keep = paas.cursor_row
        paas.clear()
        for app in detail.apps:
            ready = sum(1 for i in app.instances if i.state == "ready")
            paas.add_row(
                f"[b]{app.name}[/b]",
                str(app.revision),
                render.ready_of(ready, app.replicas),
                "",
                "",
                "",
                f"{app.cpu_millicores}m",
                f"{app.memory_mib}Mi",
                app.image,
                key=f"app:{app.name}",
            )
            for i in app.instances:
                paas.add_row(
                    f"  {i.id}",
                    str(i.revision),
                    render.state(i.state),
                    i.node,
                    str(i.restarts),
                    render.uptime(i.started_at),
                    render.used(i.cpu_millicores_used, app.cpu_millicores, "m"),
                    render.used(i.memory_mib_used, app.memory_mib, "Mi"),
                    i.endpoint or "-",
                    key=f"instance:{app.name}:{i.id}",
                )
        if paas.row_count:
            paas.move_cursor(row=min(keep, paas.row_count - 1))

        iaas = self.query_one("#iaas", DataTable)
        iaas.clear()
        for node in detail.nodes:
            iaas.add_row(
                MARK if node.name in on_nodes else "",
                node.name,
                render.node_state(node),
                str(node.instances),
                render.usage(node.allocated_cpu_millicores, node.cpu_millicores, "m"),
                render.usage(node.allocated_memory_mib, node.memory_mib, "Mi"),
                render.vm(node),
                key=node.name,
            )
        saas = self.query_one("#saas", DataTable)
        saas.clear()
        for app in detail.apps:
            traffic = detail.traffic.get(app.name)
            saas.add_row(
                MARK if app.name == chosen else "",
                f"http://{app.name}.{self.tenant}.localhost",
                render.rate(traffic.requests_per_second) if traffic else "-",
                render.ms(traffic.p50_ms if traffic else None),
                render.ms(traffic.p99_ms if traffic else None),
                render.percent(traffic.error_rate if traffic else 0.0),
                render.sparkline(self.history.of(app.name)),
                key=app.name,
            )

    def chosen_app(self) -> str | None:
        """The app under the PaaS cursor (its own row or one of its instances)."""
        paas = self.query_one("#paas", DataTable)
        if not paas.row_count:
            return None
        key = str(paas.coordinate_to_cell_key(paas.cursor_coordinate).row_key.value)
        return key.split(":")[1]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "paas" and self.detail is not None:
            self.call_after_refresh(self._mark)

    def _mark(self) -> None:
        detail, chosen = self.detail, self.chosen_app()
        if detail is None:
            return
        on_nodes = {i.node for a in detail.apps if a.name == chosen for i in a.instances}
        iaas, saas = self.query_one("#iaas", DataTable), self.query_one("#saas", DataTable)
        for node in detail.nodes:
            iaas.update_cell(node.name, iaas.ordered_columns[0].key, MARK if node.name in on_nodes else "")
        for app in detail.apps:
            saas.update_cell(app.name, saas.ordered_columns[0].key, MARK if app.name == chosen else "")

    # keys

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_scale(self, step: int) -> None:
        app = next((a for a in (self.detail.apps if self.detail else []) if a.name == self.chosen_app()), None)
        if app is not None:
            replicas = max(0, app.replicas + step)
            self.app.act(
                lambda data: data.scale(self.tenant, app.name, replicas),  # type: ignore[attr-defined]
                f"{app.name} scaled to {replicas}",
            )

    def action_restart(self) -> None:
        app = self.chosen_app()
        if app:

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.app.act(lambda data: data.restart(self.tenant, app), f"{app} restarting")  # type: ignore[attr-defined]

            self.app.push_screen(
                ConfirmDialog(f"Restart every instance of {self.tenant}/{app}, one at a time?"), confirmed
            )

    def action_delete(self) -> None:
        app = self.chosen_app()
        if app:

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.app.act(lambda data: data.delete_app(self.tenant, app), f"{app} deleted")  # type: ignore[attr-defined]

            self.app.push_screen(ConfirmDialog(f"Delete app {self.tenant}/{app} and stop its instances?"), confirmed)

    def action_deploy(self) -> None:
        def submitted(result: tuple[str, AppSpec] | None) -> None:
            if result:
                app, spec = result
                self.app.act(lambda data: data.deploy(self.tenant, app, spec), f"{app} deployed")  # type: ignore[attr-defined]

        self.app.push_screen(DeployDialog(self.tenant), submitted)

    def action_shell(self) -> None:
        """A shell in the instance under the cursor (or the app's first ready one): the console steps aside."""
        from tui.shell import SHELL, run_shell

        paas = self.query_one("#paas", DataTable)
        if self.detail is None or not paas.row_count:
            return
        key = str(paas.coordinate_to_cell_key(paas.cursor_coordinate).row_key.value).split(":")
        app = next(a for a in self.detail.apps if a.name == key[1])
        instance = key[2] if key[0] == "instance" else next((i.id for i in app.instances if i.state == "ready"), None)
        if instance is None:
            self.notify(f"{app.name} has no ready instance", severity="warning")
            return
        target = self.app.data.client.exec_target(self.tenant, app.name, instance, SHELL, tty=True)  # type: ignore[attr-defined]
        with self.app.suspend():
            code = run_shell(target)
        self.notify(f"shell in {instance} exited with {code}")

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        app = self.chosen_app()
        if app:
            self.app.push_screen(LogsScreen(self.tenant, app))
