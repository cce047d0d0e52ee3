"""`/tenants/{tenant}/catalog/{template}/deploy`: a template of the catalog deployed in one request — its image built
when the platform makes it, its services made (unless the tenant has them) and bound, its app deployed — so that a
person who writes no code gets a working app with its data from one form (the console's), and a script or the CLI
the same from one call."""

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import Engine

from hosting.paas import catalog_images
from hosting.paas.images import BusyboxMissing
from hosting.paas.node_volumes import NodeVolumes
from hosting.paas.postgres_image import PostgresImageError
from hosting.paas.pulls import ImagePuller
from hosting.paas.runtime import EngineError
from strata.api import service_routes
from strata.api.deps import Caller, Config, DbEngine, Puller, Secrets, TenantName, VolumeStore
from strata.api.volume_routes import used_mib
from strata.config import Settings
from tenants import db, services, template_deploy
from tenants.catalog import Template, TemplateDeploy, TemplateDeployed, get_template
from tenants.errors import Conflict, Unavailable
from tenants.secrets import SecretBox
from tenants.tenancy import get_tenant

log = logging.getLogger(__name__)

router = APIRouter(tags=["catalog"])


@router.post("/tenants/{tenant}/catalog/{template}/deploy")
async def deploy_template(
    engine: DbEngine, principal: Caller, tenant: TenantName, template: str, body: TemplateDeploy,
    store: VolumeStore, box: Secrets, settings: Config, puller: Puller,
) -> TemplateDeployed:  # fmt: skip
    """Deploy `template` as app `body.app`: each of its services is made unless the tenant has one of that name
    (minutes the first time: PostgreSQL's image is built), then the app is deployed and bound to them (it gets
    DATABASE_URL; a new app starts only once bound). Everything is checked before anything is made, quotas with
    the services and the app counted together. Deploying it again changes what the body changed and makes and
    binds only what is missing, so it also finishes a deploy that was cut off."""
    chosen = get_template(template)
    steps = await asyncio.to_thread(_check, engine, tenant, chosen, body)
    if steps.missing and store is None:
        raise Conflict("this platform keeps no volumes (the daemon was started without a volume store): no services")
    if catalog_images.built_here(steps.spec.image):
        await _build(steps.spec.image, puller, settings)
    created = []
    for service in steps.missing:
        assert store is not None  # refused above
        made = await service_routes.create_service(
            engine=engine, principal=principal, tenant=tenant, body=service, store=store, box=box, settings=settings
        )
        created.append(made.name)
    return await asyncio.to_thread(_finish, engine, store, box, principal.actor, steps, created, settings.domain)


def _check(engine: Engine, tenant: str, template: Template, body: TemplateDeploy) -> template_deploy.Steps:
    with db.session(engine) as session:
        return template_deploy.check(session, tenant, template, body)


async def _build(image: str, puller: ImagePuller | None, settings: Settings) -> None:
    """Build the template's image on the image store (and PostgreSQL's first, which it is made from)."""
    if puller is None:
        raise Conflict(f"{image} is built by the platform, and this daemon has no image store (no local node)")
    try:
        # the work directory (and so the cache and lock) that a service's create builds PostgreSQL's image in
        await catalog_images.ensure_image(image, puller.store, settings.home / "images" / "postgres")
    except (PostgresImageError, BusyboxMissing, EngineError) as exc:  # the host's paths and tools: the operator's
        log.error("building %s: %s", image, exc)
        raise Unavailable(f"the image {image} could not be built; an operator finds why in the daemon's log") from None


def _finish(
    engine: Engine,
    store: NodeVolumes | None,
    box: SecretBox,
    actor: str,
    steps: template_deploy.Steps,
    created: list[str],
    domain: str,
) -> TemplateDeployed:
    with db.session(engine) as session:
        app = template_deploy.finish(session, box, actor, steps, created, domain=domain)
        owner = get_tenant(session, steps.tenant)
        made = [
            services.read(
                session, services.get_service(session, owner, name), owner.name, used_mib(store, owner.name, name)
            )
            for name in steps.services
        ]
        return TemplateDeployed(app=app, services=made, created=created)
