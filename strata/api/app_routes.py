"""`/tenants/{tenant}/apps`: deploy (PUT the spec), scale, restart, delete — within the tenant's quota."""

from collections.abc import Mapping

from fastapi import APIRouter, Response

from strata.api.deps import DB, Caller, Config, InstanceUsage, Pulls, Sleeps, TenantName
from tenants import apps
from tenants.schemas import AppRead, AppSpec, InstanceRead, PullRead, Scale, SleepRead
from tenants.tenancy import get_tenant

router = APIRouter(prefix="/tenants/{tenant}/apps", tags=["apps"])


def with_usage(usage: Mapping[str, tuple[int, int]], app: AppRead) -> AppRead:
    """Add what each instance uses now (sampled by the reconciler, kept in memory only)."""
    for instance in app.instances:
        if instance.id in usage:
            instance.cpu_millicores_used, instance.memory_mib_used = usage[instance.id]
    return app


def with_pull(pulls: Mapping[tuple[str, str], PullRead], app: AppRead) -> AppRead:
    """Add the pull of its image for its current revision, while it runs or after it failed (in memory)."""
    pull = pulls.get((app.tenant, app.name))
    app.pull = pull if pull is not None and pull.revision == app.revision else None
    return app


def with_sleep(sleeps: Mapping[tuple[str, str], SleepRead], app: AppRead) -> AppRead:
    """Add whether it sleeps and how often it was woken (the reconciler's, in memory)."""
    app.sleep = sleeps.get((app.tenant, app.name))
    return app


@router.get("")
def list_apps(session: DB, tenant: TenantName, usage: InstanceUsage, pulls: Pulls, sleeps: Sleeps) -> list[AppRead]:
    owner = get_tenant(session, tenant)
    found = apps.read_apps(session, owner, apps.list_apps(session, owner))
    return [with_sleep(sleeps, with_pull(pulls, with_usage(usage, app))) for app in found]


@router.get("/{app}")
def get_app(session: DB, tenant: TenantName, app: str, usage: InstanceUsage, pulls: Pulls, sleeps: Sleeps) -> AppRead:
    """The app's spec, its instances (with what they use), the pull of its image while there is one, its sleep."""
    return with_sleep(sleeps, with_pull(pulls, with_usage(usage, apps.describe(session, tenant, app))))


@router.get("/{app}/instances")
def list_instances(session: DB, tenant: TenantName, app: str, usage: InstanceUsage) -> list[InstanceRead]:
    """The app's running copies: node, state (starting, ready, unhealthy, crashloop, stopping), endpoint, and
    the CPU and memory they use (sampled every 10 s)."""
    return with_usage(usage, apps.describe(session, tenant, app)).instances


@router.put("/{app}", responses={201: {"model": AppRead, "description": "created"}})
def deploy_app(
    session: DB, principal: Caller, tenant: TenantName, app: str, spec: AppSpec, settings: Config, response: Response
) -> AppRead:
    """Create the app or replace its spec. A change of anything but `replicas` starts a new revision."""
    row, created = apps.deploy(session, principal.actor, tenant, app, spec, platform_domain=settings.domain)
    response.status_code = 201 if created else 200
    return apps.read_app(session, row, get_tenant(session, tenant))


@router.post("/{app}/scale")
def scale_app(session: DB, principal: Caller, tenant: TenantName, app: str, body: Scale) -> AppRead:
    row = apps.scale(session, principal.actor, tenant, app, body.replicas)
    return apps.read_app(session, row, get_tenant(session, tenant))


@router.post("/{app}/restart")
def restart_app(session: DB, principal: Caller, tenant: TenantName, app: str) -> AppRead:
    """Replace every instance, one at a time, as a deploy of the same spec would."""
    row = apps.restart(session, principal.actor, tenant, app)
    return apps.read_app(session, row, get_tenant(session, tenant))


@router.delete("/{app}", status_code=204)
def delete_app(session: DB, principal: Caller, tenant: TenantName, app: str) -> Response:
    apps.delete(session, principal.actor, tenant, app)
    return Response(status_code=204)
