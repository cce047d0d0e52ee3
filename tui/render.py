"""How figures look in the console: short, aligned, coloured by meaning."""

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text

from tenants.schemas import NodeRead, PullRead

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20
STATE_STYLES = {
    "ready": "green",
    "starting": "yellow",
    "unhealthy": "red",
    "crashloop": "bold red",
    "stopping": "dim",
    "paused": "blue",  # its app sleeps
    "stopped": "blue",
    "active": "green",
    "suspended": "yellow",
    "unreachable": "red",
    "provisioning": "yellow",
    "failed": "bold red",
    "removing": "dim",
    "building": "yellow",
    "succeeded": "green",
}


def fullness(share: float) -> str:
    """The style of a share of a limit: red past 90%, yellow past 70%."""
    return "red" if share > 0.9 else "yellow" if share > 0.7 else ""


def usage(used: int, total: int, unit: str) -> Text:
    """`500m/2000m` coloured by how full it is."""
    return Text(f"{used}{unit}/{total}{unit}", style=fullness(used / total if total else 0.0))


def used(value: int | None, limit: int, unit: str) -> Text:
    """What an instance uses of its limit (`120m/250m`); `-/250m` until the first sample."""
    if value is None:
        return Text(f"-/{limit}{unit}", style="dim")
    return usage(value, limit, unit)


def size(mib: float) -> str:
    """`512 MiB`, `1.5 GiB`."""
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def filled(used_mib: float | None, size_mib: int) -> Text:
    """What a volume holds: `870 MiB (85%)`, coloured by how full it is; `-` while its node cannot say."""
    if used_mib is None:
        return Text("-", style="dim")
    share = used_mib / size_mib
    return Text(f"{size(used_mib)} ({share:.0%})", style=fullness(share))


def state(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, ""))


def node_state(node: NodeRead) -> Text:
    """A node's state, and whether it is draining."""
    text = state(node.state)
    return text.append(" draining", style="yellow") if node.draining else text


def vm(node: NodeRead) -> str:
    """What a VM node runs on and costs its host (`tcg 1.2s 600Mi`); `-` for the host's own engine."""
    if node.vm is None:
        return "-"
    accel = (node.accel or "").split(" ")[0]
    return f"{accel} {node.vm.cpu_seconds:.0f}s {node.vm.memory_bytes // 1024**2}Mi"


def rate(requests_per_second: float) -> str:
    return f"{requests_per_second:.1f}" if requests_per_second < 100 else f"{requests_per_second:.0f}"


def percent(share: float) -> Text:
    return Text(f"{share * 100:.1f}%", style="red" if share > 0.05 else "yellow" if share > 0 else "")


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters, scaled to their own maximum."""
    recent = list(values)[-width:]
    top = max(recent, default=0.0)
    if top <= 0:
        return SPARKS[0] * len(recent)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))] for v in recent)


def uptime(started: datetime | None) -> str:
    """`45s`, `12m`, `3h`, `2d` since `started`."""
    if started is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - started).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def took(started: datetime, finished: datetime) -> str:
    """How long something ran: `48s`, `2m05s`, `1h07m`."""
    seconds = max(0, int((finished - started).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def pull(progress: PullRead) -> Text:
    """An image's pull as a status: its figures first (`pulling 12.3 of 45.6 MiB (27%) REF`), so that a cut to a
    narrow column takes the reference, not the progress; a failed one says why."""
    if progress.status == "failed":
        return Text(f"pull of {progress.reference} failed: {progress.detail}", style="red")
    done, total = progress.done_bytes / 2**20, progress.total_bytes / 2**20
    figures = f"{done:.1f} of {total:.1f} MiB ({progress.done_bytes * 100 // progress.total_bytes}%) " if total else ""
    return Text(f"pulling {figures}{progress.reference}", style="cyan")


def plural(count: int, noun: str) -> str:
    """`1 tenant`, `2 tenants`, `0 tenants`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def ready_of(ready: int, desired: int) -> Text:
    return Text(f"{ready}/{desired}", style="green" if ready == desired else "yellow")
