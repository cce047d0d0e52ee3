"""`/plans` and `/tenants`: operators manage tenants; a tenant token sees only its own."""

from fastapi import APIRouter, Response

from strata.api import volume_routes
from strata.api.deps import DB, BackupStore, Caller, Operator, TenantName, VolumeStore
from tenants import backups, tenancy, volumes
from tenants.enums import TenantStatus
from tenants.schemas import PlanRead, TenantCreate, TenantRead

router = APIRouter(tags=["tenants"])


@router.get("/plans")
def list_plans(session: DB, _: Caller) -> list[PlanRead]:
    return [PlanRead.model_validate(plan) for plan in tenancy.list_plans(session)]


@router.get("/tenants")
def list_tenants(session: DB, principal: Caller) -> list[TenantRead]:
    return [
        tenancy.read_tenant(session, tenant)
        for tenant in tenancy.list_tenants(session)
        if principal.is_operator or tenant.name == principal.tenant
    ]


@router.post("/tenants", status_code=201)
def create_tenant(session: DB, principal: Operator, spec: TenantCreate) -> TenantRead:
    return tenancy.read_tenant(session, tenancy.create_tenant(session, principal.actor, spec))


@router.get("/tenants/{tenant}")
def get_tenant(session: DB, tenant: TenantName) -> TenantRead:
    return tenancy.read_tenant(session, tenancy.get_tenant(session, tenant))


@router.post("/tenants/{tenant}/suspend")
def suspend_tenant(session: DB, principal: Operator, tenant: str) -> TenantRead:
    """Suspended tenants keep their data; their apps are stopped and refuse changes until resumed."""
    return tenancy.read_tenant(session, tenancy.set_status(session, principal.actor, tenant, TenantStatus.SUSPENDED))


@router.post("/tenants/{tenant}/resume")
def resume_tenant(session: DB, principal: Operator, tenant: str) -> TenantRead:
    return tenancy.read_tenant(session, tenancy.set_status(session, principal.actor, tenant, TenantStatus.ACTIVE))


@router.delete("/tenants/{tenant}", status_code=204)
def delete_tenant(session: DB, principal: Operator, tenant: str, store: VolumeStore, archives: BackupStore) -> Response:
    """Delete the tenant with its apps, volumes and backups (and their data), keys and tokens. The audit log
    keeps its events."""
    owner = tenancy.get_tenant(session, tenant)
    owned, kept_in = [v.name for v, _ in volumes.list_volumes(session, owner)], backups.stores(session, owner)
    tenancy.delete_tenant(session, principal.actor, tenant)
    if store is not None:
        volume_routes.remove_filesystems(store, tenant, owned)
    if archives is not None:
        archives.forget_tenant(tenant, kept_in)
    return Response(status_code=204)
