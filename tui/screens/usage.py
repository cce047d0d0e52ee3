"""`:usage`: metered usage this month, per tenant (a line of its totals) and per app, held against the plan: what
share of its plan's CPU, memory and storage, kept all month, the tenant used."""

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical

from tenants.enums import Isolation
from tenants.schemas import METERED, PlanRead, UsageLine, UsageReport
from tui import render
from tui.dao import ConsoleData
from tui.model import Column
from tui.screens.base import DataScreen
from tui.screens.table import FittingTable

USAGE = [
    Column("TENANT", 0),
    Column("APP", 1),
    Column("NODE", 9),
    Column("CPU-S", 2),
    Column("OF PLAN", 3),
    Column("MEM MIB-H", 4),
    Column("OF PLAN", 5),
    Column("DISK GIB-H", 7),
    Column("OF PLAN", 8),
    Column("INST-H", 10),
    Column("REQUESTS", 6),
    Column("IN", 11),
    Column("OUT", 12),
]
TOTAL = "(all)"  # the app of a tenant's line of totals


class UsageScreen(DataScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def body(self) -> ComposeResult:
        with Vertical(id="usage-pane", classes="pane"):
            yield FittingTable(USAGE, id="usage")

    def load(self, data: ConsoleData) -> UsageReport:
        return data.usage()

    def show(self, payload: UsageReport) -> None:
        self.sub_title = f"since {payload.since:%Y-%m-%d %H:%M} UTC · {render.plural(len(payload.plans), 'tenant')}"
        hours = max((payload.until - payload.since).total_seconds() / 3600, 1 / 3600)
        rows = []
        for tenant, plan in sorted(payload.plans.items()):
            lines = [line for line in payload.lines if line.tenant == tenant]
            rows.append((f"{tenant}/", usage_cells(total(tenant, lines), plan, hours)))
            rows += [(f"{tenant}/{line.app}/{line.node_kind}", usage_cells(line, plan, hours)) for line in lines]
        self.query_one("#usage", FittingTable).show(rows)


def total(tenant: str, lines: list[UsageLine]) -> UsageLine:
    """The tenant's line of totals (on the kind of node its lines share; shared if they differ)."""
    sums = {name: sum(getattr(line, name) for line in lines) for name in METERED}
    kinds = {line.node_kind for line in lines}
    kind = kinds.pop() if len(kinds) == 1 else Isolation.SHARED
    return UsageLine.model_validate({"tenant": tenant, "app": TOTAL, "node_kind": kind, **sums})


def usage_cells(line: UsageLine, plan: PlanRead, hours: float) -> list[object]:
    """A line's figures, and each of CPU, memory and storage as a share of what the plan allows over `hours`."""
    return [
        Text(line.tenant),
        Text(line.app or "(volumes)", style="bold" if line.app == TOTAL else ""),
        Text(line.node_kind),
        f"{line.cpu_seconds:.1f}",
        share(line.cpu_seconds / 3600, plan.max_cpu_millicores / 1000 * hours),
        f"{line.memory_mib_hours:.1f}",
        share(line.memory_mib_hours, plan.max_memory_mib * hours),
        f"{line.storage_gib_hours:.2f}",
        share(line.storage_gib_hours, plan.max_storage_mib / 1024 * hours),
        f"{line.instance_hours:.2f}",
        str(line.requests),
        amount(line.bytes_in),
        amount(line.bytes_out),
    ]


def share(used: float, allowed: float) -> Text:
    """`12%` of the plan, coloured by how much of it."""
    part = used / allowed if allowed else 0.0
    return Text(f"{part:.0%}", style=render.fullness(part))


def amount(count: int) -> str:
    """`512 B`, `3.2 KiB`, `1.5 GiB`."""
    size, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
