"""Volumes: a tenant's persistent data, with a hard size counted against its plan, mounted by one app at most,
living on one node (the host's, or a VM node's as a disk of its VM).

The rows are the truth of what exists and where; the filesystems are made, removed and moved by the caller
(`hosting`), which creates one only after `check_create` passed and writes the row only once it exists, so a
failure on either side leaves neither. A move is marked on the row (`moving_to`) while it runs: no instance of
the volume's app runs meanwhile, and nothing else may back it up, restore or delete it.
"""

from sqlmodel import Session, col, select

from tenants import audit
from tenants.db import commit
from tenants.enums import BackupState, Isolation, NodeState, TenantStatus
from tenants.errors import Conflict, Invalid, NotFound, QuotaExceeded
from tenants.models import App, Backup, Node, Service, Tenant, Volume, saved_id, utcnow
from tenants.names import check_name
from tenants.schemas import VolumeRead
from tenants.ssh_targets import SSH_DRIVER
from tenants.tenancy import get_plan, get_tenant, storage_mib

HOST_NODE = "local"  # the host's own node: a volume there is loop-mounted on the host
MOVE = "move"  # the actor of what the platform finishes of a move cut off


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


def find(session: Session, tenant_name: str, name: str) -> Volume | None:
    """The volume, or None if it (or its tenant) does not exist."""
    query = select(Volume).join(Tenant).where(Tenant.name == tenant_name, Volume.name == name)
    return session.exec(query).first()


def check_create(session: Session, tenant_name: str, name: str, size_mib: int) -> Tenant:
    """The tenant a new volume `name` of `size_mib` may be made for; refuses a taken name or a size past the
    plan's storage quota (with the numbers)."""
    check_name(name, field="volume")
    tenant = get_tenant(session, tenant_name)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant_name!r} is suspended; resume it before adding volumes")
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


def placement(session: Session, tenant: Tenant, node: str | None) -> str:
    """The node a new volume of `tenant` goes on: `node` if it may (`check_node`), else the host (as it always
    was, drained or not), or for a dedicated tenant one of its own ready VM nodes (the one with the fewest
    volumes)."""
    if node is not None:
        check_node(session, tenant, node)
        return node
    if tenant.isolation != Isolation.DEDICATED:
        return HOST_NODE
    own = session.exec(select(Node).where(Node.tenant == tenant.name).order_by(Node.name)).all()
    usable = [n for n in own if n.state == NodeState.READY and not n.draining]
    if not usable:
        raise Conflict(
            f"tenant {tenant.name!r} is dedicated: its volumes live on its own VM nodes, and none is ready; add one "
            f"(strata nodes add NAME --tenant {tenant.name})",
            field="node",
        )
    held = {n.name: len(session.exec(select(Volume.id).where(Volume.node == n.name)).all()) for n in usable}
    return min(usable, key=lambda n: held[n.name]).name


def check_node(session: Session, tenant: Tenant, name: str) -> Node:
    """The node a volume of `tenant` may live on: one that exists, is ready and not draining, and where its app
    may run (a dedicated tenant's own VM nodes only; a shared tenant's anywhere but on a dedicated one)."""
    node = session.get(Node, name)
    if node is None or node.state == NodeState.REMOVING:
        raise Invalid(f"no node named {name!r}; see `strata nodes list`", field="node")
    if node.driver == SSH_DRIVER:
        raise Invalid(
            f"node {name!r} is a remote host: volumes live on this host or its VM nodes, whose disks are this host's",
            field="node",
        )
    if tenant.isolation == Isolation.DEDICATED and node.tenant != tenant.name:
        where = "the host" if name == HOST_NODE else f"node {name!r}, which is not one of its own VM nodes"
        raise Invalid(
            f"tenant {tenant.name!r} is dedicated (its containers run on its own VMs only): its volumes cannot live "
            f"on {where}",
            field="node",
        )
    if tenant.isolation != Isolation.DEDICATED and node.tenant is not None:
        raise Invalid(f"node {name!r} is dedicated to another tenant", field="node")
    if node.state != NodeState.READY:
        raise Conflict(f"node {name!r} is {node.state}; try again once it is ready", field="node")
    if node.draining:
        raise Conflict(f"node {name!r} is draining; resume it first (strata nodes resume {name})", field="node")
    return node


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
    if volume.moving_to is not None:
        raise Conflict(f"volume {name!r} is moving to node {volume.moving_to}; delete it once the move is over")
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


def start_move(session: Session, tenant_name: str, name: str, target: str) -> Volume | None:
    """Mark the volume as moving to node `target` (no instance of its app runs from now on), or None if it is
    there already. Refused: a node it may not live on (`check_node`), and while it is moved, restored or backed
    up, or its tenant suspended."""
    tenant = get_tenant(session, tenant_name)
    volume = get_volume(session, tenant, name)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant_name!r} is suspended; resume it before moving its volumes")
    if volume.moving_to is not None:
        raise Conflict(f"volume {name!r} is moving to node {volume.moving_to} already", field="volume")
    if volume.restoring:
        raise Conflict(f"volume {name!r} is being restored; move it once the restore is over", field="volume")
    running = select(Backup.id).where(
        Backup.tenant_id == tenant.id, Backup.volume == name, Backup.state == BackupState.RUNNING
    )
    if session.exec(running).first() is not None:
        raise Conflict(f"a backup of volume {name!r} is running; move it once the backup is over", field="volume")
    if target == volume.node:
        return None
    check_node(session, tenant, target)
    volume.moving_to = target
    commit(session, conflict=f"volume {name!r} changed meanwhile; try again")
    session.refresh(volume)
    return volume


def finish_move(session: Session, actor: str, tenant_name: str, name: str, seconds: float) -> Volume:
    """The volume lives on the node it was moved to now; its app's instance may start there."""
    tenant = get_tenant(session, tenant_name)
    volume = get_volume(session, tenant, name)
    source, target = volume.node, volume.moving_to
    if target is None:
        raise Conflict(f"volume {name!r} is not moving")
    volume.node, volume.moving_to = target, None
    audit.record(session, actor, "volume.move", tenant.name, volume=name, source=source, target=target,
                 seconds=round(seconds, 2))  # fmt: skip
    session.commit()
    session.refresh(volume)
    return volume


def abort_move(session: Session, actor: str, tenant_name: str, name: str, reason: str) -> None:
    """The move failed: the volume stays where its row says, and its app may run there again."""
    tenant = get_tenant(session, tenant_name)
    volume = get_volume(session, tenant, name)
    target, volume.moving_to = volume.moving_to, None
    audit.record(session, actor, "volume.move", tenant.name, volume=name, source=volume.node, target=target,
                 state="failed", reason=reason)  # fmt: skip
    session.commit()


def recover_moves(session: Session) -> list[str]:
    """Moves a stopped daemon cut off, as TENANT/VOLUME: each volume stays on the node its row names (mounted
    there again when its app starts), and its app may run again."""
    cut = list(session.exec(select(Volume, Tenant.name).join(Tenant).where(col(Volume.moving_to).is_not(None))))
    for volume, tenant in cut:
        audit.record(session, MOVE, "volume.move", tenant, volume=volume.name, source=volume.node,
                     target=volume.moving_to, state="failed", reason="cut off by the daemon's stop")  # fmt: skip
        volume.moving_to = None
    session.commit()
    return [f"{tenant}/{volume.name}" for volume, tenant in cut]


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
        moving_to=volume.moving_to,
    )
