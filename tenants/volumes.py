"""Volumes: a tenant's persistent data, with a hard size counted against its plan, mounted by one app at most.

The rows are the truth of what exists; the filesystems are made and removed by the caller (`hosting`), which
creates one only after `check_create` passed and writes the row only once it exists, so a failure on either
side leaves neither.
"""

from sqlmodel import Session, col, select

from tenants import audit
from tenants.db import commit
from tenants.enums import Isolation, TenantStatus
from tenants.errors import Conflict, NotFound, QuotaExceeded
from tenants.models import App, Service, Tenant, Volume, saved_id, utcnow
from tenants.names import check_name
from tenants.schemas import VolumeRead
from tenants.tenancy import get_plan, get_tenant, storage_mib


def list_volumes(session: Session, tenant: Tenant | None = None) -> list[tuple[Volume, str]]:
    """Volumes with their tenant's name, of one tenant or all, by tenant then name."""
    query = select(Volume, Tenant.name).join(Tenant, col(Volume.tenant_id) == Tenant.id)
    if tenant is not None:
        query = query.where(Volume.tenant_id == tenant.id)
    return [(volume, owner) for volume, owner in session.exec(query.order_by(Tenant.name, Volume.name))]


def get_volume(session: Session, tenant: Tenant, name: str) -> Volume:
    volume = session.exec(select(Volume).where(Volume.tenant_id == tenant.id, Volume.name == name)).first()
    if volume is None:
        raise NotFound(f"tenant {tenant.name!r} has no volume named {name!r}", field="volume")
    return volume


def check_create(session: Session, tenant_name: str, name: str, size_mib: int) -> Tenant:
    """The tenant a new volume `name` of `size_mib` may be made for; refuses a taken name or a size past the
    plan's storage quota (with the numbers)."""
    check_name(name, field="volume")
    tenant = get_tenant(session, tenant_name)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant_name!r} is suspended; resume it before adding volumes")
    if tenant.isolation == Isolation.DEDICATED:
        raise Conflict(
            f"tenant {tenant_name!r} is dedicated (its containers run on its own VMs only), and volumes live on the "
            "host's node for now: a dedicated tenant gets none yet"
        )
    if session.exec(select(Volume.id).where(Volume.tenant_id == tenant.id, Volume.name == name)).first():
        raise Conflict(f"tenant {tenant_name!r} has a volume named {name!r} already", field="volume")
    plan, used = get_plan(session, tenant.plan), storage_mib(session, tenant)
    if used + size_mib > plan.max_storage_mib:
        raise QuotaExceeded(
            f"storage quota exceeded: this volume needs {size_mib} MiB, the tenant's volumes have {used} MiB "
            f"and plan {plan.name!r} allows {plan.max_storage_mib} MiB in all; delete a volume, make it smaller "
            "or move to a larger plan",
            field="size_mib",
        )
    return tenant


def record_create(session: Session, actor: str, tenant: Tenant, name: str, size_mib: int, node: str) -> Volume:
    """Write the row of a volume whose filesystem now exists on `node`."""
    volume = Volume(tenant_id=saved_id(tenant), name=name, size_mib=size_mib, node=node)
    session.add(volume)
    audit.record(session, actor, "volume.create", tenant.name, volume=name, size_mib=size_mib, node=node)
    commit(session, conflict=f"tenant {tenant.name!r} has a volume named {name!r} already")
    session.refresh(volume)
    return volume


def mounted_by(session: Session, tenant: Tenant, name: str) -> list[App]:
    """The apps of `tenant` that mount volume `name` (at most one: deploys refuse a second)."""
    apps = session.exec(select(App).where(App.tenant_id == tenant.id).order_by(App.name))
    return [app for app in apps if any(mount["volume"] == name for mount in app.volumes)]


def delete(session: Session, actor: str, tenant_name: str, name: str, *, force: bool) -> Volume:
    """Delete the row of volume `name` (the caller removes its filesystem after). Refused while an app mounts
    it, unless `force`: then the app loses the mount (a new revision, whose instances start without it)."""
    tenant = get_tenant(session, tenant_name)
    volume = get_volume(session, tenant, name)
    if session.exec(select(Service.id).where(Service.tenant_id == tenant.id, Service.name == name)).first():
        raise Conflict(f"volume {name!r} is service {name!r}'s: delete it with `strata services delete`")
    if volume.restoring:
        raise Conflict(f"volume {name!r} is being restored; delete it once the restore is over")
    users = mounted_by(session, tenant, name)
    if users and not force:
        raise Conflict(
            f"volume {name!r} is mounted by app {users[0].name!r}; deploy the app without it first, "
            "or delete with --force (the app loses its data)",
            field="volume",
        )
    for app in users:
        app.volumes = [mount for mount in app.volumes if mount["volume"] != name]
        app.revision += 1
        app.updated_at = utcnow()
        audit.record(session, actor, "app.deploy", tenant.name, app=app.name, revision=app.revision,
                     replicas=app.replicas, changed=["volumes"])  # fmt: skip
    session.delete(volume)
    audit.record(session, actor, "volume.delete", tenant.name, volume=name, unmounted_from=[a.name for a in users])
    session.commit()
    return volume


def read_volume(session: Session, volume: Volume, tenant: str, used_mib: float | None) -> VolumeRead:
    owner = get_tenant(session, tenant)
    return VolumeRead(
        tenant=tenant,
        name=volume.name,
        size_mib=volume.size_mib,
        node=volume.node,
        created_at=volume.created_at,
        used_mib=used_mib,
        mounted_by=[app.name for app in mounted_by(session, owner, volume.name)],
    )
