"""`/tenants/{tenant}/backups` and `/backups`: verified backups of volumes, and their restores. A backup is
answered once it is verified or failed: the answer never calls a copy that was not read back a success."""

import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import Engine

from hosting.paas import service_credentials
from strata.api.deps import DB, Backups, Caller, DbEngine, LeaderOnly, Pool, RowId, Secrets, TenantName, listing_scope
from tenants import backups, db
from tenants.enums import BackupKind
from tenants.schemas import BackupRead, BackupRestore, VolumeRead
from tenants.tenancy import get_tenant

router = APIRouter(tags=["backups"])


@router.get("/backups")
def list_all(session: DB, principal: Caller, tenant: str | None = None) -> list[BackupRead]:
    """Every backup an operator may see (of `tenant` if given); a tenant's own. Newest first."""
    wanted = listing_scope(principal, tenant)
    owner = get_tenant(session, wanted) if wanted is not None else None
    return backups.read(backups.list_backups(session, owner))


@router.get("/tenants/{tenant}/backups")
def list_backups(session: DB, tenant: TenantName) -> list[BackupRead]:
    return backups.read(backups.list_backups(session, get_tenant(session, tenant)))


@router.post("/tenants/{tenant}/volumes/{volume}/backups", status_code=201, dependencies=[LeaderOnly])
async def create_backup(principal: Caller, tenant: TenantName, volume: str, store: Backups) -> BackupRead:
    """Back the volume up now, wherever it lives, its app paused for the copy, and verify it: the answer says
    `verified`, or `failed` and why."""
    return await store.create(principal.actor, tenant, volume)


@router.get("/tenants/{tenant}/backups/{backup}")
def get_backup(session: DB, tenant: TenantName, backup: RowId) -> BackupRead:
    owner = get_tenant(session, tenant)
    return backups.read([(backups.get_backup(session, owner, backup), tenant)])[0]


@router.post("/tenants/{tenant}/backups/{backup}/restore", dependencies=[LeaderOnly])
async def restore_backup(
    engine: DbEngine, pool: Pool, box: Secrets, principal: Caller, tenant: TenantName, backup: RowId,
    body: BackupRestore, store: Backups,
) -> VolumeRead:  # fmt: skip
    """Replace the contents of the volume (the backup's own, or `volume`) with the backup; the apps that mount
    it are stopped meanwhile and start again on the restored data. A `pg_dump` restores into a service's
    database beside the live one, which it then replaces (its apps run on). A service's volume restored from
    files is answered once the service runs again with the logins its apps have now (a backup's roles may be
    older)."""
    files = await asyncio.to_thread(_kind, engine, tenant, backup) == BackupKind.FILES
    restored = await store.restore(principal.actor, tenant, backup, body.volume)
    if files and await asyncio.to_thread(_is_service, engine, tenant, restored.name):
        await service_credentials.reapply(engine, pool, box, tenant, restored.name)
    return restored


def _kind(engine: Engine, tenant: str, backup: int) -> str:
    with db.session(engine) as session:
        return backups.get_backup(session, get_tenant(session, tenant), backup).kind


def _is_service(engine: Engine, tenant: str, volume: str) -> bool:
    """Whether the volume is a service's: restored from files, it has the roles of the backup's time."""
    with db.session(engine) as session:
        return backups.is_service(session, get_tenant(session, tenant), volume)


@router.delete("/tenants/{tenant}/backups/{backup}", status_code=204, dependencies=[LeaderOnly])
async def delete_backup(principal: Caller, tenant: TenantName, backup: RowId, store: Backups) -> Response:
    """Delete the backup and its archive. 503 if the store keeps the archive for now: the backup stays listed as
    `deleting`, restored no more, and goes once the store takes the deletion."""
    await store.delete(principal.actor, tenant, backup)
    return Response(status_code=204)
