"""`/tenants/{tenant}/services` and `/services`: managed PostgreSQL, each on a volume of its own, reached by
its tenant's containers only, bound to apps as `DATABASE_URL`. No answer holds a password."""

import asyncio
import logging

from fastapi import APIRouter, Query, Response
from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas import service_credentials
from hosting.paas.node_volumes import NodeVolumes
from hosting.paas.postgres_image import PostgresImageError, build_postgres_image
from strata.api.deps import (
    DB,
    Caller,
    Config,
    DbEngine,
    LeaderOnly,
    Nudge,
    Pool,
    Secrets,
    TenantName,
    Volumes,
    VolumeStore,
    listing_scope,
)
from strata.api.volume_routes import LOCAL_NODE, creating, filesystem_then, remove_filesystems, used_mib
from tenants import db, services
from tenants.errors import Unavailable
from tenants.models import Service
from tenants.schemas import RotationRead, ServiceBind, ServiceCreate, ServiceRead
from tenants.secrets import SecretBox
from tenants.tenancy import get_tenant

log = logging.getLogger(__name__)

router = APIRouter(tags=["services"])


@router.get("/services")
def list_all(session: DB, principal: Caller, store: VolumeStore, tenant: str | None = None) -> list[ServiceRead]:
    """Every service an operator may see (of `tenant` if given); a tenant's own."""
    wanted = listing_scope(principal, tenant)
    owner = get_tenant(session, wanted) if wanted is not None else None
    return [_read(session, store, s, name) for s, name in services.list_services(session, owner)]


@router.get("/tenants/{tenant}/services")
def list_services(session: DB, tenant: TenantName, store: VolumeStore) -> list[ServiceRead]:
    owner = get_tenant(session, tenant)
    return [_read(session, store, s, tenant) for s, _ in services.list_services(session, owner)]


@router.post("/tenants/{tenant}/services", status_code=201, dependencies=[LeaderOnly])
async def create_service(
    engine: DbEngine, principal: Caller, tenant: TenantName, body: ServiceCreate, store: Volumes, box: Secrets,
    settings: Config,
) -> ServiceRead:  # fmt: skip
    """A PostgreSQL 15 on a volume of `size_mib` (its database `app`, user `app`, a generated password), run as
    an app of its own named as the service. Its image is built here the first time (minutes: Debian's
    packages, offline from registries)."""
    await asyncio.to_thread(_check, engine, tenant, body)  # before minutes of building: a refusal comes at once
    try:
        await asyncio.to_thread(build_postgres_image, settings.home / "images" / "postgres")
    except PostgresImageError as exc:  # its log's tail names the host's paths and mirror: the operator's
        log.error("building the PostgreSQL image: %s", exc)
        raise Unavailable(
            "the PostgreSQL image could not be built; an operator finds why in the daemon's log"
        ) from None
    return await asyncio.to_thread(_create, engine, store, box, principal.actor, tenant, body)


def _check(engine: Engine, tenant: str, body: ServiceCreate) -> None:
    with db.session(engine) as session:
        services.check_create(session, tenant, body.name, body.size_mib)


def _create(
    engine: Engine, store: NodeVolumes, box: SecretBox, actor: str, tenant: str, body: ServiceCreate
) -> ServiceRead:
    """Its filesystem, then its rows; one create of a volume at a time, as `volume_routes` makes them."""
    with creating, db.session(engine) as session:
        owner = services.check_create(session, tenant, body.name, body.size_mib)
        service = filesystem_then(
            store, tenant, body.name, body.size_mib,
            lambda: services.record_create(session, box, actor, owner, body.name, body.kind, body.size_mib, LOCAL_NODE),
        )  # fmt: skip
        return _read(session, store, service, tenant)


@router.get("/tenants/{tenant}/services/{service}")
def get_service(session: DB, tenant: TenantName, service: str, store: VolumeStore) -> ServiceRead:
    """Where its tenant's containers reach it, its database and user, its volume, and the apps bound to it."""
    return _read(session, store, services.get_service(session, get_tenant(session, tenant), service), tenant)


@router.delete("/tenants/{tenant}/services/{service}", status_code=204, dependencies=[LeaderOnly])
def delete_service(
    session: DB,
    principal: Caller,
    tenant: TenantName,
    service: str,
    store: Volumes,
    force: bool = Query(False, description="delete it even though apps are bound: they lose their DATABASE_URL"),
) -> Response:
    """Delete the service, its app and its volume with the data; refused while bound, unless `force`."""
    services.delete(session, principal.actor, tenant, service, force=force)
    remove_filesystems(store, tenant, [service])
    return Response(status_code=204)


@router.post("/tenants/{tenant}/services/{service}/bindings", status_code=201)
def bind(session: DB, principal: Caller, tenant: TenantName, service: str, body: ServiceBind, box: Secrets) -> None:
    """Give the app the service's `DATABASE_URL`: a new revision of it, rolled out as a deploy is."""
    services.bind(session, box, principal.actor, tenant, service, body.app)


@router.delete("/tenants/{tenant}/services/{service}/bindings/{app}", status_code=204)
def unbind(session: DB, principal: Caller, tenant: TenantName, service: str, app: str) -> Response:
    services.unbind(session, principal.actor, tenant, service, app)
    return Response(status_code=204)


@router.post("/tenants/{tenant}/services/{service}/credentials/rotate", dependencies=[LeaderOnly])
async def rotate_credentials(
    engine: DbEngine, pool: Pool, principal: Caller, tenant: TenantName, service: str, box: Secrets, nudge: Nudge
) -> RotationRead:
    """Give the bound apps a new login and password (a new revision each, rolled out as a deploy: no request
    fails), and retire the old login once none of their old instances is left. Waits for that up to two minutes;
    an app that takes longer leaves the old login valid (`retiring`, `waiting_for`) until the next call."""
    return await service_credentials.rotate(engine, pool, box, nudge, principal.actor, tenant, service)


def _read(session: Session, store: NodeVolumes | None, service: Service, tenant: str) -> ServiceRead:
    return services.read(session, service, tenant, used_mib(store, tenant, service.name))
