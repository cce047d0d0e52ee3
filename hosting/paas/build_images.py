"""Which images a build may name: its `FROM`s, `COPY --from=`s and the `ONBUILD` triggers of its base images
must each be an earlier stage, `scratch`, the tenant's own image or the platform's. The engine's builder would
resolve any image it holds, another tenant's build or private pull among them."""

import asyncio

from sqlalchemy import Engine
from sqlmodel import select

from hosting.paas.dockerfile import NamedImage, named_images, trigger_images
from hosting.paas.pulls import is_platform_image
from hosting.paas.runtime import ImageInfo, NodeRuntime
from tenants import db
from tenants.errors import Invalid
from tenants.models import TenantImage
from tenants.references import canonical
from tenants.tenancy import get_tenant


async def check_images(engine: Engine, store: NodeRuntime, tenant: str, dockerfile: str) -> None:
    """`Invalid` unless every image the Dockerfile names (and its base images' ONBUILD triggers) is the
    tenant's own or the platform's: the engine's builder would resolve any image it holds."""
    named = named_images(dockerfile)
    if not named:
        return
    mine, owned = await asyncio.to_thread(_references, engine, tenant)
    for image in named:
        info = await _check_image(store, image, mine, owned, "")
        for trigger in trigger_images(info.onbuild if info is not None and image.instruction == "FROM" else []):
            await _check_image(store, trigger, mine, owned, f"{image.describe()}: its ONBUILD trigger: ")


async def _check_image(
    store: NodeRuntime, image: NamedImage, mine: dict[str, str], owned: set[str], prefix: str
) -> ImageInfo | None:
    """The engine's image that `image` names (None: it has none), or `Invalid` (its message after `prefix`)
    unless it is the platform's or the tenant's own: the very image recorded as the tenant's, as a tag the
    tenant owns may since have been moved by another tenant's pull of the same reference."""
    info = await store.image(image.name)
    reference = canonical(image.name)
    recorded = mine.get(reference)
    if recorded is None and (info is None or not is_platform_image(info, reference, owned)):
        raise Invalid(prefix + _not_yours(image), field="context")
    if recorded is not None and info is not None and info.id != recorded:
        raise Invalid(
            f"{prefix}{image.describe()}: the engine's {image.name} is no longer the image you deployed (a later "
            f"pull moved the tag); deploy it again with `strata apps deploy --image {image.name}` so it is "
            "pulled with your credentials",
            field="context",
        )
    return info


def _references(engine: Engine, tenant: str) -> tuple[dict[str, str], set[str]]:
    """(the image id of each reference the tenant owns, the references any tenant owns)."""
    with db.session(engine) as session:
        found = get_tenant(session, tenant)
        rows = [(row.tenant_id, row.reference, row.image_id) for row in session.exec(select(TenantImage))]
    return {ref: image_id for owner, ref, image_id in rows if owner == found.id}, {ref for _, ref, _ in rows}


def _not_yours(image: NamedImage) -> str:
    """Why a build may not use `image`, and what to do."""
    return (
        f"{image.describe()}: not one of your images nor the platform's; deploy it once with "
        f"`strata apps deploy --image {image.name}` so it is pulled with your credentials, or build FROM an "
        "image of yours"
    )
