"""What a route may reach, and who is asking: the one place the control API reads `app.state` (the
`Platform` that `create_app` stored) and decides authorisation. Routes take both as typed dependencies."""

import asyncio
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from gateway import FrontDoor as Gateway
from gateway.certificates import Certificates
from hosting.paas.backups import VolumeBackups
from hosting.paas.builds import Builder
from hosting.paas.libvirt_hosts import LibvirtHosts
from hosting.paas.node_volumes import NodeVolumes
from hosting.paas.nodes import NodePool
from hosting.paas.pulls import ImagePuller
from hosting.paas.reach import Reach
from hosting.paas.remote_hosts import RemoteHosts
from hosting.paas.sleeper import ColdStarts
from hosting.paas.usage import UsageSampler
from hosting.paas.vm_nodes import VmNodes
from strata.config import Settings
from tenants import daemons, db, roles, tokens
from tenants.enums import Role
from tenants.errors import Conflict, Forbidden, NotFound
from tenants.schemas import DaemonRead, PullRead, SleepRead
from tenants.secrets import SecretBox
from tenants.tokens import Principal


@dataclass(frozen=True)
class Platform:
    """The running parts the routes use, beside the database: the live nodes, what their instances use, the
    gateway's traffic, the VM nodes of each hypervisor driver (by its name), the remote hosts and hypervisor hosts,
    which engine answers for an instance (`reach`), and `nudge`, which asks the reconciler for a pass now. Made by
    the daemon, stored once by `create_app`, shared by every request."""

    engine: Engine
    settings: Settings
    pool: NodePool
    usage: UsageSampler
    gateway: Gateway
    hypervisors: Mapping[str, VmNodes]
    nudge: Callable[[], None]
    remote_hosts: RemoteHosts  # other machines' engines, over SSH
    libvirt_hosts: LibvirtHosts  # VM nodes on other machines' hypervisors, over SSH
    reach: Reach  # the engines of instances' nodes, a standby's remote hosts' through its own logins
    builder: Builder | None = None  # builds from source (None: builds are refused)
    certificates: Certificates | None = None  # HTTPS certificates (None: no HTTPS listener)
    pulls: ImagePuller | None = None  # the images being pulled for apps (None: no image store, no pulls)
    volumes: NodeVolumes | None = None  # the volumes, on the host and VM nodes (None: volumes are refused)
    backups: VolumeBackups | None = None  # their backups (None with no volumes)
    sleeps: Callable[[], Mapping[tuple[str, str], SleepRead]] = dict  # each app's sleep and wake-ups (in memory)
    cold_starts: ColdStarts = field(default_factory=ColdStarts)  # how long sleeping apps took to wake
    leads: Callable[[], bool] = lambda: True  # whether this daemon leads (it alone keeps the volumes)

    def install(self, app: FastAPI) -> None:
        app.state.platform = self


async def get_platform(connection: HTTPConnection) -> Platform:
    """For HTTP and WebSocket routes alike (both are an `HTTPConnection`). The getters are coroutines so that
    FastAPI calls them on the loop, not in a worker thread."""
    platform: Platform = connection.app.state.platform
    return platform


_Platform = Annotated[Platform, Depends(get_platform)]


async def get_engine(platform: _Platform) -> Engine:
    return platform.engine


async def get_settings(platform: _Platform) -> Settings:
    return platform.settings


async def get_pool(platform: _Platform) -> NodePool:
    return platform.pool


async def get_reach(platform: _Platform) -> Reach:
    return platform.reach


async def get_usage(platform: _Platform) -> Mapping[str, tuple[int, int]]:
    """Instance -> (millicores, MiB) used lately: the sampler's latest, read per request (it is replaced)."""
    return platform.usage.usage


async def get_gateway(platform: _Platform) -> Gateway:
    return platform.gateway


async def get_hypervisors(platform: _Platform) -> Mapping[str, VmNodes]:
    return platform.hypervisors


async def get_remote_hosts(platform: _Platform) -> RemoteHosts:
    return platform.remote_hosts


async def get_libvirt_hosts(platform: _Platform) -> LibvirtHosts:
    return platform.libvirt_hosts


async def get_nudge(platform: _Platform) -> Callable[[], None]:
    return platform.nudge


async def get_builder(platform: _Platform) -> Builder:
    if platform.builder is None:
        raise Conflict("this daemon builds nothing from source (it runs without the host's Docker engine)")
    return platform.builder


async def get_puller(platform: _Platform) -> ImagePuller | None:
    return platform.pulls


async def get_pulls(platform: _Platform) -> Mapping[tuple[str, str], PullRead]:
    """(tenant, app) -> the pull of its image, while it runs or after it failed (in memory, per request)."""
    return platform.pulls.progress() if platform.pulls is not None else {}


async def get_sleeps(platform: _Platform) -> Mapping[tuple[str, str], SleepRead]:
    """(tenant, app) -> its sleep: asleep or awake, and how often it was woken (in memory, per request)."""
    return platform.sleeps()


async def get_cold_starts(platform: _Platform) -> ColdStarts:
    return platform.cold_starts


async def get_volume_store(platform: _Platform) -> NodeVolumes | None:
    return platform.volumes


async def get_volumes(platform: _Platform) -> NodeVolumes:
    if platform.volumes is None:
        raise Conflict("this platform keeps no volumes (the daemon was started without a volume store)")
    return platform.volumes


async def get_backup_store(platform: _Platform) -> VolumeBackups | None:
    return platform.backups


async def get_backups(platform: _Platform) -> VolumeBackups:
    if platform.backups is None:
        raise Conflict("this platform keeps no volumes, so no backups (the daemon was started without a volume store)")
    return platform.backups


DbEngine = Annotated[Engine, Depends(get_engine)]
Config = Annotated[Settings, Depends(get_settings)]
Pool = Annotated[NodePool, Depends(get_pool)]
Engines = Annotated[Reach, Depends(get_reach)]  # for what a user asks of an instance: its logs, a shell
InstanceUsage = Annotated[Mapping[str, tuple[int, int]], Depends(get_usage)]
FrontDoor = Annotated[Gateway, Depends(get_gateway)]
Hypervisors = Annotated[Mapping[str, VmNodes], Depends(get_hypervisors)]
Nudge = Annotated[Callable[[], None], Depends(get_nudge)]
RemoteHostsDep = Annotated[RemoteHosts, Depends(get_remote_hosts)]
LibvirtHostsDep = Annotated[LibvirtHosts, Depends(get_libvirt_hosts)]
Pulls = Annotated[Mapping[tuple[str, str], PullRead], Depends(get_pulls)]
Sleeps = Annotated[Mapping[tuple[str, str], SleepRead], Depends(get_sleeps)]
ColdStartTimes = Annotated[ColdStarts, Depends(get_cold_starts)]
Puller = Annotated[ImagePuller | None, Depends(get_puller)]
Builds = Annotated[Builder, Depends(get_builder)]
Volumes = Annotated[NodeVolumes, Depends(get_volumes)]


def get_secrets(settings: Config) -> SecretBox:
    return SecretBox(settings.secret_key_file)


Backups = Annotated[VolumeBackups, Depends(get_backups)]
BackupStore = Annotated[VolumeBackups | None, Depends(get_backup_store)]  # for routes that work without one
Secrets = Annotated[SecretBox, Depends(get_secrets)]
VolumeStore = Annotated[NodeVolumes | None, Depends(get_volume_store)]  # for routes that work without one


def get_session(engine: DbEngine) -> Iterator[Session]:
    with db.session(engine) as session:
        yield session


DB = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False)


def get_principal(
    connection: HTTPConnection,
    session: DB,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, if its token is valid and it may do this operation (`authorize`): every route's first check."""
    principal = tokens.authenticate(session, credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(
            401, "a valid API token is needed (Authorization: Bearer ...)", {"WWW-Authenticate": "Bearer"}
        )
    route = connection.scope["route"]
    authorize(principal, connection.scope["method"], route.path, route.name, connection.path_params.get("tenant"))
    return principal


def authorize(principal: Principal, method: str, path: str, name: str, tenant: str | None) -> None:
    """Whether `principal` may do the operation `method path` (named `name`) on `tenant`'s things: another
    tenant's are as absent as ones that never existed (404); a member's role must allow it (`tenants.roles`: 403).
    Operators pass here; the operations only they may do say so themselves (`Operator`)."""
    scope(principal, tenant)
    role = principal.member_role
    if role is not None and not roles.allows(role, method, path):
        who = f"member {principal.member!r} is" if principal.member else "this credential is"
        raise Forbidden(roles.refusal(who, principal.tenant or "", role, method, path, name.replace("_", " ")))


Caller = Annotated[Principal, Depends(get_principal)]


def require_operator(principal: Caller) -> Principal:
    if not principal.is_operator:
        raise Forbidden("only an operator may do this")
    return principal


Operator = Annotated[Principal, Depends(require_operator)]


async def require_leader(platform: _Platform, _: Caller) -> None:
    """Volumes (and what keeps its data on one: backups, managed services) live in the leading daemon's home: a
    standby refuses to make, move, copy or delete them, naming where to ask."""
    if not platform.leads():
        raise Conflict(
            f"this daemon ({platform.settings.daemon_name}) stands by: volumes, backups and services are kept by "
            "the daemon that leads; use its API or SSH (`strata status` names it)"
        )


LeaderOnly = Depends(require_leader)


async def require_image_store(platform: _Platform, engine: DbEngine, _: Caller) -> None:
    """Images are built and loaded into the leader's image store, its host's engine: a standby on another host
    refuses, naming it (an image on its own engine would never reach a node)."""
    if platform.leads():
        return

    def elsewhere() -> DaemonRead | None:
        with db.session(engine) as session:
            return daemons.leader_elsewhere(session, socket.gethostname(), db.clock(session))

    if (found := await asyncio.to_thread(elsewhere)) is not None:
        raise Conflict(daemons.image_store_elsewhere("images are loaded", found))


ImageStoreHere = Depends(require_image_store)


def scope(principal: Principal, tenant: str | None) -> None:
    """A tenant token may name only its own tenant; any other is as absent as one that never existed."""
    if tenant is not None and not principal.is_operator and tenant != principal.tenant:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")


def visible_tenant(principal: Caller, tenant: str) -> str:
    """Path dependency for `/tenants/{tenant}/...`: the name, once the caller may see it (`get_principal`)."""
    return tenant


TenantName = Annotated[str, Depends(visible_tenant)]

MAX_ROW_ID = 2**63 - 1  # what a database's BIGINT holds
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def listing_scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant filter of a listing: as asked for an operator, always its own for a tenant."""
    scope(principal, tenant)
    return tenant if principal.is_operator else principal.tenant


def check_credential_role(principal: Principal, role: Role, tenant: str | None, member: str | None) -> None:
    """A tenant may create credentials only for itself and never an operator's; a member (an owner: `tenants.roles`
    keeps the others from `POST /keys` and `/tokens`) only its own, so none outlives it or speaks for another."""
    if principal.is_operator:
        return
    if role == Role.OPERATOR:
        raise Forbidden("only an operator may create operator credentials")
    scope(principal, tenant)
    if principal.member is not None and member != principal.member:
        whose = f"member {member!r}" if member else "the tenant (its owner's, of no member)"
        raise Forbidden(
            f"member {principal.member!r} makes keys and tokens of its own only, not of {whose}: set member to "
            f"{principal.member!r}, or use the tenant's own credentials"
        )
