"""Tenants' networks are removed from a node once nothing of the tenant runs there and it has no app to run: a
deleted tenant's network must not outlive it (it holds a subnet of the node's pool)."""

import logging
from collections import defaultdict
from collections.abc import Iterable

from hosting.paas.nodes import NodePool
from hosting.paas.runtime import Container, EngineError

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0  # how often networks are swept when no pass removed anything


def tenant_network(platform: str, tenant: str) -> str:
    """The name of the tenant's network on a node: its apps' containers and its builds' RUN steps join it."""
    return f"strata-{platform[:8]}-{tenant}"


async def sweep(pool: NodePool, platform: str, containers: Iterable[Container], wanted: set[str]) -> None:
    """Remove each reachable node's networks of tenants with no container there (of `containers`, those still
    present) and not in `wanted` (the tenants with an app to run)."""
    used: dict[str, set[str]] = defaultdict(set)  # node -> its tenants with a container there
    for container in containers:
        used[container.node].add(container.tenant)
    for node in pool:
        if not node.reachable or node.capacity is None:
            continue
        try:
            for name, tenant in (await node.runtime.networks(platform)).items():
                if tenant not in used[node.name] and tenant not in wanted:
                    await node.runtime.remove_network(name)
                    log.info("removed network %s of %s on %s: nothing of it runs there", name, tenant, node.name)
        except EngineError as exc:  # a container made meanwhile, or the engine away: next time
            log.warning("sweeping the networks of %s: %s", node.name, exc)
