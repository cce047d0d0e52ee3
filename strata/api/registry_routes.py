"""`/tenants/{tenant}/registries` (a tenant's logins to container registries) and `/tenants/{tenant}/images`
(the images it owns). A tenant manages its own; operators any tenant's. A password goes in, never out."""

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Response

from strata.api.deps import DB, Caller, Puller, Secrets, TenantName
from tenants import images, registries
from tenants.errors import Unavailable
from tenants.schemas import RegistryLogin, RegistryRead, TenantImageRead
from tenants.secrets import SecretKeyError
from tenants.tenancy import get_tenant

log = logging.getLogger(__name__)

router = APIRouter(prefix="/tenants/{tenant}", tags=["registries"])

# host[:port] as a path segment; `registries.check_host` says what is wrong with one that is not a host
RegistryHost = Annotated[str, Path(min_length=1, max_length=261, description="HOST or HOST:PORT")]


@router.get("/registries")
def list_registries(session: DB, tenant: TenantName) -> list[RegistryRead]:
    """The tenant's registry logins: host, user name, when stored. Passwords are never shown."""
    return registries.list_logins(session, tenant)


@router.put("/registries/{host}", responses={201: {"model": RegistryRead, "description": "added"}})
def add_registry(
    session: DB,
    principal: Caller,
    tenant: TenantName,
    host: RegistryHost,
    login: RegistryLogin,
    secrets: Secrets,
    puller: Puller,
    response: Response,
) -> RegistryRead:
    """Store (or replace) the tenant's login to registry HOST[:PORT], used for its pulls only; the password is
    kept encrypted and audited never. The tenant's failed pulls are tried again at once with it."""
    try:
        added, created = registries.add(session, secrets, principal.actor, tenant, host, login.username, login.password)
    except SecretKeyError as exc:  # the server's condition, not the request's: 503, and the operator is told
        log.error("storing a registry login of %s: %s", tenant, exc)
        raise Unavailable(str(exc) if principal.is_operator else exc.public) from None
    if puller is not None:
        puller.retry_soon(tenant)
    response.status_code = 201 if created else 200
    return added


@router.delete("/registries/{host}", status_code=204)
def remove_registry(session: DB, principal: Caller, tenant: TenantName, host: RegistryHost) -> Response:
    registries.remove(session, principal.actor, tenant, host)
    return Response(status_code=204)


@router.get("/images")
def list_tenant_images(session: DB, tenant: TenantName) -> list[TenantImageRead]:
    """The images the tenant may run as its own: pulled with its logins, or built from its source."""
    return [
        TenantImageRead(
            tenant=name, reference=image.reference, image_id=image.image_id, source=image.source,
            size_bytes=image.size_bytes, created_at=image.created_at,
        )
        for name, image in images.list_owned(session, get_tenant(session, tenant))
    ]  # fmt: skip
