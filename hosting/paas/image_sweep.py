"""A deleted tenant's build images go with it: the reconciler removes this platform's build images (found by
their label) of tenants that no longer exist, once none of their containers remains on the engine."""

import logging
from collections import defaultdict
from collections.abc import Iterable

from hosting.paas.runtime import PLATFORM_LABEL, Container, EngineError, EngineUnavailable, NodeRuntime
from tenants import builds

log = logging.getLogger(__name__)


async def sweep_images(
    runtimes: Iterable[NodeRuntime], platform: str, tenants: set[str], containers: Iterable[Container]
) -> list[str]:
    """Remove, on each of `runtimes`, the build images (this platform's, by their label) of tenants not in
    `tenants` (those that exist) and with no container on that engine (of `containers`, those still present):
    a deleted tenant's images must not outlive it. An image some container still uses is refused by the
    engine and left for the next sweep. Returns the tags removed, as `node: tag`."""
    used: dict[str, set[str]] = defaultdict(set)  # node -> its tenants with a container there
    for container in containers:
        used[container.node].add(container.tenant)
    removed = []
    for runtime in runtimes:
        try:
            for image in await runtime.images():
                if image.labels.get(PLATFORM_LABEL) != platform:
                    continue
                for tag in image.tags:
                    owner = builds.tenant_of_tag(tag)
                    if owner is None or owner in tenants or owner in used[runtime.name]:
                        continue
                    try:
                        await runtime.delete_image(tag)
                    except EngineUnavailable:
                        raise
                    except EngineError as exc:  # a container uses it still: next time
                        log.info("build image %s of deleted tenant %s kept for now: %s", tag, owner, exc)
                        continue
                    removed.append(f"{runtime.name}: {tag}")
                    log.info("removed build image %s on %s: its tenant %s is deleted", tag, runtime.name, owner)
        except EngineUnavailable as exc:
            log.warning("sweeping the build images of %s: %s", runtime.name, exc)
    return removed
