"""What the reconciler tells the front door: each app's hostnames, its ready endpoints, its tenant's limits and
what it asked of HTTPS."""

from collections.abc import Iterable

from hosting.paas.tracked import Tracked
from tenants.enums import AppKind, InstanceState
from tenants.instances import DesiredApp
from tenants.routes import RouteSpec

MIB = 1024 * 1024


def routes(desired: Iterable[DesiredApp], tracked: Iterable[Tracked]) -> list[RouteSpec]:
    """Every app with the endpoints of its ready instances (sorted, so an unchanged set compares equal)."""
    ready: dict[int, list[str]] = {}
    for instance in tracked:
        if instance.state == InstanceState.READY and instance.endpoint:
            ready.setdefault(instance.app_id, []).append(instance.endpoint)
    return [
        RouteSpec(
            app.tenant,
            app.name,
            tuple(app.hostnames),
            tuple(sorted(ready.get(app.app_id, ()))),
            app.requests_per_second,
            app.burst,
            app.max_body_mib * MIB,
            redirect_https=app.https_redirect,
            hsts=app.hsts,
        )
        for app in desired
        if app.kind == AppKind.WEB  # a service is its tenant's, reached on its network only
    ]
