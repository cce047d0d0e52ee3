"""`/tenants/{tenant}/apps`: deploy (PUT the spec), scale, restart, delete — within the tenant's quota."""

from fastapi import APIRouter, Request, Response

from strata.api.deps import DB, Caller, TenantName
from tenants import apps
from tenants.schemas import AppRead, AppSpec, InstanceRead, Scale
from tenants.tenancy import get_tenant

router = APIRouter(prefix="/tenants/{tenant}/apps", tags=["apps"])


def with_usage(request: Request, app: AppRead) -> AppRead:
    """Add what each instance uses now (sampled by the reconciler, kept in memory only)."""
    usage = request.app.state.reconciler.usage.usage
    for instance in app.instances:
        if instance.id in usage:
            instance.cpu_millicores_used, instance.memory_mib_used = usage[instance.id]
    return app


@router.get("")
def list_apps(request: Request, session: DB, tenant: TenantName) -> list[AppRead]:
    owner = get_tenant(session, tenant)
    return [with_usage(request, app) for app in apps.read_apps(session, owner, apps.list_apps(session, owner))]


@router.get("/{app}")
def get_app(request: Request, session: DB, tenant: TenantName, app: str) -> AppRead:
    return with_usage(request, apps.describe(session, tenant, app))


@router.get("/{app}/instances")
def list_instances(request: Request, session: DB, tenant: TenantName, app: str) -> list[InstanceRead]:
    """The app's running copies: node, state (starting, ready, unhealthy, crashloop, stopping), endpoint, and
    the CPU and memory they use (sampled every 10 s)."""
    return with_usage(request, apps.describe(session, tenant, app)).instances


@router.put("/{app}", responses={201: {"model": AppRead, "description": "created"}})
def deploy_app(
    session: DB, principal: Caller, tenant: TenantName, app: str, spec: AppSpec, request: Request, response: Response
) -> AppRead:
    """Create the app or replace its spec. A change of anything but `replicas` starts a new revision."""
    domain = request.app.state.settings.domain
    row, created = apps.deploy(session, principal.actor, tenant, app, spec, platform_domain=domain)
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
