"""`/summary` (the console's overview: every tenant the caller may see, with readiness and traffic) and
`/catalog` (the ready apps a tenant can deploy through a form)."""

from fastapi import APIRouter

from strata.api.deps import DB, Caller, FrontDoor
from tenants import catalog
from tenants.enums import Isolation, TenantStatus
from tenants.quotas import usage_of
from tenants.schemas import TenantSummary
from tenants.summary import tenant_rows

router = APIRouter(tags=["tenants"])


@router.get("/summary")
def summary(session: DB, principal: Caller, gateway: FrontDoor) -> list[TenantSummary]:
    rows = []
    for tenant, plan, apps, ready in tenant_rows(session, None if principal.is_operator else principal.tenant):
        usage = usage_of(apps)
        traffic = [t for app in apps if (t := gateway.traffic(tenant.name, app.name)) is not None]
        requests = sum(t.requests for t in traffic)
        rows.append(
            TenantSummary(
                name=tenant.name,
                plan=plan.name,
                isolation=Isolation(tenant.isolation),
                status=TenantStatus(tenant.status),
                apps=usage.apps,
                instances_ready=ready,
                instances_desired=usage.instances,
                cpu_millicores=usage.cpu_millicores,
                max_cpu_millicores=plan.max_cpu_millicores,
                memory_mib=usage.memory_mib,
                max_memory_mib=plan.max_memory_mib,
                requests_per_second=sum(t.requests_per_second for t in traffic),
                error_rate=sum(t.error_rate * t.requests for t in traffic) / requests if requests else 0.0,
            )
        )
    return rows


@router.get("/catalog")
def list_catalog(_: Caller) -> list[catalog.Template]:
    return catalog.templates()
