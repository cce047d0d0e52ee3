"""What the control API accepts and returns. Input models carry every bound, so bad input is refused
with the field named before anything reaches the database, Docker or a file path."""

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from tenants.enums import (
    AppKind,
    BackupKind,
    BackupState,
    BuildSource,
    BuildState,
    InstanceState,
    Isolation,
    MemberRole,
    Role,
    TenantStatus,
)
from tenants.errors import Invalid
from tenants.libvirt_uris import parse_libvirt_uri
from tenants.names import MAX_NAME_LENGTH, NAME_PATTERN, check_hostname, check_name, check_tenant_name
from tenants.ssh_targets import LIBVIRT_DRIVER, SSH_DRIVER, check_host_key, check_socket, parse_target

MAX_REPLICAS = 100
DEFAULT_FLAVOR = "small"  # a VM node's, when none is asked for
MIN_CPU_MILLICORES, MAX_CPU_MILLICORES = 10, 64_000
MIN_MEMORY_MIB, MAX_MEMORY_MIB = 6, 1_048_576  # Docker refuses less than 6 MiB
MAX_ENV_VARS, MAX_ENV_VALUE = 100, 4_096
MAX_COMMAND_ARGS, MAX_ARG_LENGTH = 64, 4_096
MAX_HOSTNAMES = 10
MAX_IMAGE_LENGTH = 255
MAX_HEALTH_PATH = 256
MAX_PUBLIC_KEY = 16_384
MAX_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_VOLUMES_PER_APP = 8
MAX_IDLE_STOP_SECONDS = 7 * 24 * 3600
MIN_VOLUME_MIB, MAX_VOLUME_MIB = 16, 1_048_576  # ext4 needs a few MiB of its own; 1 TiB
MAX_MOUNT_PATH = 256

# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest], lowercase path.
_IMAGE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEALTH_PATH = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no spaces: it goes on a request line
_MOUNT_PATH = re.compile(r"(/[A-Za-z0-9_.@+-]+)+")
_SYSTEM_PATHS = ("/proc", "/sys", "/dev")  # the engine's own mounts: a volume there would hide or break them


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# The schema says what `check_name` enforces (so API clients and fuzzers know); the check gives the messages.
NAME_SCHEMA = {"type": "string", "pattern": f"^{NAME_PATTERN}$", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
Name = Annotated[str, AfterValidator(check_name), WithJsonSchema(NAME_SCHEMA)]
TenantName = Annotated[str, AfterValidator(check_tenant_name), WithJsonSchema(NAME_SCHEMA)]
Argument = Annotated[str, Field(max_length=MAX_ARG_LENGTH), AfterValidator(_no_nul)]


class Error(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the API has this shape."""

    error: Error


class Health(BaseModel):
    status: str
    version: str


class PlanRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    max_apps: int
    max_instances: int
    max_cpu_millicores: int
    max_memory_mib: int
    requests_per_second: int
    burst: int
    max_body_mib: int
    max_storage_mib: int
    backup_every_hours: int
    backups_kept: int
    idle_stop_seconds: int = 0  # an app with no request for this long sleeps; 0: never


class Usage(BaseModel):
    """What a tenant's apps and volumes claim in all, counted as the quotas count it."""

    apps: int
    instances: int
    cpu_millicores: int
    memory_mib: int
    storage_mib: int = 0


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TenantName
    plan: str = "small"
    isolation: Isolation = Isolation.SHARED


class TenantRead(BaseModel):
    name: str
    plan: PlanRead
    isolation: Isolation
    status: TenantStatus
    created_at: datetime
    usage: Usage


class VolumeMount(BaseModel):
    """One of the tenant's volumes, mounted at `path` in the app's containers."""

    model_config = ConfigDict(extra="forbid")
    volume: Name
    path: Annotated[str, Field(min_length=2, max_length=MAX_MOUNT_PATH)]

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parts = value.split("/")[1:]
        if not _MOUNT_PATH.fullmatch(value) or any(part in (".", "..") for part in parts):
            raise ValueError(f"{value!r} is not an absolute path in the container (like /var/lib/web)")
        if any(value == system or value.startswith(system + "/") for system in _SYSTEM_PATHS):
            raise ValueError(f"{value!r} is under {', '.join(_SYSTEM_PATHS)}, which the container engine mounts")
        return value


class AppSpec(BaseModel):
    """The body of a deploy (PUT): everything an app's containers are made from, and how many."""

    model_config = ConfigDict(extra="forbid")
    image: Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_LENGTH)]
    command: Annotated[list[Argument], Field(max_length=MAX_COMMAND_ARGS)] | None = None
    port: Annotated[int, Field(ge=1, le=65_535)] = 8080
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] = 1
    cpu_millicores: Annotated[int, Field(ge=MIN_CPU_MILLICORES, le=MAX_CPU_MILLICORES)] = 250
    memory_mib: Annotated[int, Field(ge=MIN_MEMORY_MIB, le=MAX_MEMORY_MIB)] = 128
    env: Annotated[dict[str, str], Field(max_length=MAX_ENV_VARS)] = {}
    health_path: Annotated[str, Field(max_length=MAX_HEALTH_PATH)] | None = None
    hostnames: Annotated[list[str], Field(max_length=MAX_HOSTNAMES)] = []
    https_redirect: bool = False  # the front door answers its plain-HTTP requests with a 308 to https
    hsts: bool = False  # the front door adds Strict-Transport-Security to its HTTPS answers
    volumes: Annotated[list[VolumeMount], Field(max_length=MAX_VOLUMES_PER_APP)] = []
    # Sleep after this long without a request (paused; stopped after longer); None: the plan's, 0: never
    idle_stop_seconds: Annotated[int, Field(ge=0, le=MAX_IDLE_STOP_SECONDS)] | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not an image reference (like strata/hello:latest)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _ENV_KEY.fullmatch(key) or len(key) > 256:
                raise ValueError(f"{key!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            if len(item) > MAX_ENV_VALUE or "\x00" in item:
                raise ValueError(f"the value of {key} is over {MAX_ENV_VALUE} characters or holds NUL")
        return value

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is not None and not _HEALTH_PATH.fullmatch(value):
            raise ValueError("must be a URL path starting with '/' of printable characters, no spaces")
        return value

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, value: list[str]) -> list[str]:
        hosts = [check_hostname(host) for host in value]
        if len(set(hosts)) != len(hosts):
            raise ValueError("lists a hostname twice")
        return hosts

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[VolumeMount]) -> list[VolumeMount]:
        if len({m.volume for m in value}) != len(value):
            raise ValueError("mounts a volume twice")
        if len({m.path for m in value}) != len(value):
            raise ValueError("mounts two volumes at one path")
        return value


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)]


class InstanceRead(BaseModel):
    """One running copy of an app. `endpoint` is where the gateway reaches it (HOST:PORT)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    node: str
    state: InstanceState
    endpoint: str | None
    revision: int
    restarts: int
    started_at: datetime | None
    last_health: str | None
    message: str | None = None  # why it is not ready, in words
    container_id: str
    cpu_millicores_used: int | None = None  # sampled every few seconds by the daemon, not stored
    memory_mib_used: int | None = None


class PullRead(BaseModel):
    """The pull of an app's image for one revision, while it runs or after it failed (kept in memory only)."""

    reference: str
    revision: int
    status: str  # pulling | failed
    done_bytes: int = 0
    total_bytes: int = 0  # of the layers announced so far (0 while unknown)
    detail: str = ""  # the engine's last status line, or why the pull failed


class SleepRead(BaseModel):
    """An app's sleep: `awake`, `paused` or `stopped` (its instances' state when it sleeps), how often the
    front door woke it since the daemon started, and how long its last wake-up held the first request."""

    state: str
    wakeups: int = 0
    last_wake_ms: float | None = None


class AppRead(AppSpec):
    model_config = ConfigDict(extra="ignore")
    tenant: str
    name: str
    revision: int
    created_at: datetime
    updated_at: datetime
    problem: str | None = None  # why it does not run as asked (a missing image, no node fits), in words
    commit: str | None = None  # the git commit its image was built from, when it was
    instances: list[InstanceRead] = []
    pull: PullRead | None = None  # its image being pulled for the current revision
    sleep: SleepRead | None = None  # whether it sleeps and how it woke, as the daemon knows it (not stored)

    def ready(self) -> int:
        """How many instances of the current revision are ready."""
        return sum(1 for i in self.instances if i.revision == self.revision and i.state == InstanceState.READY)

    def reason(self) -> str | None:
        """Why the app does not run as asked, in words, or None when it does: its problem, else what the
        first instance that is not ready says of itself."""
        if self.problem:
            return self.problem
        if self.pull is not None and self.pull.status == "pulling" and self.pull.revision == self.revision:
            done, total = self.pull.done_bytes / 2**20, self.pull.total_bytes / 2**20
            return f"pulling {self.pull.reference}: {done:.1f} of {total:.1f} MiB" if total else "pulling its image"
        waiting = [i for i in self.instances if i.revision == self.revision and i.state != InstanceState.READY]
        waiting = [i for i in waiting if i.message]
        if waiting:
            return f"instance {waiting[0].id}: {waiting[0].message}"
        if self.ready() < self.replicas:
            return f"{self.ready()} of {self.replicas} instances ready"
        return None


class VmStatsRead(BaseModel):
    cpu_seconds: float
    memory_bytes: int
    disk_bytes: int


class NodeRead(BaseModel):
    name: str
    driver: str
    state: str
    cpu_millicores: int
    memory_mib: int
    instances: int
    allocated_cpu_millicores: int
    allocated_memory_mib: int
    tenants: list[str] = []  # whose instances run here
    flavor: str | None = None
    tenant: str | None = None  # a dedicated VM node's tenant
    draining: bool = False
    accel: str | None = None
    message: str | None = None
    vm: VmStatsRead | None = None  # what a VM node costs its host, when it is a VM
    volumes: list[str] = []  # `TENANT/VOLUME (APP)`: data on it, and the apps it keeps here even when draining
    ssh: str | None = None  # a remote host's login, USER@HOST:PORT
    docker_socket: str | None = None  # a remote host's engine socket, on that host
    host_key: str | None = None  # the SHA256 fingerprint of the host key a remote host (or hypervisor) must show
    uri: str | None = None  # the hypervisor of a VM node on another host, qemu+ssh://USER@HOST:PORT/system?socket=PATH


def _target(value: str) -> str:
    return str(parse_target(value))


def _libvirt_uri(value: str) -> str:
    return parse_libvirt_uri(value).uri


class NodeCreate(BaseModel):
    """A VM node (`driver` a hypervisor's, `flavor`; with `uri`, a libvirt VM on another host, whose SSH server
    must show `host_key`), or a remote host's Docker engine (`ssh`; its driver is `ssh`): reached as
    USER@HOST:PORT, its engine on `docker_socket` there, showing `host_key` (without one, the key it shows when
    added is recorded and required from then on)."""

    name: Name
    driver: str = "qemu"
    flavor: str | None = None  # a VM's; small when not given
    tenant: TenantName | None = None  # dedicate the node to this tenant
    ssh: Annotated[str, Field(max_length=300), AfterValidator(_target)] | None = None
    docker_socket: Annotated[str, AfterValidator(check_socket)] | None = None
    host_key: Annotated[str, Field(max_length=MAX_PUBLIC_KEY), AfterValidator(check_host_key)] | None = None
    uri: Annotated[str, Field(max_length=400), AfterValidator(_libvirt_uri)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _ssh_driver(cls, values: Any) -> Any:
        """`ssh` alone says the driver."""
        if isinstance(values, dict) and values.get("ssh") is not None and values.get("driver") is None:
            return {**values, "driver": SSH_DRIVER}
        return values

    @model_validator(mode="after")
    def _ssh_fields(self) -> "NodeCreate":
        if self.driver == SSH_DRIVER and self.ssh is None:
            raise Invalid("a remote host (driver ssh) is given by its ssh login, USER@HOST[:PORT]", field="ssh")
        if self.ssh is not None and self.driver != SSH_DRIVER:
            raise Invalid(f"ssh adds a remote host, whose driver is ssh, not {self.driver}", field="driver")
        if self.uri is not None and self.driver != LIBVIRT_DRIVER:
            raise Invalid(f"uri names a libvirt hypervisor: it takes driver libvirt, not {self.driver}", field="uri")
        if self.docker_socket is not None and self.ssh is None:
            raise Invalid("docker_socket is a remote host's (with ssh)", field="ssh")
        if self.host_key is not None and self.ssh is None and self.uri is None:
            raise Invalid("host_key is a remote host's (with ssh) or a remote hypervisor's (with uri)", field="ssh")
        if self.ssh is not None and self.flavor is not None:
            raise Invalid("a remote host is added as the machine it is: it has no flavor", field="flavor")
        if self.ssh is None and self.flavor is None:
            self.flavor = DEFAULT_FLAVOR
        return self


class SshKeyRead(BaseModel):
    """The public key the platform logs in to remote hosts with (OpenSSH's one line)."""

    public_key: str


class ImageRead(BaseModel):
    """An image on one node."""

    node: str
    tags: list[str]
    id: str
    size_bytes: int
    created: datetime
    owners: list[str] = []  # the tenants it was pulled or built for (none: the platform's own)


class TenantImageRead(BaseModel):
    """An image a tenant may run: pulled with its credentials or built from its source."""

    tenant: str
    reference: str
    image_id: str
    source: str  # pull | build
    size_bytes: int
    created_at: datetime


_PASSWORD = Annotated[str, Field(min_length=1, max_length=4_096, repr=False)]


class RegistryLogin(BaseModel):
    """The body of `PUT /tenants/{tenant}/registries/{host}`; the password is stored encrypted, never shown."""

    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=255)]
    password: _PASSWORD


class RegistryRead(BaseModel):
    """A tenant's login to a registry, as shown: never its password."""

    tenant: str
    host: str
    username: str
    created_at: datetime


class KeyCreate(BaseModel):
    """An SSH public key in OpenSSH's one-line format; `tenant` is required for role `tenant`."""

    model_config = ConfigDict(extra="forbid")
    public_key: Annotated[str, Field(min_length=1, max_length=MAX_PUBLIC_KEY)]
    role: Role
    tenant: Name | None = None
    member: Name | None = None  # a member of `tenant`, whose role it acts with; none: the tenant's owner's


class KeyRead(BaseModel):
    id: int
    fingerprint: str
    comment: str
    role: Role
    tenant: str | None
    member: str | None = None
    created_at: datetime


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role = Role.TENANT
    tenant: Name | None = None
    member: Name | None = None  # a member of `tenant`, whose role it acts with; none: the tenant's owner's
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_nul)] = "api"
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TOKEN_TTL_SECONDS)] | None = None


class TokenRead(BaseModel):
    id: int
    name: str
    role: Role
    tenant: str | None
    member: str | None = None
    created_at: datetime
    expires_at: datetime | None


class TokenCreated(TokenRead):
    """Returned once, at creation: the only time the secret is shown."""

    token: str


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    role: MemberRole


class MemberRoleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: MemberRole


class MemberRead(BaseModel):
    """A member of a tenant: its role, and how many SSH keys and API tokens act with it."""

    tenant: str
    name: str
    role: MemberRole
    keys: int
    tokens: int
    created_at: datetime


class Whoami(BaseModel):
    """Who the caller is: an operator, or a tenant's member (`member` None: the tenant's own credentials, its
    owner's) with its role now."""

    role: Role
    tenant: str | None
    member: str | None
    member_role: MemberRole | None


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    time: datetime
    actor: str
    tenant: str | None
    action: str
    detail: dict[str, Any]


class TrafficRead(BaseModel):
    """An app's last minute as its users saw it through the gateway."""

    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    error_rate: float  # share of 5xx answers
    requests: int


class TenantSummary(BaseModel):
    """One line of the console's overview: a tenant with its apps' state and traffic, in one call."""

    name: str
    plan: str
    isolation: Isolation
    status: TenantStatus
    apps: int
    instances_ready: int
    instances_desired: int
    cpu_millicores: int
    max_cpu_millicores: int
    memory_mib: int
    max_memory_mib: int
    requests_per_second: float
    error_rate: float


UNCHANGED_PREFIX = "unchanged:"  # a succeeded build's message when it deployed nothing (`BuildRead.unchanged`)


class BuildRead(BaseModel):
    """One build of an app from source; `message` says why it failed, or that it changed nothing."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    tenant: str
    app: str
    state: BuildState
    source: BuildSource
    actor: str
    commit: str | None
    image: str | None  # the tag it made
    revision: int | None  # the app's revision it deployed (its current one when unchanged)
    message: str | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def unchanged(self) -> bool:
        """Whether the build succeeded without deploying: the app ran that very image already (its message
        then starts with `unchanged:`); any other message of a succeeded build is not this."""
        return self.state == BuildState.SUCCEEDED and (self.message or "").startswith(UNCHANGED_PREFIX)


class CertificateRead(BaseModel):
    """A hostname's certificate as `strata certs list` shows it: never its key."""

    hostname: str
    hostnames: list[str]  # every name it covers
    source: str | None  # local (the platform's CA), acme, operator; None: none obtained yet
    issuer: str | None
    not_after: datetime | None
    last_error: str | None


class CertificateUpload(BaseModel):
    """An operator's certificate (PEM, leaf first) and its private key (PEM); the key is stored 0600 and never
    shown or logged."""

    certificate_pem: Annotated[str, Field(min_length=1, max_length=64 * 1024)]
    key_pem: Annotated[str, Field(min_length=1, max_length=16 * 1024, repr=False)]


class LocalCARead(BaseModel):
    """The local CA's certificate, for clients to trust (public)."""

    certificate_pem: str


class VolumeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    size_mib: Annotated[int, Field(ge=MIN_VOLUME_MIB, le=MAX_VOLUME_MIB)]
    node: Name | None = None  # where it lives (operators only); None: the host, or a dedicated tenant's own VM node


class VolumeMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: Name  # the node it goes to: its app's instance runs there after


class VolumeRead(BaseModel):
    """A volume: its hard size, where its data lives, how much is used (None when its node cannot say), the
    app that mounts it, and the node it is being moved to, while it is."""

    tenant: str
    name: str
    size_mib: int
    node: str
    created_at: datetime
    used_mib: float | None = None
    mounted_by: list[str] = []
    moving_to: str | None = None


class BackupRead(BaseModel):
    """A backup of a volume (`files`), or a service's `pg_dump`: `verified` once restored into a scratch
    container with every checksum equal; `failed` with the reason otherwise. Only a verified backup may be
    restored; a `pg_dump` into a service only."""

    id: int
    tenant: str
    volume: str
    kind: BackupKind
    state: BackupState
    files: int
    size_bytes: int
    archive_sha256: str | None
    message: str | None
    started_at: datetime
    finished_at: datetime | None


class BackupRestore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    volume: Name | None = None  # the tenant's volume to restore into; None: the one it was taken of


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: AppKind = AppKind.POSTGRES
    size_mib: Annotated[int, Field(ge=MIN_VOLUME_MIB, le=MAX_VOLUME_MIB)] = 1_024

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: AppKind) -> AppKind:
        if value == AppKind.WEB:
            raise ValueError("a service is of a service's kind: postgres")
        return value


class ServiceRead(BaseModel):
    """A managed service: where its tenant's containers reach it (`host` on their network), its database and
    user, its volume's size and use, whether it is ready (or why not), and the apps it is bound to. Never its
    password: bound apps get it in `DATABASE_URL`."""

    tenant: str
    name: str
    kind: AppKind
    host: str
    port: int
    database: str
    username: str
    size_mib: int
    used_mib: float | None
    ready: bool
    status: str | None
    bound_to: list[str]
    created_at: datetime


class RotationRead(BaseModel):
    """A rotation of a service's credentials: the login its bound apps are given now, and the one it replaced
    while any of them still runs instances that may use it (`waiting_for`); that one is retired when they are
    gone, by this call or, if they take longer, by the next."""

    login: str
    retiring: str | None
    waiting_for: list[str]
    resumed: bool = False  # this call finished a rotation begun before, and made no new password


class ServiceBind(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: Name


class UsageLine(BaseModel):
    """What one app of a tenant used on one kind of node over a report's period (app "": the tenant's volumes
    no app mounts). Memory and instances at 10 s granularity; requests and bytes through the front door."""

    tenant: str
    app: str
    node_kind: Isolation  # a shared node, or a VM dedicated to the tenant
    cpu_seconds: float
    memory_mib_hours: float
    storage_gib_hours: float
    instance_hours: float
    requests: int
    bytes_in: int  # read from the clients, headers included
    bytes_out: int  # sent to them


METERED = tuple(name for name in UsageLine.model_fields if name not in ("tenant", "app", "node_kind"))  # its counters


class UsageReport(BaseModel):
    """Usage from `since` (its hour included; rolled up per hour, UTC) to `until` (now), with each tenant's plan
    to hold it against."""

    since: datetime
    until: datetime
    lines: list[UsageLine]
    plans: dict[str, PlanRead]  # tenant -> its plan now


class DaemonRead(BaseModel):
    """A daemon on the platform's database: `alive` when it said so within the last few seconds."""

    name: str
    pid: int
    started_at: datetime
    seen_at: datetime
    leading_since: datetime | None = None
    host: str | None = None  # its machine's name
    alive: bool


class StatusRead(BaseModel):
    """Who leads the platform and since when, the daemons standing by, and which daemon answered."""

    database: str  # sqlite | postgresql
    answered_by: str
    leader: DaemonRead | None
    daemons: list[DaemonRead]
