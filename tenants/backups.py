"""Backups' records: one row per backup of a volume, `running` until it is verified or failed. The archives
are `hosting`'s; a row says what became of one, and nothing counts as done before it is verified. A service's
volume is backed up as its database's dump (`BackupKind.PG_DUMP`), which restores into a service only."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from tenants import audit, volumes
from tenants.enums import BackupKind, BackupState, TenantStatus
from tenants.errors import Conflict, NotFound
from tenants.models import Backup, Plan, Service, Tenant, Volume, saved_id, utcnow
from tenants.schemas import BackupRead
from tenants.tenancy import get_tenant

RESTORE = "restore"  # the actor of what the platform finishes of a restore cut off


def start(session: Session, actor: str, tenant_name: str, volume_name: str) -> Backup:
    """A new `running` backup of the tenant's volume (NotFound for either name)."""
    tenant = get_tenant(session, tenant_name)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant_name!r} is suspended; resume it before backing up its volumes")
    volume = volumes.get_volume(session, tenant, volume_name)
    if volume.moving_to is not None:
        raise Conflict(f"volume {volume_name!r} is moving to node {volume.moving_to}; back it up once it is there")
    kind = BackupKind.PG_DUMP if is_service(session, tenant, volume_name) else BackupKind.FILES
    backup = Backup(tenant_id=saved_id(tenant), volume=volume_name, kind=kind, state=BackupState.RUNNING, actor=actor)
    session.add(backup)
    session.commit()
    session.refresh(backup)
    return backup


def finish(
    session: Session, backup_id: int, *, files: int = 0, size_bytes: int = 0, sha256: str | None = None,
    store: str | None = None, failure: str | None = None,
) -> Backup:  # fmt: skip
    """Mark the backup verified (with what it holds, kept in `store`) or, given `failure`, failed; audited
    either way."""
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(f"no backup {backup_id}", field="backup")
    backup.state = BackupState.FAILED if failure else BackupState.VERIFIED
    backup.files, backup.size_bytes, backup.archive_sha256, backup.message = files, size_bytes, sha256, failure
    backup.store = store
    backup.finished_at = utcnow()
    tenant = session.get(Tenant, backup.tenant_id)
    detail = {"backup": backup_id, "volume": backup.volume, "state": backup.state}
    audit.record(session, backup.actor, "backup.create", tenant.name if tenant else None, **detail,
                 **({"reason": failure} if failure else {"files": files, "size_bytes": size_bytes}))  # fmt: skip
    session.commit()
    session.refresh(backup)
    return backup


def recover(session: Session) -> tuple[list[tuple[int, str]], list[str]]:
    """What a stopped daemon left half-done: backups `running`, failed now (their archive may be half-written;
    returned as (id, tenant) for the caller to remove), and restores (the volumes as TENANT/VOLUME, their apps
    let run again on what the restore left)."""
    cut = list(session.exec(select(Backup, Tenant.name).join(Tenant).where(Backup.state == BackupState.RUNNING)))
    for backup, _ in cut:
        backup.state, backup.message = BackupState.FAILED, "cut off by the daemon's stop"
        backup.finished_at = utcnow()
    restores = list(session.exec(select(Volume, Tenant.name).join(Tenant).where(col(Volume.restoring))))
    for volume, tenant in restores:
        volume.restoring = False
        audit.record(session, RESTORE, "backup.restore", tenant, volume=volume.name, state=BackupState.FAILED,
                     reason="cut off by the daemon's stop: the volume holds what it had restored by then")  # fmt: skip
    session.commit()
    return [(saved_id(b), name) for b, name in cut], [f"{tenant}/{volume.name}" for volume, tenant in restores]


def list_backups(session: Session, tenant: Tenant | None = None) -> list[tuple[Backup, str]]:
    """Backups with their tenant's name, of one tenant or all, newest first."""
    query = select(Backup, Tenant.name).join(Tenant, col(Backup.tenant_id) == Tenant.id)
    if tenant is not None:
        query = query.where(Backup.tenant_id == tenant.id)
    return list(session.exec(query.order_by(col(Backup.id).desc())).all())


def get_backup(session: Session, tenant: Tenant, backup_id: int) -> Backup:
    backup = session.get(Backup, backup_id)
    if backup is None or backup.tenant_id != tenant.id:
        raise NotFound(f"tenant {tenant.name!r} has no backup {backup_id}", field="backup")
    return backup


def restorable(session: Session, tenant: Tenant, backup_id: int, into: str | None) -> tuple[Backup, Volume]:
    """The verified backup and the tenant's volume to restore it into (its own by default), which must be
    big enough; refuses anything else with the reason."""
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant.name!r} is suspended; resume it before restoring its volumes")
    backup = get_backup(session, tenant, backup_id)
    if backup.state != BackupState.VERIFIED:
        why = f": {backup.message}" if backup.message else ""
        raise Conflict(f"backup {backup_id} is {backup.state}{why}; only a verified backup is restored")
    target = volumes.get_volume(session, tenant, into or backup.volume)
    if backup.kind == BackupKind.PG_DUMP and not is_service(session, tenant, target.name):
        raise Conflict(f"backup {backup_id} is a pg_dump of service {backup.volume!r}: it restores into a service "
                       f"only, and {target.name!r} is a volume", field="volume")  # fmt: skip
    if target.restoring:
        raise Conflict(f"volume {target.name!r} is being restored already", field="volume")
    if target.moving_to is not None:
        raise Conflict(f"volume {target.name!r} is moving to node {target.moving_to}; restore once it is there",
                       field="volume")  # fmt: skip
    if backup.size_bytes > target.size_mib << 20:
        raise Conflict(
            f"backup {backup_id} needs {backup.size_bytes / 2**20:.1f} MiB, volume {target.name!r} has "
            f"{target.size_mib} MiB; restore into a bigger volume (--to)",
            field="volume",
        )
    return backup, target


def stores(session: Session, tenant: Tenant) -> set[str | None]:
    """Where the tenant's backups are kept (None: this host)."""
    return set(session.exec(select(Backup.store).where(Backup.tenant_id == tenant.id)))


def is_service(session: Session, tenant: Tenant, volume: str) -> bool:
    """Whether the volume is a service's (its database's)."""
    query = select(Service.id).where(Service.tenant_id == tenant.id, Service.name == volume)
    return session.exec(query).first() is not None


def set_restoring(session: Session, tenant: str, volume: str, restoring: bool) -> None:
    """While set, no instance of an app that mounts the volume runs (`tenants.instances.desired_apps`)."""
    row = volumes.get_volume(session, get_tenant(session, tenant), volume)
    row.restoring = restoring
    session.commit()


def record_restore(session: Session, actor: str, tenant: Tenant, backup: Backup, target: Volume) -> None:
    audit.record(session, actor, "backup.restore", tenant.name, backup=backup.id, volume=target.name)
    session.commit()


def mark_deleting(session: Session, actor: str, tenant: Tenant, backup_id: int) -> None:
    """Mark the backup `deleting`, audited: restored no more, its row kept until its archive is gone (`forget`:
    a store out of reach keeps it for a while). Refused while it runs; one deleting already is left so."""
    backup = get_backup(session, tenant, backup_id)
    if backup.state == BackupState.RUNNING:
        raise Conflict(f"backup {backup_id} is running; delete it once it is verified or failed")
    if backup.state != BackupState.DELETING:
        backup.state = BackupState.DELETING
        audit.record(session, actor, "backup.delete", tenant.name, backup=backup_id, volume=backup.volume)
        session.commit()


def forget(session: Session, backup_id: int) -> None:
    """Delete the row of a `deleting` backup whose archive is gone; nothing if it went already."""
    backup = session.get(Backup, backup_id)
    if backup is not None:
        session.delete(backup)
        session.commit()


def deleting(session: Session) -> list[tuple[int, str]]:
    """(id, tenant) of the backups marked `deleting`: those whose archive a store kept."""
    query = select(Backup.id, Tenant.name).join(Tenant).where(Backup.state == BackupState.DELETING)
    return [(backup_id, name) for backup_id, name in session.exec(query) if backup_id is not None]


def due(session: Session, now: datetime) -> list[tuple[str, str]]:
    """(tenant, volume) of every volume, on whichever node it lives, whose latest backup (verified or not: a
    failing one is not retried faster than its schedule) is older than its plan's interval, or that has none."""
    latest: dict[tuple[int, str], datetime] = {}
    taken = select(Backup.tenant_id, Backup.volume, Backup.started_at).where(Backup.state != BackupState.DELETING)
    for tenant_id, volume, started in session.exec(taken):
        key = (tenant_id, volume)
        latest[key] = max(latest.get(key, started), started)
    rows = session.exec(
        select(Volume, Tenant, Plan).join(Tenant, col(Volume.tenant_id) == Tenant.id).join(Plan)
        .where(Tenant.status == TenantStatus.ACTIVE)
    )  # fmt: skip
    return [
        (tenant.name, volume.name)
        for volume, tenant, plan in rows
        if now - latest.get((volume.tenant_id, volume.name), datetime.min.replace(tzinfo=now.tzinfo))
        >= timedelta(hours=plan.backup_every_hours)
    ]


def surplus(session: Session) -> list[tuple[Backup, str]]:
    """Backups past their plan's keep, per volume: the oldest verified ones beyond `backups_kept`, and failed
    ones older than the newest verified (they told what they had to)."""
    found: list[tuple[Backup, str]] = []
    rows = session.exec(select(Backup, Tenant, Plan).join(Tenant, col(Backup.tenant_id) == Tenant.id).join(Plan))
    per_volume: dict[tuple[int, str], list[tuple[Backup, Tenant, Plan]]] = {}
    for backup, tenant, plan in rows:
        per_volume.setdefault((backup.tenant_id, backup.volume), []).append((backup, tenant, plan))
    for group in per_volume.values():
        group.sort(key=lambda row: saved_id(row[0]), reverse=True)  # newest first
        verified = [row for row in group if row[0].state == BackupState.VERIFIED]
        kept = verified[0][2].backups_kept if verified else 0
        found += [(backup, tenant.name) for backup, tenant, _ in verified[kept:]]
        if verified:
            newest = saved_id(verified[0][0])
            found += [(b, t.name) for b, t, _ in group if b.state == BackupState.FAILED and saved_id(b) < newest]
    return found


def read(rows: Iterable[tuple[Backup, str]]) -> list[BackupRead]:
    return [
        BackupRead(tenant=name, **backup.model_dump(exclude={"tenant_id", "actor", "store"})) for backup, name in rows
    ]
