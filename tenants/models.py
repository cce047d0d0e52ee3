"""The control plane's tables: who the tenants are, what they asked to run, who may act, what happened.

Enumerated fields are stored as plain strings (checked by the API schemas) so a new value never needs a
database type migration. Times are UTC and come back timezone-aware on every backend.
"""

from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlmodel import Field, SQLModel

from tenants.enums import Isolation, TenantStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back as aware UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A count of bytes: past 2 GiB, more than PostgreSQL's INTEGER holds (SQLite's INTEGER has 64 bits, as it is).
BYTES = BigInteger().with_variant(Integer(), "sqlite")

# Integer ids are never reused (SQLite reuses a deleted row's id without AUTOINCREMENT): whatever holds an id
# in memory, a log line or a client can never take a new row for a deleted one.
AUTOINCREMENT = {"sqlite_autoincrement": True}


class _Row(Protocol):
    id: int | None


def saved_id(row: _Row) -> int:
    """The id of a row read from (or flushed to) the database: SQLModel types it `int | None` because a row
    not yet inserted has none."""
    if row.id is None:
        raise ValueError(f"this {type(row).__name__} has no id: it was never written")
    return row.id


def _time(*, index: bool = False, nullable: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_column=Column(UTCDateTime(), nullable=nullable, index=index),
    )


def _bytes() -> Any:
    return Field(default=0, sa_column=Column(BYTES, nullable=False))


def _tenant_fk(*, nullable: bool) -> Any:
    return Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("tenant.id", ondelete="CASCADE"), nullable=nullable, index=True),
    )


class Plan(SQLModel, table=True):
    """A tenant's quota: how much of the platform its apps may claim in all."""

    name: str = Field(primary_key=True)
    max_apps: int
    max_instances: int
    max_cpu_millicores: int
    max_memory_mib: int
    requests_per_second: int = Field(default=100, sa_column_kwargs={"server_default": "100"})
    burst: int = Field(default=200, sa_column_kwargs={"server_default": "200"})
    max_body_mib: int = Field(default=10, sa_column_kwargs={"server_default": "10"})
    build_cpu_millicores: int = Field(default=500, sa_column_kwargs={"server_default": "500"})  # one build's cap
    build_memory_mib: int = Field(default=512, sa_column_kwargs={"server_default": "512"})
    max_storage_mib: int = Field(default=1_024, sa_column_kwargs={"server_default": "1024"})  # all its volumes
    backup_every_hours: int = Field(default=24, sa_column_kwargs={"server_default": "24"})  # each volume's
    backups_kept: int = Field(default=7, sa_column_kwargs={"server_default": "7"})  # verified ones, per volume
    # An app with no request for this long sleeps (its instances paused, later stopped); 0: never
    idle_stop_seconds: int = Field(default=900, sa_column_kwargs={"server_default": "900"})


class Tenant(SQLModel, table=True):
    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    plan: str = Field(foreign_key="plan.name")
    isolation: str = Isolation.SHARED
    status: str = TenantStatus.ACTIVE
    created_at: datetime = _time()


class App(SQLModel, table=True):
    """The desired state of one app; the reconciler makes the running containers match it.

    `revision` counts changes of what a container is made from (everything but `replicas`), so
    instances of an older revision are the ones a rolling deploy replaces.
    """

    __table_args__ = (UniqueConstraint("tenant_id", "name"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    name: str
    image: str
    command: list[str] | None = Field(default=None, sa_column=Column(JSON))
    port: int = 8080
    replicas: int = 1
    cpu_millicores: int = 250
    memory_mib: int = 128
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    health_path: str | None = None
    hostnames: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    revision: int = 1
    created_at: datetime = _time()
    updated_at: datetime = _time()
    problem: str | None = None  # written by the reconciler: why the app does not run as asked, in words
    commit: str | None = None  # the git commit its image was built from, when it was
    # What the front door does for it over HTTPS: answer plain HTTP with a 308 to https; send HSTS.
    https_redirect: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    hsts: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # The tenant's volumes it mounts: [{"volume": NAME, "path": /IN/THE/CONTAINER}, ...]
    volumes: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    kind: str = Field(default="web", sa_column_kwargs={"server_default": "web"})  # AppKind: a tenant's, or a service
    # Env given to its containers and never shown: a service's password, a binding's DATABASE_URL. Each value
    # encrypted with the installation's key (`tenants.secrets`).
    sealed_env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    idle_stop_seconds: int | None = None  # sleep after this long without a request; None: the plan's, 0: never


class Volume(SQLModel, table=True):
    """A tenant's persistent volume: a filesystem of `size_mib` with a hard limit, on one node, mounted by at
    most one app (one writer)."""

    __table_args__ = (UniqueConstraint("tenant_id", "name"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    name: str
    size_mib: int
    node: str  # where its data lives: its app's instances run there
    created_at: datetime = _time()
    restoring: bool = Field(default=False, sa_column_kwargs={"server_default": false()})  # no instance mounts it
    moving_to: str | None = None  # the node it is being moved to: meanwhile no instance mounts it


class Service(SQLModel, table=True):
    """A managed service of a tenant (PostgreSQL): its own app (kind `postgres`, same name) on its own volume
    (same name), and the credentials it was made with, the password encrypted."""

    __table_args__ = (UniqueConstraint("tenant_id", "name"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    name: str
    kind: str  # AppKind
    username: str  # the login the bound apps are given; the database is owned by `services.USERNAME`
    database: str
    password_encrypted: str
    retiring: str | None = None  # the login a rotation replaced, until the bound apps stop using it
    created_at: datetime = _time()


class Binding(SQLModel, table=True):
    """A service bound to an app of its tenant: the app's containers get its DATABASE_URL."""

    __table_args__ = (UniqueConstraint("service_id", "app_id"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    service_id: int = Field(
        sa_column=Column(Integer, ForeignKey("service.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    app_id: int = Field(sa_column=Column(Integer, ForeignKey("app.id", ondelete="CASCADE"), nullable=False, index=True))
    created_at: datetime = _time()


class Backup(SQLModel, table=True):
    """A copy of a volume's files, taken with its app paused, or of a service's database (`kind`). It counts
    only once `verified`: restored into a scratch container and every file's checksum (every table's rows)
    compared. `volume` is a name: a backup outlives its volume."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    volume: str
    kind: str = Field(default="files", sa_column_kwargs={"server_default": "files"})  # BackupKind
    state: str  # BackupState: running | verified | failed
    actor: str
    files: int = 0  # a dump's: its tables
    size_bytes: int = _bytes()  # what the volume (the database) used when it was taken: what a restore needs
    archive_sha256: str | None = None
    store: str | None = None  # where its archive is kept (an S3 location, as JSON); None: on this host
    message: str | None = None  # why it failed, in words
    started_at: datetime = _time(index=True)
    finished_at: datetime | None = _time(nullable=True)


class Member(SQLModel, table=True):
    """A person of a tenant with a role; their SSH keys and API tokens act with it, whatever it is now. A tenant's
    credentials of no member are its owner's."""

    __table_args__ = (UniqueConstraint("tenant_id", "name"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    name: str
    role: str  # MemberRole
    created_at: datetime = _time()


def _member_fk() -> Any:
    """A credential's member: removing the member removes its keys and tokens (revoked at once)."""
    return Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=True, index=True),
    )


class SshKey(SQLModel, table=True):
    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(unique=True, index=True)
    public_key: str
    comment: str = ""
    role: str
    tenant_id: int | None = _tenant_fk(nullable=True)
    member_id: int | None = _member_fk()
    created_at: datetime = _time()


class ApiToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored, so the database never holds a usable secret."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True)
    name: str
    role: str
    tenant_id: int | None = _tenant_fk(nullable=True)
    member_id: int | None = _member_fk()
    created_at: datetime = _time()
    expires_at: datetime | None = _time(nullable=True)


class Event(SQLModel, table=True):
    """One line of the audit log. `tenant` is a name, not a key, so the log outlives the tenant."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = _time(index=True)
    actor: str
    tenant: str | None = Field(default=None, index=True)
    action: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Node(SQLModel, table=True):
    """A Docker engine the platform may place containers on: the host's own (`local`), a VM's, or a remote host's
    reached over SSH (driver `ssh`, `docker_url` its `ssh://USER@HOST:PORT`)."""

    name: str = Field(primary_key=True)
    driver: str  # "local", the hypervisor driver of a VM node, or "ssh"
    docker_url: str
    state: str = "ready"  # NodeState
    cpu_millicores: int = 0
    memory_mib: int = 0
    created_at: datetime = _time()
    flavor: str | None = None  # a VM node's size
    tenant: str | None = None  # the tenant a dedicated VM node is for; None: shared
    draining: bool = False  # no new instances; those on it move elsewhere
    accel: str | None = None  # what a VM node's hypervisor runs it with, e.g. "tcg (kvm unusable: pvm)"
    message: str | None = None  # why it failed, when it did
    host_key: str | None = None  # the SSH host key a remote host must show (OpenSSH's one line, no comment)
    docker_socket: str | None = None  # where a remote host's engine listens, on that host


class Instance(SQLModel, table=True):
    """One running copy of an app as the reconciler last saw it; rewritten only when something changes."""

    id: str = Field(primary_key=True)  # also the container's `strata.instance` label
    app_id: int = Field(sa_column=Column(Integer, ForeignKey("app.id", ondelete="CASCADE"), nullable=False, index=True))
    node: str
    container_id: str
    revision: int
    state: str  # starting | ready | unhealthy | crashloop | stopping
    endpoint: str | None = None  # HOST:PORT on 127.0.0.1 (or a node's forward), as the leader reaches it
    restarts: int = 0
    started_at: datetime | None = _time(nullable=True)
    last_health: str | None = None  # the last health check's result, e.g. "ok", "HTTP 500", "refused"
    message: str | None = None  # why it is not ready, in words (an exit code and last log lines, a failing check)
    created_at: datetime = _time()
    published: int | None = None  # the port its container publishes on its node's machine (on loopback there)


class RegistryCredential(SQLModel, table=True):
    """A tenant's login to one container registry, used for that tenant's pulls only. The password is kept
    encrypted (`tenants.secrets`): the database alone never holds a usable secret."""

    __table_args__ = (UniqueConstraint("tenant_id", "host"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    host: str  # the registry's host[:port], as image references name it
    username: str
    password_encrypted: str
    created_at: datetime = _time()


class TenantImage(SQLModel, table=True):
    """An image a tenant may run: pulled with its credentials, or built by it. Another tenant naming the same
    reference pulls it with its own credentials (Kubernetes' AlwaysPullImages): an image on a node is no
    proof that a tenant may use it."""

    __table_args__ = (UniqueConstraint("tenant_id", "reference"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    reference: str  # as the tenant names it, e.g. registry.example.com/team/web:1.4
    image_id: str  # the engine's immutable id (sha256:...): what the tenant's containers are created from
    source: str  # ImageSource: pull | build
    size_bytes: int = _bytes()
    created_at: datetime = _time()


class Build(SQLModel, table=True):
    """One build of an app from source (a `git push` or an uploaded context); its log is a file under
    STRATA_HOME/builds/. One runs at a time per app, whichever daemon runs it (a partial unique index)."""

    __table_args__ = (
        Index(
            "build_one_running",
            "tenant_id",
            "app",
            unique=True,
            sqlite_where=text("state = 'building'"),
            postgresql_where=text("state = 'building'"),
        ),  # fmt: skip
        AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    app: str  # a name, not a key: the first push of an app builds before the app exists
    state: str  # BuildState: building | succeeded | failed
    source: str  # git | upload
    actor: str
    commit: str | None = None
    image: str | None = None  # the tag it made, once it succeeded
    revision: int | None = None  # the app's revision it deployed
    message: str | None = None  # why it failed, in words
    started_at: datetime = _time(index=True)
    finished_at: datetime | None = _time(nullable=True)
    daemon: str | None = None  # the daemon running it, its log in that daemon's home (None: recorded before 0015)


def _count() -> Any:
    return Field(default=0, sa_column=Column(BigInteger, nullable=False))


class UsageHour(SQLModel, table=True):
    """What one app of a tenant used in one hour (UTC, truncated) on one kind of node: sums the meter only ever
    adds to. `app` is a name, so the usage outlives the app (not the tenant); "" is the tenant's volumes no app
    mounts."""

    __tablename__ = "usage_hour"
    __table_args__ = (UniqueConstraint("tenant_id", "app", "hour", "node_kind"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    app: str
    hour: datetime = _time(index=True)
    node_kind: str  # Isolation: a shared node, or a VM dedicated to the tenant
    cpu_seconds: float = 0.0
    memory_mib_hours: float = 0.0
    storage_gib_hours: float = 0.0
    instance_hours: float = 0.0
    requests: int = _count()
    bytes_in: int = _count()  # read from the clients, headers and all, through the front door
    bytes_out: int = _count()  # sent to them


class UsageTotal(SQLModel, table=True):
    """`usage_hour` summed over all hours: what `/metrics` reads, one row per tenant, app and kind of node
    however long metering has run. Added to in the transaction that adds to the hours."""

    __tablename__ = "usage_total"
    __table_args__ = (UniqueConstraint("tenant_id", "app", "node_kind"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk(nullable=False)
    app: str
    node_kind: str
    cpu_seconds: float = 0.0
    memory_mib_hours: float = 0.0
    storage_gib_hours: float = 0.0
    instance_hours: float = 0.0
    requests: int = _count()
    bytes_in: int = _count()
    bytes_out: int = _count()


class UsagePosition(SQLModel, table=True):
    """Where the meter's count of one instance stands: its container, that container's cgroup (identity) and CPU
    counter, and when they were read. Written in the transaction that writes what was counted up to there, so a
    daemon started again goes on from it (`hosting.paas.usage`); gone with its instance."""

    __tablename__ = "usage_position"

    instance: str = Field(primary_key=True)
    container_id: str
    cgroup: int = _count()
    cpu_ns: int = _count()
    at: datetime = _time()


class Daemon(SQLModel, table=True):
    """A `strata up` on this database, as it last said (`seen_at`, every few seconds): the one that leads
    (`leading_since`) reconciles; the others stand by, serving the API and their hosts' front doors."""

    name: str = Field(primary_key=True)
    pid: int
    started_at: datetime = _time()
    seen_at: datetime = _time()
    leading_since: datetime | None = _time(nullable=True)
    host: str | None = None  # its machine's name: builds go where the leader's image store is


class DoorActivity(SQLModel, table=True):
    """What a standby's front door last saw of an app's traffic (the leader sees its own door's directly)."""

    __tablename__ = "door_activity"

    daemon: str = Field(sa_column=Column(String, ForeignKey("daemon.name", ondelete="CASCADE"), primary_key=True))
    tenant: str = Field(primary_key=True)
    app: str = Field(primary_key=True)
    last_request_at: datetime | None = _time(nullable=True)  # None: no request since its HAProxy started
    in_flight: int = 0


class DoorDrain(SQLModel, table=True):
    """A standby's front door has let go of an instance the leader is removing: out of its routes, with no request
    in flight to it. The leader stops the container once every standby alive says so (or its drain timeout)."""

    __tablename__ = "door_drain"

    daemon: str = Field(sa_column=Column(String, ForeignKey("daemon.name", ondelete="CASCADE"), primary_key=True))
    instance: str = Field(primary_key=True)


class AcmeChallenge(SQLModel, table=True):
    """An HTTP-01 challenge of a daemon's ACME order, answered by every daemon's front door: the CA may reach any
    host the name points at. Removed when the order ends, and a daemon's leftovers (a crash mid-order) at its
    next start."""

    __tablename__ = "acme_challenge"

    token: str = Field(primary_key=True)
    key_authorization: str
    daemon: str


class SharedCertificate(SQLModel, table=True):
    """A front-door certificate of primary `hostname`, served by every daemon's door: ordered (or signed) once for
    all of them. `key_sealed` is the private key sealed with the installation's key, never the key itself. A row
    without a chain records a failed first order. `claimed_by` orders it until `claimed_until`: no other daemon
    orders the name meanwhile; `retry_at` is when the next order may follow a failed one (`retry_seconds` later)."""

    __tablename__ = "certificate"

    hostname: str = Field(primary_key=True)
    hostnames: str  # every DNS name it holds, space-separated, the primary first
    source: str | None = None  # local, acme, operator; None: no certificate yet
    chain_pem: str | None = None
    key_sealed: str | None = None
    fingerprint: str | None = None  # SHA-256 of the leaf: a door compares it with what it serves
    issuer: str | None = None
    not_before: datetime | None = _time(nullable=True)
    not_after: datetime | None = _time(nullable=True)
    last_error: str | None = None
    retry_at: datetime | None = _time(nullable=True)
    retry_seconds: int | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = _time(nullable=True)


class SharedLocalCA(SQLModel, table=True):
    """The platform's one local CA for `.localhost` names (one row): every door's certificates chain to it.
    `key_sealed` is its key sealed with the installation's key."""

    __tablename__ = "local_ca"

    id: int = Field(default=1, primary_key=True)
    certificate_pem: str
    key_sealed: str


class Installation(SQLModel, table=True):
    """What every daemon of the platform must share, one row: the platform's id (its containers' label) and the
    fingerprint of the key its secrets are sealed with (a daemon with another key is refused at its start)."""

    id: int = Field(default=1, primary_key=True)
    platform_id: str
    key_fingerprint: str
