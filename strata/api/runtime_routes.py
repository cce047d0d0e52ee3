"""`/nodes` and `/images` (operators), and an app's logs: the parts of the API that reach the engines."""

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import IO, Annotated, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from sqlmodel import Session

from hosting.iaas.driver import HypervisorError
from hosting.iaas.flavors import flavor
from hosting.paas import images
from hosting.paas.host_login import HostKeyMismatch, HostUnreachable
from hosting.paas.libvirt_hosts import LibvirtHosts
from hosting.paas.logs import merged_logs
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.remote_hosts import RemoteHosts
from hosting.paas.runtime import EngineError, NodeRuntime
from hosting.paas.vm_nodes import VmNodes
from strata.api.deps import (
    DB,
    DbEngine,
    Engines,
    FrontDoor,
    Hypervisors,
    ImageStoreHere,
    LibvirtHostsDep,
    Nudge,
    Operator,
    Pool,
    RemoteHostsDep,
    TenantName,
)
from tenants import apps, audit, db, nodes
from tenants import images as tenant_images
from tenants.errors import Conflict, Invalid, NotFound
from tenants.schemas import (
    DEFAULT_FLAVOR,
    ImageRead,
    InstanceRead,
    NodeCreate,
    NodeRead,
    SshKeyRead,
    TrafficRead,
    VmStatsRead,
)
from tenants.ssh_targets import LIBVIRT_DRIVER, SSH_DRIVER
from tenants.tenancy import get_tenant

router = APIRouter(tags=["runtime"])
T = TypeVar("T")

MAX_IMAGE_ARCHIVE_BYTES = 8 * 1024**3
CHUNK_BYTES = 1024 * 1024
MAX_LOG_AGE_SECONDS = 10 * 365 * 24 * 3600


async def _reachable(pool: NodePool) -> list[NodeHandle]:
    """The nodes whose engine answers; those not heard from yet (a daemon just started, its first pass to come)
    are asked first."""
    unheard = [node for node in pool if not node.reachable and node.capacity is None]
    await asyncio.gather(*(node.probe() for node in unheard))
    handles = [node for node in pool if node.reachable]
    if not handles:
        raise Conflict("no node's Docker engine answers; see `strata doctor`")
    return handles


def _log_event(engine: Engine, actor: str, action: str, **detail: object) -> None:
    with db.session(engine) as session:
        audit.record(session, actor, action, None, **detail)
        session.commit()


@router.get("/nodes")
async def list_nodes(
    engine: DbEngine, hypervisors: Hypervisors, libvirt_hosts: LibvirtHostsDep, _: Operator
) -> list[NodeRead]:
    """Every node with its capacity, what its instances claim of it, and what a VM node costs its host."""
    found = await asyncio.to_thread(_in_session, engine, nodes.list_nodes)
    return [await _with_vm_stats(hypervisors, libvirt_hosts, node) for node in found]


@router.get("/nodes/{name}")
async def show_node(
    engine: DbEngine, hypervisors: Hypervisors, libvirt_hosts: LibvirtHostsDep, name: str, _: Operator
) -> NodeRead:
    found = await asyncio.to_thread(_in_session, engine, nodes.list_nodes)
    node = next((node for node in found if node.name == name), None)
    if node is None:
        raise NotFound(f"no node {name}")
    return await _with_vm_stats(hypervisors, libvirt_hosts, node)


@router.post("/nodes", status_code=202)
async def add_node(
    engine: DbEngine,
    hypervisors: Hypervisors,
    remote_hosts: RemoteHostsDep,
    libvirt_hosts: LibvirtHostsDep,
    principal: Operator,
    spec: NodeCreate,
) -> NodeRead:
    """Ask for a VM node; it is `provisioning` until its engine answers (a restore from the flavor's
    template snapshot takes seconds; the flavor's first VM boots cold, once). Or add a remote host (`ssh`): it is
    logged in to and its engine asked first, and recorded only if both answer, with the host key it showed. A VM
    on another host's libvirtd (`uri`) is recorded only once that host let the platform in and its libvirtd
    answered, with the host key it showed."""
    if spec.ssh is not None:
        return await _add_host(engine, remote_hosts, principal.actor, spec)
    if spec.uri is not None:
        return await _add_vm_on_host(engine, libvirt_hosts, principal.actor, spec)
    vm_nodes = hypervisors.get(spec.driver)
    if vm_nodes is None:
        raise Invalid(f"no hypervisor driver {spec.driver!r}; drivers: {', '.join(hypervisors)}", field="driver")
    try:
        flavor(spec.flavor or DEFAULT_FLAVOR)
    except ValueError as exc:
        raise Invalid(str(exc), field="flavor") from None

    def add(session: Session) -> NodeRead:
        node = nodes.add_vm(session, principal.actor, spec, str(vm_nodes.driver.accel))
        return _read(session, node.name)

    added = await asyncio.to_thread(_in_session, engine, add)
    vm_nodes.nudge()
    return added


async def _add_host(engine: Engine, remote_hosts: RemoteHosts, actor: str, spec: NodeCreate) -> NodeRead:
    host_key = await _host_key(engine, spec, remote_hosts.probe, "ssh", (HostUnreachable, EngineError))
    added = await asyncio.to_thread(
        _in_session, engine, lambda s: _read(s, nodes.add_host(s, actor, spec, host_key).name)
    )
    remote_hosts.nudge()
    return added


async def _add_vm_on_host(engine: Engine, libvirt_hosts: LibvirtHosts, actor: str, spec: NodeCreate) -> NodeRead:
    try:
        flavor(spec.flavor or DEFAULT_FLAVOR)
    except ValueError as exc:
        raise Invalid(str(exc), field="flavor") from None
    host_key = await _host_key(engine, spec, libvirt_hosts.probe, "uri", (HostUnreachable, HypervisorError))
    accel = str(libvirt_hosts.accel)
    added = await asyncio.to_thread(
        _in_session, engine, lambda s: _read(s, nodes.add_vm(s, actor, spec, accel, host_key).name)
    )
    libvirt_hosts.nudge()
    return added


async def _host_key(
    engine: Engine,
    spec: NodeCreate,
    probe: Callable[[NodeCreate], Awaitable[str]],
    field: str,
    failures: tuple[type[Exception], ...],
) -> str:
    """The host key of the machine a new node is on, its name checked free before connecting; a machine that cannot
    be reached (`failures`) is an error of `field`, a host key other than the one given of `host_key`."""
    await asyncio.to_thread(_in_session, engine, lambda session: nodes.check_new(session, spec))
    try:
        return await probe(spec)
    except HostKeyMismatch as exc:
        raise Invalid(str(exc), field="host_key") from None
    except failures as exc:
        raise Invalid(str(exc), field=field) from None


@router.get("/hosts/ssh-key")
async def host_ssh_key(remote_hosts: RemoteHostsDep, _: Operator) -> SshKeyRead:
    """The public key the platform logs in to remote hosts with: what a host's `authorized_keys` must hold."""
    return SshKeyRead(public_key=remote_hosts.public_key)


@router.post("/nodes/{name}/drain")
def drain_node(session: DB, principal: Operator, name: str) -> NodeRead:
    """No new instances on the node; those on it are replaced elsewhere, a new one ready before an old goes."""
    nodes.set_draining(session, principal.actor, name, True)
    return _read(session, name)


@router.post("/nodes/{name}/resume")
def resume_node(
    session: DB,
    hypervisors: Hypervisors,
    remote_hosts: RemoteHostsDep,
    libvirt_hosts: LibvirtHostsDep,
    principal: Operator,
    name: str,
) -> NodeRead:
    """Put a drained node back in service; a VM node or remote host that failed is tried again."""
    node = nodes.set_draining(session, principal.actor, name, False)
    resumed = _read(session, name)
    _nudge(hypervisors, remote_hosts, libvirt_hosts, node.driver)
    return resumed


@router.delete("/nodes/{name}", status_code=202)
def remove_node(
    session: DB,
    hypervisors: Hypervisors,
    remote_hosts: RemoteHostsDep,
    libvirt_hosts: LibvirtHostsDep,
    principal: Operator,
    name: str,
    force: bool = False,
) -> NodeRead:
    """Destroy a VM node, or take a remote host out of the platform with this platform's containers on it (refused
    while instances run on it, unless `force`); it is gone once `removing` ends."""
    nodes.request_removal(session, principal.actor, name, force=force)
    removing = _read(session, name)  # before the nudge: the record may be gone a moment later
    _nudge(hypervisors, remote_hosts, libvirt_hosts, removing.driver)
    return removing


def _nudge(
    hypervisors: Mapping[str, VmNodes], remote_hosts: RemoteHosts, libvirt_hosts: LibvirtHosts, driver: str
) -> None:
    """Have the part that brings nodes of `driver` look at the registry now."""
    if driver == SSH_DRIVER:
        remote_hosts.nudge()
    elif (vm_nodes := hypervisors.get(driver)) is not None:
        vm_nodes.nudge()
    if driver == LIBVIRT_DRIVER:
        libvirt_hosts.nudge()


def _read(session: Session, name: str) -> NodeRead:
    return next(node for node in nodes.list_nodes(session) if node.name == name)


def _in_session(engine: Engine, read: Callable[[Session], T]) -> T:
    with db.session(engine) as session:
        return read(session)


async def _with_vm_stats(hypervisors: Mapping[str, VmNodes], libvirt_hosts: LibvirtHosts, node: NodeRead) -> NodeRead:
    """The node with what its VM costs its host, if it is a VM this daemon reaches (another host's: while it leads)."""
    if node.uri is not None:
        driver = libvirt_hosts.driver_of(node.name)
    else:
        vm_nodes = hypervisors.get(node.driver)
        driver = vm_nodes.driver if vm_nodes is not None else None
    if driver is None or node.name not in driver.names():
        return node
    try:
        stats = await driver.stats(node.name)
    except (HypervisorError, OSError):
        return node  # it stopped meanwhile
    return node.model_copy(update={"vm": VmStatsRead(**asdict(stats))})


@router.get("/images")
async def list_images(engine: DbEngine, pool: Pool, _: Operator) -> list[ImageRead]:
    """Every node's images, each with the tenants it was pulled or built for (none: the platform's own)."""
    owners = await asyncio.to_thread(_in_session, engine, _owners)
    found = []
    for node in await _reachable(pool):
        for image in await node.runtime.images():
            found.append(
                ImageRead(
                    node=node.name,
                    tags=image.tags,
                    id=image.id,
                    size_bytes=image.size_bytes,
                    created=image.created,
                    owners=sorted(owners.get(image.id, set())),
                )
            )
    return found


def _owners(session: Session) -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for tenant, image in tenant_images.list_owned(session, None):
        owners.setdefault(image.image_id, set()).add(tenant)
    return owners


@router.post("/images/bootstrap", dependencies=[ImageStoreHere])
async def bootstrap_images(engine: DbEngine, pool: Pool, nudge: Nudge, principal: Operator) -> list[str]:
    """Build the sample images (strata/hello, strata/static) from busybox-static on every node."""
    try:
        built = await images.bootstrap([node.runtime for node in await _reachable(pool)])
    except (images.BusyboxMissing, EngineError) as exc:
        raise Conflict(str(exc)) from None
    tags = sorted({image.tag for image in built})
    await asyncio.to_thread(_log_event, engine, principal.actor, "image.bootstrap", tags=tags)
    nudge()
    return tags


TAR_BODY = {"requestBody": {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/images/load", openapi_extra=TAR_BODY, dependencies=[ImageStoreHere])
async def load_images(request: Request, engine: DbEngine, pool: Pool, nudge: Nudge, principal: Operator) -> list[str]:
    """Load a `docker save` archive (the request body) onto every node; answers the tags it brought."""
    with tempfile.TemporaryFile() as archive:  # spooled once, then streamed to each node
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_IMAGE_ARCHIVE_BYTES:
                raise Invalid(f"the archive is over {MAX_IMAGE_ARCHIVE_BYTES // 1024**3} GiB", field="body")
            await asyncio.to_thread(archive.write, chunk)
        if size == 0:
            raise Invalid("the body must be a `docker save` archive", field="body")
        tags: set[str] = set()
        for node in await _reachable(pool):
            archive.seek(0)
            try:
                tags.update(await node.runtime.load(_chunks(archive)))
            except EngineError as exc:
                raise Conflict(str(exc)) from None
    await asyncio.to_thread(_log_event, engine, principal.actor, "image.load", tags=sorted(tags), bytes=size)
    nudge()
    return sorted(tags)


@router.get("/tenants/{tenant}/apps/{app}/logs", response_class=StreamingResponse, tags=["apps"])
async def app_logs(
    engine: DbEngine,
    reach: Engines,
    tenant: TenantName,
    app: str,
    follow: bool = False,
    since: Annotated[
        int | None, Query(ge=1, le=MAX_LOG_AGE_SECONDS, description="only lines of the last N seconds")
    ] = None,
) -> StreamingResponse:
    """The output of every instance of the app, each line prefixed by `[instance]`; `follow` streams on. An
    instance whose node's engine this daemon does not reach has a line saying so, naming the node and why."""
    instances = await asyncio.to_thread(_instances, engine, tenant, app)
    sources: list[tuple[str, NodeRuntime, str]] = []
    unreached: list[tuple[str, EngineError]] = []
    for instance in instances:
        try:
            sources.append((instance.id, reach.runtime(instance.node), instance.container_id))
        except EngineError as exc:
            unreached.append((instance.id, exc))
    start = int(time.time()) - since if since else None
    lines = merged_logs(sources, follow=follow, since=start, unreached=unreached)
    return StreamingResponse(lines, media_type="text/plain")


@router.get("/tenants/{tenant}/apps/{app}/traffic", tags=["apps"])
def app_traffic(session: DB, gateway: FrontDoor, tenant: TenantName, app: str) -> TrafficRead:
    """Requests per second, latency quantiles and error rate over the last minute, from the gateway."""
    apps.get_app(session, get_tenant(session, tenant), app)  # 404 for an app that does not exist
    traffic = gateway.traffic(tenant, app)
    if traffic is None:
        return TrafficRead(requests_per_second=0.0, p50_ms=None, p99_ms=None, error_rate=0.0, requests=0)
    return TrafficRead(**traffic.__dict__)


def _instances(engine: Engine, tenant: str, app: str) -> list[InstanceRead]:
    with db.session(engine) as session:
        return apps.describe(session, tenant, app).instances


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
        yield chunk
