"""Tenants and their plans: create, look up, suspend, resume, delete (with everything they own)."""

from sqlmodel import Session, col, select

from tenants import audit
from tenants.db import commit
from tenants.enums import Isolation, Role, TenantStatus
from tenants.errors import Conflict, Invalid, NotFound
from tenants.models import App, Plan, Tenant, Volume
from tenants.quotas import usage_of
from tenants.schemas import PlanRead, TenantCreate, TenantRead


def list_plans(session: Session) -> list[Plan]:
    return list(session.exec(select(Plan).order_by(col(Plan.max_instances))))


def get_plan(session: Session, name: str, *, field: str = "plan") -> Plan:
    plan = session.get(Plan, name)
    if plan is None:
        names = ", ".join(p.name for p in list_plans(session))
        raise Invalid(f"no plan named {name!r}; the plans are: {names}", field=field)
    return plan


def get_tenant(session: Session, name: str) -> Tenant:
    """The tenant called `name`, or NotFound (also for names that could never exist)."""
    tenant = session.exec(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}", field="tenant")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.exec(select(Tenant).order_by(Tenant.name)))


def create_tenant(session: Session, actor: str, spec: TenantCreate) -> Tenant:
    get_plan(session, spec.plan)
    if session.exec(select(Tenant.id).where(Tenant.name == spec.name)).first() is not None:
        raise Conflict(f"tenant {spec.name!r} exists already", field="name")
    tenant = Tenant(name=spec.name, plan=spec.plan, isolation=spec.isolation)
    session.add(tenant)
    audit.record(session, actor, "tenant.create", spec.name, plan=spec.plan, isolation=spec.isolation)
    commit(session, conflict=f"tenant {spec.name!r} exists already")
    return tenant


def set_status(session: Session, actor: str, name: str, status: TenantStatus) -> Tenant:
    """Suspend or resume; setting the status it already has changes nothing and logs nothing."""
    tenant = get_tenant(session, name)
    if tenant.status != status:
        tenant.status = status
        action = "tenant.suspend" if status == TenantStatus.SUSPENDED else "tenant.resume"
        audit.record(session, actor, action, name)
        session.commit()
    return tenant


def delete_tenant(session: Session, actor: str, name: str) -> None:
    """Delete the tenant with its apps, volumes, keys and tokens (the caller removes the volumes' filesystems);
    its events stay in the audit log."""
    tenant = get_tenant(session, name)
    apps = [app.name for app in session.exec(select(App).where(App.tenant_id == tenant.id))]
    owned = [volume.name for volume in session.exec(select(Volume).where(Volume.tenant_id == tenant.id))]
    session.delete(tenant)  # the foreign keys cascade to apps, volumes, keys and tokens
    audit.record(session, actor, "tenant.delete", name, apps=apps, volumes=owned)
    session.commit()


def read_tenant(session: Session, tenant: Tenant) -> TenantRead:
    """The API's view of a tenant: its plan spelled out and what its apps use of it."""
    plan = session.get(Plan, tenant.plan)
    apps = session.exec(select(App).where(App.tenant_id == tenant.id))
    return TenantRead(
        name=tenant.name,
        plan=PlanRead.model_validate(plan),
        isolation=Isolation(tenant.isolation),
        status=TenantStatus(tenant.status),
        created_at=tenant.created_at,
        usage=usage_of(apps).model_copy(update={"storage_mib": storage_mib(session, tenant)}),
    )


def storage_mib(session: Session, tenant: Tenant) -> int:
    """The sizes of the tenant's volumes in all: what its plan's storage quota counts."""
    return sum(session.exec(select(Volume.size_mib).where(Volume.tenant_id == tenant.id)))


def credential_owner(session: Session, role: Role, tenant: str | None) -> Tenant | None:
    """The tenant a key or token would belong to: none for an operator, exactly one existing for a tenant."""
    if role == Role.OPERATOR:
        if tenant is not None:
            raise Invalid("an operator credential belongs to no tenant; leave out 'tenant'", field="tenant")
        return None
    if tenant is None:
        raise Invalid("a tenant credential needs the tenant it belongs to", field="tenant")
    return get_tenant(session, tenant)
