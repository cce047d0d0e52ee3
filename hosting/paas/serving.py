"""What the reconciler tells the front door: each app's hostnames, its ready endpoints, its tenant's limits.

The daemon turns these into the gateway's routes; neither side imports the other.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState
from tenants.instances import DesiredApp


@dataclass(frozen=True)
class ServedApp:
    tenant: str
    app: str
    hostnames: tuple[str, ...]
    endpoints: tuple[str, ...]  # HOST:PORT of each ready instance
    requests_per_second: int
    burst: int
    max_body_mib: int


def served_apps(desired: Iterable[DesiredApp], tracked: Iterable[Tracked]) -> list[ServedApp]:
    """Every app with the endpoints of its ready instances (sorted, so an unchanged set compares equal)."""
    ready: dict[int, list[str]] = {}
    for instance in tracked:
        if instance.state == InstanceState.READY and instance.endpoint:
            ready.setdefault(instance.app_id, []).append(instance.endpoint)
    return [
        ServedApp(
            app.tenant,
            app.name,
            tuple(app.hostnames),
            tuple(sorted(ready.get(app.app_id, ()))),
            app.requests_per_second,
            app.burst,
            app.max_body_mib,
        )
        for app in desired
    ]
