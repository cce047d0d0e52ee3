"""`/tenants/{tenant}/volumes` (a tenant's persistent volumes, each with a hard size, on one node) and `/volumes`
(every volume the caller may see). A volume's filesystem is made on this host (and put on its node) before its
row is written, and removed after its row is gone: neither outlives a failure of the other."""

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Query, Response
from sqlalchemy import Engine

from hosting.paas.node_volumes import NodeVolumes
from hosting.paas.volumes import VolumeError
from strata.api.deps import DB, Caller, DbEngine, LeaderOnly, Operator, TenantName, Volumes, VolumeStore, listing_scope
from tenants import db, volumes
from tenants.errors import Forbidden, Unavailable
from tenants.models import Volume
from tenants.schemas import VolumeCreate, VolumeMove, VolumeRead
from tenants.tenancy import get_tenant
from tenants.volumes import HOST_NODE

log = logging.getLogger(__name__)

router = APIRouter(tags=["volumes"])
LOCAL_NODE = HOST_NODE  # the host's own node, where a volume is loop-mounted
MIB = 1 << 20
T = TypeVar("T")

# Creates one at a time: a filesystem found without its row is then a crash's leftover, never a create under way.
creating = threading.Lock()


@router.get("/volumes")
def list_all(session: DB, principal: Caller, store: VolumeStore, tenant: str | None = None) -> list[VolumeRead]:
    """Every volume an operator may see (of `tenant` if given); a tenant's own."""
    wanted = listing_scope(principal, tenant)
    owner = get_tenant(session, wanted) if wanted is not None else None
    return [_read(session, store, v, name) for v, name in volumes.list_volumes(session, owner)]


@router.get("/tenants/{tenant}/volumes")
def list_volumes(session: DB, tenant: TenantName, store: VolumeStore) -> list[VolumeRead]:
    owner = get_tenant(session, tenant)
    return [_read(session, store, v, tenant) for v, _ in volumes.list_volumes(session, owner)]


@router.post("/tenants/{tenant}/volumes", status_code=201, dependencies=[LeaderOnly])
def create_volume(session: DB, principal: Caller, tenant: TenantName, body: VolumeCreate, store: Volumes) -> VolumeRead:
    """A volume of `size_mib` with a hard limit (writes past it fail with ENOSPC in the container), counted
    against the plan's storage quota, on `node` (operators only): by default the host, or for a dedicated tenant
    one of its own VM nodes (a disk of the VM)."""
    if body.node is not None and not principal.is_operator:
        raise Forbidden("only an operator chooses a volume's node", field="node")
    with creating:
        owner = volumes.check_create(session, tenant, body.name, body.size_mib)
        node = volumes.placement(session, owner, body.node)
        row = filesystem_then(
            store, tenant, body.name, body.size_mib,
            lambda: volumes.record_create(session, principal.actor, owner, body.name, body.size_mib, node),
            node=node,
        )  # fmt: skip
    return _read(session, store, row, tenant)


def filesystem_then(
    store: NodeVolumes, tenant: str, name: str, size_mib: int, record: Callable[[], T], *, node: str = LOCAL_NODE
) -> T:
    """Make the volume's filesystem and put it on `node`, then `record` its rows; the filesystem goes again if
    that fails. A filesystem found without rows is a crash's leftover, removed first. Called with `creating`
    held."""
    if store.path(tenant, name).exists():
        log.warning("volume %s/%s: a filesystem without its rows (left by a crash) is removed", tenant, name)
        _remove(store, tenant, name)
    try:
        store.create(tenant, name, size_mib)
    except VolumeError as exc:
        raise Unavailable(str(exc)) from None
    try:
        if node != LOCAL_NODE:
            try:
                store.put_on(tenant, name, node)
            except VolumeError as exc:
                raise Unavailable(f"volume {name} could not be put on node {node}: {exc}") from None
        return record()
    except BaseException:
        _remove(store, tenant, name)
        raise


@router.post("/tenants/{tenant}/volumes/{volume}/move", dependencies=[LeaderOnly])
async def move_volume(
    engine: DbEngine, principal: Operator, tenant: TenantName, volume: str, body: VolumeMove, store: Volumes
) -> VolumeRead:
    """Move the volume to `node` with the app that mounts it: its instance stops, the volume is released where
    it is (unmounted; on a VM node, unmounted in the guest and detached from the VM) and put on `node`, and the
    app starts there. No data is copied: every node's disk is this host's. Answered once the volume is there;
    refused (and left where it was) while it is backed up or restored, or for a node it may not live on."""
    await store.move(principal.actor, tenant, volume, body.node)
    row = await asyncio.to_thread(_row, engine, tenant, volume)
    try:
        used: float | None = (await store.usage_on(tenant, volume, row.node)).used_bytes / MIB
    except VolumeError:
        used = None
    return await asyncio.to_thread(_read_row, engine, row, tenant, used)


@router.get("/tenants/{tenant}/volumes/{volume}")
def get_volume(session: DB, tenant: TenantName, volume: str, store: VolumeStore) -> VolumeRead:
    """Its size, how much is used, its node and the app that mounts it."""
    return _read(session, store, volumes.get_volume(session, get_tenant(session, tenant), volume), tenant)


@router.delete("/tenants/{tenant}/volumes/{volume}", status_code=204, dependencies=[LeaderOnly])
def delete_volume(
    session: DB,
    principal: Caller,
    tenant: TenantName,
    volume: str,
    store: Volumes,
    force: bool = Query(False, description="delete it even though an app mounts it: the app loses it"),
) -> Response:
    """Delete the volume and its data; refused while an app mounts it, unless `force`."""
    volumes.delete(session, principal.actor, tenant, volume, force=force)
    _remove(store, tenant, volume)
    return Response(status_code=204)


def remove_filesystems(store: NodeVolumes, tenant: str, names: list[str]) -> None:
    """Remove the filesystems of a deleted tenant's volumes (their rows went with it)."""
    for name in names:
        _remove(store, tenant, name)


def _remove(store: NodeVolumes, tenant: str, name: str) -> None:
    try:
        store.remove(tenant, name)
    except (VolumeError, OSError) as exc:  # the row is gone: the leftover is the operator's to see, not the caller's
        log.error("volume %s/%s: its filesystem could not be removed: %s", tenant, name, exc)


def _row(engine: Engine, tenant: str, name: str) -> Volume:
    with db.session(engine) as session:
        return volumes.get_volume(session, get_tenant(session, tenant), name)


def _read_row(engine: Engine, row: Volume, tenant: str, used: float | None) -> VolumeRead:
    with db.session(engine) as session:
        return volumes.read_volume(session, row, tenant, used)


def _read(session: DB, store: NodeVolumes | None, volume: Volume, tenant: str) -> VolumeRead:
    return volumes.read_volume(session, volume, tenant, used_mib(store, tenant, volume.name))


def used_mib(store: NodeVolumes | None, tenant: str, name: str) -> float | None:
    """What the volume holds, or None when this daemon cannot say (not mounted here; no volume store)."""
    if store is None:
        return None
    try:
        return store.usage(tenant, name).used_bytes / MIB
    except (VolumeError, OSError):
        return None
