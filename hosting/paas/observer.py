"""Observing: every container of this platform on every node, and the instances they are, tracked.

A node that does not answer, or is not attached yet (after a restart a VM node attaches once connected again),
keeps its last known instances until it counts as lost, so nothing is created twice meanwhile; a detached node's
are gone at once. Containers not yet tracked are adopted; instances whose container is gone are forgotten.
"""

import logging

from sqlalchemy import Engine

from hosting.paas.nodes import NodePool
from hosting.paas.runtime import Container, EngineError
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState
from tenants.instances import ActionEvent

log = logging.getLogger(__name__)

Names = dict[int, tuple[str, str]]  # app id -> (tenant, app) of the apps that exist


async def observe(
    engine: Engine, platform: str, pool: NodePool, tracked: dict[str, Tracked], names: Names, now: float
) -> list[Container]:
    """The containers found at `now` (monotonic), and as last seen on the nodes that do not answer (`remembered`)."""
    found: list[Container] = []
    for node in pool:
        if node.capacity is None or not node.reachable:
            if not await node.refresh(engine, now):
                found += [] if node.lost(now) else remembered(tracked, {node.name}, names)
                continue
        try:
            found += await node.runtime.containers(platform)
        except EngineError as exc:
            log.warning("node %s: %s", node.name, exc)
            await node.mark_unreachable(engine, now)
            found += [] if node.lost(now) else remembered(tracked, {node.name}, names)
    return found + remembered(tracked, pool.kept_away({t.node for t in tracked.values()}, now), names)


def remembered(tracked: dict[str, Tracked], nodes: set[str], names: Names) -> list[Container]:
    """The tracked instances of `nodes` as their containers were last seen."""
    return [
        Container(
            t.node,
            t.container_id,
            *names[t.app_id],
            t.revision,
            t.id,
            True,
            None,
            t.started_at,
            t.endpoint,
            remembered=True,
        )
        for t in tracked.values()
        if t.node in nodes and t.app_id in names
    ]


def track(
    tracked: dict[str, Tracked], containers: list[Container], names: Names
) -> tuple[list[str], list[ActionEvent]]:
    """Adopt the containers not yet tracked and forget the instances whose container is gone (returned, with
    the events of those that vanished)."""
    app_ids = {name: app_id for app_id, name in names.items()}
    for container in containers:
        known = tracked.get(container.instance)
        if container.remembered:
            continue
        if known is None and (container.tenant, container.app) in app_ids:
            tracked[container.instance] = Tracked(
                container.instance, app_ids[(container.tenant, container.app)], container.node, container.id,
                container.revision, InstanceState.STARTING, container.endpoint, started_at=container.started_at,
                published=container.published,
            )  # fmt: skip
        elif known is not None:
            known.endpoint, known.published = container.endpoint, container.published
            known.started_at, known.container_id = container.started_at, container.id
    present = {c.instance for c in containers}
    gone = [t for t in tracked.values() if t.id not in present]
    events = [
        ActionEvent(
            "instance.vanished", names[t.app_id][0], {"app": names[t.app_id][1], "instance": t.id, "node": t.node}
        )
        for t in gone
        if t.app_id in names
    ]
    for instance in gone:
        del tracked[instance.id]
    return [t.id for t in gone], events
