"""One tenant across the three layers, side by side: IaaS (nodes), PaaS (apps, instances), SaaS (traffic); under
them, side by side too, once the tenant has them: its latest builds from source (`l` there: a build's log), its
volumes (size, use, the app that mounts each and where) and its services (kind, ready, size, use, the apps bound to
each). A service runs as an app of its own: PaaS shows it as one (`db ⛃ postgres`), and an app bound to it as
`web → db`.

Moving onto an app in the PaaS pane marks its instances' nodes (◆), its traffic row, its builds, its volumes and
its services (those it is bound to, or the one it is): a drill-down across the layers.
"""

from collections.abc import Iterator, Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import DataTable, Label

from tenants import roles
from tenants.enums import BuildState
from tenants.schemas import AppRead, AppSpec, BuildRead, ServiceRead, TrafficRead, VolumeRead
from tui import render
from tui.dao import BUILDS_SHOWN, ConsoleData, NodeShare, TenantDetail
from tui.model import Column, History
from tui.screens.base import DataScreen
from tui.screens.build_log import BuildLogScreen
from tui.screens.dialogs import ConfirmDialog, deploy_form
from tui.screens.table import FittingTable

MARK = "◆"
VOLUME_MARK = "⛁"  # after an app's name in the PaaS pane: the volumes it mounts
SERVICE_MARK = "⛃"  # after a service's own app's name in the PaaS pane: its kind
BOUND_MARK = "→"  # after an app's name in the PaaS pane: the services bound to it
WIDE_ENOUGH = 150  # side by side from this width; stacked below it (80×24 works)
# Each pane's columns, in table order; when a pane is too narrow, the highest priority numbers go first.
IAAS = [
    Column("", 1),
    Column("NODE", 0),
    Column("STATE", 4),
    Column("TENANT INST", 5),
    Column("TENANT CPU", 2),
    Column("TENANT MEM", 6),
    Column("TENANT DISKS", 5),
    Column("NODE INST", 8),
    Column("NODE CPU", 3),
    Column("NODE MEM", 7),
    Column("VM", 9),
]
NODES_OWN = {"STATE", "NODE INST", "NODE CPU", "NODE MEM", "VM"}  # figures a tenant's token may not see
IAAS_FOR_TENANTS = [column for column in IAAS if column.label not in NODES_OWN]
PAAS = [
    Column("APP / INSTANCE", 0),
    Column("REV", 9),
    Column("STATE", 1),
    Column("NODE", 3),
    Column("RESTARTS", 4),
    Column("UP", 8),
    Column("CPU", 6),
    Column("MEMORY", 7),
    Column("ENDPOINT", 5),
    Column("WHY", 2, sparse=True),
]
WHY_WIDTH = 40  # of a reason in the PaaS pane; `apps show` has it whole
SAAS = [
    Column("", 1),
    Column("URL", 0),
    Column("REQ/S", 2),
    Column("P50", 6),
    Column("P99", 4),
    Column("ERRORS", 3),
    Column("LAST MINUTES", 5, render.SPARK_WIDTH),
]
BUILDS = [
    Column("", 3),
    Column("APP", 0),
    Column("BUILD", 9),
    Column("STATE", 1),
    Column("COMMIT", 5),
    Column("SOURCE", 8),
    Column("BY", 7),
    Column("AGE", 4),
    Column("TOOK", 6),
    Column("MESSAGE", 2, sparse=True),
]
MESSAGE_WIDTH = 60  # of a build's message (its first line) in the builds pane; its log has it all
VOLUMES = [
    Column("", 4),
    Column("VOLUME", 0),
    Column("SIZE", 2),
    Column("USED", 1),
    Column("APP", 3),
    Column("PATH", 5),
    Column("NODE", 6),
]
SERVICES = [
    Column("", 5),
    Column("SERVICE", 0),
    Column("KIND", 6),
    Column("STATE", 1),
    Column("SIZE", 4),
    Column("USED", 2),
    Column("BOUND TO", 3),
    Column("ADDRESS", 7),
]
STATUS_WIDTH = 30  # of a service's reason for not being ready; `services show` has it whole
STACKED_ROWS = 3  # rows of builds, volumes, services at once while the layers are stacked (below WIDE_ENOUGH)
TALL_ENOUGH = 32  # lines; below, stacked, only the first build, volume and service show: 80×24 keeps room for apps


# What the tenant screen's keys do, as the API's operations (`tenants.roles`): the caller's role may not do some
OFFERED: dict[str, tuple[roles.Operation, str]] = {
    "scale": (roles.SCALE, "scaling"),
    "restart": (roles.RESTART, "a restart"),
    "deploy": (roles.DEPLOY, "a deploy"),
    "shell": (roles.EXEC, "a shell"),
    "delete": (roles.DELETE_APP, "deleting an app"),
}


class BuildsTable(FittingTable):
    """The builds pane's table: its `l` (and Enter) opens the log of the build under the cursor, where the
    screen's `l` opens an app's."""

    BINDINGS = [Binding("l", "screen.build_log", "Build log")]


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
    #layers.wide > .pane { width: 3fr; }
    #layers.wide > #iaas-pane { width: 2fr; }
    #under > .pane { display: none; }
    #under > .pane.shown { display: block; }
    #under.wide > #builds-pane { width: 5fr; }
    #under.wide > #volumes-pane { width: 3fr; }
    #under.wide > #services-pane { width: 4fr; }
    """

    def __init__(self, tenant: str) -> None:
        super().__init__()
        self.tenant = tenant
        self.detail: TenantDetail | None = None
        self.history = History()
        self.sub_title = f"tenant {tenant}"

    def body(self) -> ComposeResult:
        iaas = IAAS if self.app.data.known_operator else IAAS_FOR_TENANTS
        with Container(id="layers"):
            for pane, title, columns in (
                ("iaas", "IaaS — nodes", iaas),
                ("paas", "PaaS — apps and instances", PAAS),
                ("saas", "SaaS — as users see it", SAAS),
            ):
                with Vertical(id=f"{pane}-pane", classes="pane"):
                    yield Label(title)
                    yield FittingTable(columns, id=pane)
        with Horizontal(id="under"):
            with Vertical(id="builds-pane", classes="pane"):
                yield Label("Builds — the latest, newest first")
                yield BuildsTable(BUILDS, id="builds")
            with Vertical(id="volumes-pane", classes="pane"):
                yield Label("Volumes — the apps' persistent data")
                yield FittingTable(VOLUMES, id="volumes")
            with Vertical(id="services-pane", classes="pane"):
                yield Label("Services — databases bound to apps")
                yield FittingTable(SERVICES, id="services")

    def on_mount(self) -> None:
        self.query_one("#paas", DataTable).focus()

    def on_resize(self) -> None:
        for container in self.query("#layers, #under"):
            container.set_class(self.size.width >= WIDE_ENOUGH, "wide")
        self.size_under()

    def size_under(self) -> None:
        """The builds, volumes and services panes, each shown only when it has rows, all as tall as the longest
        one's rows (fewer while the layers are stacked); no room at all when none is shown."""
        detail = self.detail
        counts = (len(detail.builds), len(detail.volumes), len(detail.services)) if detail else (0, 0, 0)
        for pane, count in zip(("#builds-pane", "#volumes-pane", "#services-pane"), counts, strict=True):
            self.query_one(pane).set_class(count > 0, "shown")
        if self.size.width >= WIDE_ENOUGH:
            shown = min(max(counts), BUILDS_SHOWN)
        else:
            shown = min(max(counts), STACKED_ROWS if self.size.height >= TALL_ENOUGH else 1)
        self.query_one("#under").styles.height = shown + 4 if shown else 0  # a title, a header, the border's 2

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
        paas = self.query_one("#paas", FittingTable)
        paas.show(list(self.paas_rows(detail)))
        chosen = self.chosen_app()
        on_nodes = {i.node for a in detail.apps if a.name == chosen for i in a.instances}
        iaas = self.query_one("#iaas", FittingTable)
        iaas.show([(share.name, iaas_cells(share, share.name in on_nodes, iaas.spec)) for share in detail.nodes])
        self.query_one("#saas", FittingTable).show(
            [
                (app.name, self.saas_cells(app.name, detail.traffic.get(app.name), app.name == chosen))
                for app in served(detail)
            ]
        )
        self.query_one("#builds", FittingTable).show(
            [(f"build:{build.id}", build_cells(build, build.app == chosen)) for build in detail.builds]
        )
        self.query_one("#volumes", FittingTable).show(
            [(v.name, volume_cells(v, detail.apps, chosen in v.mounted_by)) for v in detail.volumes]
        )
        self.query_one("#services", FittingTable).show(
            [(s.name, service_cells(s, chosen in (s.name, *s.bound_to))) for s in detail.services]
        )
        self.size_under()

    def paas_rows(self, detail: TenantDetail) -> Iterator[tuple[str, list[object]]]:
        for app in detail.apps:
            ready = sum(1 for i in app.instances if i.state == "ready")
            yield (
                f"app:{app.name}",
                [
                    app_name(app, detail.services),
                    str(app.revision),
                    render.ready_of(ready, app.replicas),
                    "",
                    "",
                    "",
                    f"{app.cpu_millicores}m",
                    f"{app.memory_mib}Mi",
                    Text(app.image),
                    status(app),
                ],
            )
            for i in app.instances:
                yield (
                    f"instance:{app.name}:{i.id}",
                    [
                        Text(f"  {i.id}"),
                        str(i.revision),
                        render.state(i.state),
                        Text(i.node),
                        str(i.restarts),
                        render.uptime(i.started_at),
                        render.used(i.cpu_millicores_used, app.cpu_millicores, "m"),
                        render.used(i.memory_mib_used, app.memory_mib, "Mi"),
                        Text(i.endpoint or "-"),
                        why(i.message),
                    ],
                )

    def saas_cells(self, app: str, traffic: TrafficRead | None, marked: bool) -> list[object]:
        return [
            MARK if marked else "",
            Text(f"http://{app}.{self.tenant}.localhost"),
            render.rate(traffic.requests_per_second) if traffic else "-",
            render.ms(traffic.p50_ms if traffic else None),
            render.ms(traffic.p99_ms if traffic else None),
            render.percent(traffic.error_rate if traffic else 0.0),
            render.sparkline(self.history.of(app)),
        ]

    def chosen_app(self) -> str | None:
        """The app under the PaaS cursor (its own row or one of its instances)."""
        paas = self.query_one("#paas", DataTable)
        if not paas.row_count:
            return None
        key = str(paas.coordinate_to_cell_key(paas.cursor_coordinate).row_key.value)
        return key.split(":")[1]

    def chosen_build(self) -> BuildRead | None:
        """The build under the builds pane's cursor."""
        table = self.query_one("#builds", DataTable)
        if self.detail is None or not table.row_count:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next((b for b in self.detail.builds if f"build:{b.id}" == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "paas" and self.detail is not None:
            self.call_after_refresh(self._mark)

    def _mark(self) -> None:
        detail, chosen = self.detail, self.chosen_app()
        if detail is None:
            return
        on_nodes = {i.node for a in detail.apps if a.name == chosen for i in a.instances}
        iaas, saas = self.query_one("#iaas", FittingTable), self.query_one("#saas", FittingTable)
        for share in detail.nodes:
            iaas.set_cell(share.name, "", MARK if share.name in on_nodes else "")
        for app in served(detail):
            saas.set_cell(app.name, "", MARK if app.name == chosen else "")
        builds = self.query_one("#builds", FittingTable)
        for build in detail.builds:
            builds.set_cell(f"build:{build.id}", "", MARK if build.app == chosen else "")
        volumes = self.query_one("#volumes", FittingTable)
        for volume in detail.volumes:
            volumes.set_cell(volume.name, "", MARK if chosen in volume.mounted_by else "")
        services = self.query_one("#services", FittingTable)
        for service in detail.services:
            services.set_cell(service.name, "", MARK if chosen in (service.name, *service.bound_to) else "")

    # keys

    def action_back(self) -> None:
        self.app.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """What the caller's role may not do is shown disabled (and said why when tried: `on_key`)."""
        return None if self._refusal(action) else True

    def on_key(self, event: events.Key) -> None:
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and event.key in binding.key.split(","):
                if why := self._refusal(binding.action.partition("(")[0]):
                    self.notify(why, title="not allowed", severity="warning", markup=False)
                    event.stop()

    def _refusal(self, action: str) -> str | None:
        offered = OFFERED.get(action)
        return self.app.data.refusal(self.tenant, *offered) if offered is not None else None

    def action_scale(self, step: int) -> None:
        app = next((a for a in (self.detail.apps if self.detail else []) if a.name == self.chosen_app()), None)
        if app is not None:
            replicas = max(0, app.replicas + step)
            self.app.act(
                lambda data: data.scale(self.tenant, app.name, replicas),
                f"{app.name} scaled to {replicas}",
            )

    def action_restart(self) -> None:
        app = self.chosen_app()
        if app:

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.app.act(lambda data: data.restart(self.tenant, app), f"{app} restarting")

            self.app.push_screen(
                ConfirmDialog(f"Restart every instance of {self.tenant}/{app}, one at a time?"), confirmed
            )

    def action_delete(self) -> None:
        app = self.chosen_app()
        if app:

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.app.act(lambda data: data.delete_app(self.tenant, app), f"{app} deleted")

            self.app.push_screen(ConfirmDialog(f"Delete app {self.tenant}/{app} and stop its instances?"), confirmed)

    def action_deploy(self) -> None:
        def deployed(result: tuple[str, AppSpec] | None) -> None:
            if result:
                self.app.acted(f"{result[0]} deployed")

        self.app.push_screen(deploy_form(self.tenant), deployed)

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
        target = self.app.data.client.exec_target(self.tenant, app.name, instance, SHELL, tty=True)
        with self.app.suspend():
            code, refused = run_shell(target)
        if refused:
            self.notify(f"no shell in {instance}: {refused}", severity="error")
        else:
            self.notify(f"shell in {instance} exited with {code}")

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        app = self.chosen_app()
        if app:
            self.app.push_screen(LogsScreen(self.tenant, app))

    def action_build_log(self) -> None:
        build = self.chosen_build()
        if build is not None:
            self.app.push_screen(BuildLogScreen(self.tenant, build))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "builds":
            self.action_build_log()


def served(detail: TenantDetail) -> list[AppRead]:
    """The apps the front door serves: not a service's own app, which only its tenant's containers reach."""
    services = {service.name for service in detail.services}
    return [app for app in detail.apps if app.name not in services]


def why(reason: str | None) -> Text:
    """Why an app or instance is not as asked (the API's words), cut to the pane with a `…`."""
    text = reason or ""
    return Text(text if len(text) <= WHY_WIDTH else text[: WHY_WIDTH - 1] + "…", style="yellow")


def app_name(app: AppRead, services: Sequence[ServiceRead] = ()) -> Text:
    """An app's name, and the volumes it mounts (`web ⛁ data`) and the services bound to it (`web → db`); a
    service's own app its kind instead (`db ⛃ postgres`: its volume is its own)."""
    text = Text(app.name, style="bold")
    own = next((service for service in services if service.name == app.name), None)
    if own is not None:
        return text.append(f" {SERVICE_MARK} {own.kind}", style="magenta")
    if app.volumes:
        text.append(f" {VOLUME_MARK} {', '.join(mount.volume for mount in app.volumes)}", style="cyan")
    bound = [service.name for service in services if app.name in service.bound_to]
    if bound:
        text.append(f" {BOUND_MARK} {', '.join(bound)}", style="magenta")
    return text


def status(app: AppRead) -> Text:
    """The app's WHY: its problem, else its image's pull under way (the figures, not cut off by the width), else
    its sleep (woken by its next request) and its wake-ups."""
    if (
        app.sleep is not None
        and not app.problem
        and app.pull is None
        and (app.sleep.state != "awake" or app.sleep.wakeups)
    ):
        asleep = f"asleep ({app.sleep.state}), " if app.sleep.state != "awake" else ""
        return Text(f"{asleep}woken {app.sleep.wakeups}×", style="blue")
    if app.problem or app.pull is None:
        return why(app.problem)
    text = render.pull(app.pull)
    text.truncate(WHY_WIDTH, overflow="ellipsis")
    return text


def build_cells(build: BuildRead, marked: bool) -> list[object]:
    """A build's row: a failed one's state and message in red, as the other panes show failures."""
    failed = build.state == BuildState.FAILED
    message = build.message.splitlines()[0] if build.message else ""
    if len(message) > MESSAGE_WIDTH:
        message = message[: MESSAGE_WIDTH - 1] + "…"
    return [
        MARK if marked else "",
        Text(build.app, style="bold"),
        str(build.id),
        render.state(build.state),
        Text(build.commit[:7] if build.commit else "-"),
        str(build.source),
        Text(build.actor),
        render.uptime(build.started_at),
        render.took(build.started_at, build.finished_at) if build.finished_at else "-",  # AGE says, while it runs
        Text(message, style="red" if failed else "dim"),
    ]


def volume_cells(volume: VolumeRead, apps: Sequence[AppRead], marked: bool) -> list[object]:
    """A volume's row: its size, how much of it is used, and the app that mounts it at which path (`-`: none)."""
    paths = [m.path for app in apps if app.name in volume.mounted_by for m in app.volumes if m.volume == volume.name]
    return [
        MARK if marked else "",
        Text(volume.name, style="bold"),
        render.size(volume.size_mib),
        render.filled(volume.used_mib, volume.size_mib),
        Text(", ".join(volume.mounted_by) or "-"),
        Text(", ".join(paths) or "-"),
        Text(volume.node),
    ]


def service_cells(service: ServiceRead, marked: bool) -> list[object]:
    """A service's row: ready, or why not (yellow); its volume's size and use; the apps bound to it; where its
    tenant's containers reach it."""
    if service.ready:
        state = render.state("ready")
    else:
        reason = service.status or "starting"
        state = Text(reason if len(reason) <= STATUS_WIDTH else reason[: STATUS_WIDTH - 1] + "…", style="yellow")
    return [
        MARK if marked else "",
        Text(service.name, style="bold"),
        str(service.kind),
        state,
        render.size(service.size_mib),
        render.filled(service.used_mib, service.size_mib),
        Text(", ".join(service.bound_to) or "-"),
        Text(f"{service.host}:{service.port}"),
    ]


def iaas_cells(share: NodeShare, marked: bool, columns: list[Column]) -> list[object]:
    """A node's row for `columns`: the tenant's share of it, and the node's own state and totals when known (an
    operator's token; a node gone meanwhile shows `-`)."""
    node = share.node
    cells: dict[str, object] = {
        "": MARK if marked else "",
        "NODE": Text(share.name),
        "TENANT INST": str(share.instances),
        "TENANT CPU": f"{share.cpu_millicores}m",
        "TENANT MEM": f"{share.memory_mib}Mi",
        "TENANT DISKS": ", ".join(f"{disk.name} {render.size(disk.size_mib)}" for disk in share.disks) or "-",
    }
    if node is not None:
        cells |= {
            "STATE": render.node_state(node),
            "NODE INST": str(node.instances),
            "NODE CPU": render.usage(node.allocated_cpu_millicores, node.cpu_millicores, "m"),
            "NODE MEM": render.usage(node.allocated_memory_mib, node.memory_mib, "Mi"),
            "VM": render.vm(node),
        }
    return [cells.get(column.label, "-") for column in columns]
