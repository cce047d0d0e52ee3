"""The platform's enumerations, apart from the tables so the API client can use them without SQLAlchemy."""

from enum import StrEnum


class Isolation(StrEnum):
    SHARED = "shared"  # containers share node kernels with other tenants
    DEDICATED = "dedicated"  # containers only on VMs of this tenant


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Role(StrEnum):
    OPERATOR = "operator"
    TENANT = "tenant"


class MemberRole(StrEnum):
    """What a member of a tenant may do there, each role all of the one below it and more (`ROLE_RANKS`)."""

    VIEWER = "viewer"  # read only: listings, logs, metrics, events, the console
    DEVELOPER = "developer"  # and deploy, build, scale, restart, shell, volumes, services, backups: no deletes
    OWNER = "owner"  # everything in the tenant: members, registries, credentials, deletes


ROLE_RANKS = {MemberRole.VIEWER: 0, MemberRole.DEVELOPER: 1, MemberRole.OWNER: 2}


def may(role: MemberRole, needed: MemberRole) -> bool:
    return ROLE_RANKS[role] >= ROLE_RANKS[needed]


class InstanceState(StrEnum):
    STARTING = "starting"  # created, its health check has not passed yet
    READY = "ready"  # passing its health check: the gateway may route to it
    UNHEALTHY = "unhealthy"  # failing its health check: once ready, or never healthy in its start period
    CRASHLOOP = "crashloop"  # exits again and again; restarted with growing delays
    STOPPING = "stopping"  # being removed; the gateway drains it
    PAUSED = "paused"  # its app sleeps: frozen (the cgroup freezer), woken by the app's next request
    STOPPED = "stopped"  # its app slept long: stopped, started again by the app's next request


class NodeState(StrEnum):
    PROVISIONING = "provisioning"  # a VM node booting; ready once its engine answers
    READY = "ready"
    UNREACHABLE = "unreachable"  # its engine stopped answering
    FAILED = "failed"  # it could not be made; `message` says why
    REMOVING = "removing"


class ImageSource(StrEnum):
    PULL = "pull"  # pulled from a registry with the tenant's credentials
    BUILD = "build"  # built from the tenant's source


class BuildState(StrEnum):
    BUILDING = "building"
    SUCCEEDED = "succeeded"  # built and deployed as a new revision (or the app already ran that image)
    FAILED = "failed"  # `message` says why; the running revision keeps serving


class AppKind(StrEnum):
    WEB = "web"  # a tenant's own app, served by the front door
    POSTGRES = "postgres"  # a managed PostgreSQL's own app: reached by its tenant's containers only


class BackupState(StrEnum):
    RUNNING = "running"  # being copied or verified
    VERIFIED = "verified"  # restored into a scratch container, every checksum equal: it may be restored
    FAILED = "failed"  # `message` says why: never shown as a success, never restored
    DELETING = "deleting"  # deleted, its archive not yet gone from the store: removed when the store takes it


class BackupKind(StrEnum):
    FILES = "files"  # a tar archive of a volume's files, taken with its apps paused
    PG_DUMP = "pg_dump"  # a managed PostgreSQL's `pg_dump`: restored into a service's database, beside the live one


class BuildSource(StrEnum):
    GIT = "git"  # a `git push` over SSH
    UPLOAD = "upload"  # a build context uploaded through the API (`strata apps deploy --build DIR`)
