"""The catalog's images that the platform builds when a template naming one is deployed, not at `images bootstrap`.

strata/guestbook (`sample_images/guestbook`) takes its psql from strata/postgres:15, which is built by the platform
only when it needs one (debootstrap: minutes, root; `postgres_image`): so bootstrap, offline and quick, cannot
build it. A deploy of the template builds PostgreSQL's image if it is missing (the same work directory, cache and
lock as a service's create), then this one on the image store, unless the store has it of the same recipe: its
build context (busybox and the app's files) and the PostgreSQL image it copied psql from, named by a label. VM
nodes get it from the store as any platform image (`images.ship`).
"""

import asyncio
import hashlib
from pathlib import Path

from hosting.paas.images import sample_context
from hosting.paas.postgres_image import build_postgres_image
from hosting.paas.runtime import EngineError, NodeRuntime
from tenants.references import canonical

GUESTBOOK = "strata/guestbook:latest"
SOURCES = {canonical(GUESTBOOK): "guestbook"}  # image -> its directory under sample_images/
RECIPE_LABEL = "strata.recipe"  # the digest of what the image was built from

_building = asyncio.Lock()  # one build at a time: two deploys at once build once, the second finds it made


def built_here(reference: str) -> bool:
    """Whether `reference` is one of the images this module builds (when its template is deployed)."""
    return canonical(reference) in SOURCES


async def ensure_image(reference: str, store: NodeRuntime, postgres_work_dir: Path) -> str:
    """The id of `reference` (one that `built_here`) on `store`, built first unless the store has it of the
    current recipe. Blocks for minutes when strata/postgres:15 must be built first (`postgres_work_dir`: its
    cache); raises `PostgresImageError`, `BusyboxMissing` or `EngineError` (a `BuildFailed`) saying why."""
    source = SOURCES[canonical(reference)]
    async with _building:
        postgres = await asyncio.to_thread(build_postgres_image, postgres_work_dir)
        context = await asyncio.to_thread(sample_context, source)
        digest = hashlib.sha256(context + postgres.encode()).hexdigest()
        found = await store.image(reference)
        if found is None or found.labels.get(RECIPE_LABEL) != digest:
            async for _ in store.build(context, reference, labels={RECIPE_LABEL: digest}):
                pass  # the output matters only when it fails, and `BuildFailed` carries the error
            found = await store.image(reference)
        if found is None:
            raise EngineError(f"{reference} was built, but {store.name} does not have it")
        return found.id
