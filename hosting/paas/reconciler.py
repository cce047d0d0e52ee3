"""The reconciler: make the containers on the nodes match the apps' desired state, again and again.

Level-triggered, as Kubernetes controllers are: each pass observes the whole desired state (the database) and
the whole actual state (containers found by label on every node), asks the planner what to do
(`hosting.paas.planner`, a pure function), acts on it, checks health (`liveness`), and records what it did.
It trusts no event and no memory it cannot rebuild: after a restart it adopts the running containers from
their labels and their rows, restarting nothing that was fine. State held in memory is keyed by app ids, which
are never reused (see `tenants.models`).
"""

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from hosting.paas import images
from hosting.paas.liveness import Liveness
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.pause import pause
from hosting.paas.planner import Action, Crashed, Create, Observed, Remove, Restart, Unplaceable, backoff, plan
from hosting.paas.runtime import (
    PLATFORM_LABEL,
    TENANT_LABEL,
    Container,
    EngineError,
    ImageMissing,
    InstanceSpec,
    NodeRuntime,
)
from hosting.paas.scheduler import Strategy
from hosting.paas.serving import ServedApp
from hosting.paas.tracked import Tracked
from hosting.paas.usage import UsageSampler
from tenants import db
from tenants import instances as store
from tenants import nodes as registry
from tenants.enums import InstanceState
from tenants.instances import ActionEvent, DesiredApp
from tenants.models import Instance

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 1.0
FAST_PASS_INTERVAL_SECONDS = 0.1  # while an instance is starting or waiting to restart
LAST_OUTPUT_LINES = 3  # of a crashed instance's output, in its message
NETWORK_SWEEP_SECONDS = 60.0  # how often networks are swept when no pass removed anything
PIDS_LIMIT = 256
MAX_PARALLEL_ACTIONS = 8

Publish = Callable[[list[ServedApp]], None]
Drain = Callable[[str], Awaitable[bool]]


@dataclass
class _Pass:
    """The record of one pass: its events, the instances it forgot, and the apps' problems it changed."""

    events: list[ActionEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def event(self, action: str, tenant: str, **detail: object) -> None:
        self.events.append(ActionEvent(action, tenant, detail))


class Reconciler:
    """`publish` receives every app's ready endpoints whenever they change; `drain` is awaited with an
    instance's endpoint after it left them and before its container stops (in-flight requests finish)."""

    def __init__(
        self,
        engine: Engine,
        platform_id: str,
        pool: NodePool,
        strategy: Strategy,
        publish: Publish | None = None,
        drain: Drain | None = None,
        image_store: NodeRuntime | None = None,
    ) -> None:
        self.engine = engine
        self.platform_id = platform_id
        self.pool = pool
        pool.on_change = self.nudge
        self.strategy = strategy
        self.publish = publish
        self.drain = drain
        self.image_store = image_store  # where images are built and loaded; shipped to nodes from there
        self.liveness = Liveness()
        self.usage = UsageSampler()
        self.tracked: dict[str, Tracked] = {}
        self._adopted = False
        self._retry_at: dict[int, tuple[int, float]] = {}  # app id -> (creates failed in a row, retry at)
        self._unplaceable: set[int] = set()  # apps whose being unplaceable is logged already
        self._problems: dict[int, str | None] = {}  # app id -> why it does not run as asked
        self._problems_saved: dict[int, str | None] = {}
        self._desired: list[DesiredApp] = []
        self._published: list[ServedApp] | None = None
        self._busy = False  # the last pass acted: the next one comes soon
        self._swept_at = 0.0
        self._limit = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def nudge(self) -> None:
        """Ask for a pass now (the desired state changed); safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event) -> None:
        """Reconcile until `stopping` is set; a failing pass is logged and retried, never fatal."""
        self._loop = asyncio.get_running_loop()
        try:
            while not stopping.is_set():
                self._wake.clear()  # before the pass: a nudge during it brings the next one at once
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("reconcile pass failed; retrying")
                await pause(
                    self._wake, stopping, FAST_PASS_INTERVAL_SECONDS if self._hurried() else PASS_INTERVAL_SECONDS
                )
        finally:
            await self.liveness.close()

    async def reconcile(self) -> None:
        """One pass: observe, plan, act, check health, record."""
        desired, rows, draining = await asyncio.to_thread(self._load)
        if rows is not None:
            self.tracked = {row.id: Tracked.adopt(row) for row in rows.values()}
            self._adopted = True
        self._desired, work, now = desired, _Pass(), time.monotonic()
        containers = await self._observe(desired, work)
        retry_at = {app_id: at for app_id, (_, at) in self._retry_at.items()}
        observed = Observed(containers, self.tracked, self.pool.views(draining), retry_at)
        actions = plan(desired, observed, now, self.strategy)
        await asyncio.gather(*(self._act(action, work) for action in actions))
        self._busy = bool(actions)

        apps = {app.app_id: app for app in desired}
        stopped = {c.instance for c in containers if not c.running}
        for tracked, verdict in await self.liveness.check(list(self.tracked.values()), apps, stopped, now):
            if verdict.event is not None:
                work.events.append(verdict.event)
            if verdict.stop:
                await self._stop(tracked)
        self._settle(desired)
        await self.usage.sample(self.pool, list(self.tracked.values()))
        self._publish()
        await asyncio.to_thread(self._save, work)
        if work.removed or time.monotonic() - self._swept_at >= NETWORK_SWEEP_SECONDS:
            await self._sweep_networks(containers, desired, work)

    # observing

    def _load(self) -> tuple[list[DesiredApp], dict[str, Instance] | None, set[str]]:
        with db.session(self.engine) as session:
            desired = store.desired_apps(session)
            rows = None if self._adopted else store.load_instances(session)
            draining = registry.draining(session)
        return desired, rows, draining

    async def _observe(self, desired: list[DesiredApp], work: _Pass) -> list[Container]:
        """Every container of this platform, tracked. A node that does not answer, or is not attached yet (after
        a restart a VM node attaches once connected again), keeps its last known instances until it counts as
        lost, so nothing is created twice meanwhile; a detached node's are gone at once."""
        names = {app.app_id: (app.tenant, app.name) for app in desired}
        now = time.monotonic()
        found: list[Container] = []
        for node in self.pool:
            if node.capacity is None or not node.reachable:
                if not await node.refresh(self.engine):
                    found += [] if node.lost(now) else self._remembered({node.name}, names)
                    continue
            try:
                found += await node.runtime.containers(self.platform_id)
            except EngineError as exc:
                log.warning("node %s: %s", node.name, exc)
                await node.mark_unreachable(self.engine)
                found += [] if node.lost(now) else self._remembered({node.name}, names)
        found += self._remembered(self.pool.kept_away({t.node for t in self.tracked.values()}, now), names)
        self._track(found, names, work)
        return found

    def _remembered(self, nodes: set[str], names: dict[int, tuple[str, str]]) -> list[Container]:
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
            for t in self.tracked.values()
            if t.node in nodes and t.app_id in names
        ]

    def _track(self, containers: list[Container], names: dict[int, tuple[str, str]], work: _Pass) -> None:
        """Adopt containers not yet tracked; forget instances whose container is gone."""
        app_ids = {name: app_id for app_id, name in names.items()}
        for container in containers:
            tracked = self.tracked.get(container.instance)
            if container.remembered:
                continue
            if tracked is None and (container.tenant, container.app) in app_ids:
                self.tracked[container.instance] = Tracked(
                    container.instance,
                    app_ids[(container.tenant, container.app)],
                    container.node,
                    container.id,
                    container.revision,
                    InstanceState.STARTING,
                    container.endpoint,
                    started_at=container.started_at,
                )
            elif tracked is not None:
                tracked.endpoint, tracked.started_at = container.endpoint, container.started_at
                tracked.container_id = container.id
        present = {c.instance for c in containers}
        for gone in [t for t in self.tracked.values() if t.id not in present]:
            if gone.app_id in names:
                tenant, app = names[gone.app_id]
                work.event("instance.vanished", tenant, app=app, instance=gone.id, node=gone.node)
            self._forget(gone.id, work)

    # acting

    async def _act(self, action: Action, work: _Pass) -> None:
        match action:
            case Create(app, node):
                await self._create(app, node, work)
            case Remove(container, reason):
                await self._remove(container, reason, work)
            case Restart(app, container):
                await self._restart(app, container, work)
            case Crashed():
                await self._record_crash(action, work)
            case Unplaceable(app, reason):
                self._problems[app.app_id] = f"cannot be placed: {reason}"
                if app.app_id not in self._unplaceable:
                    self._unplaceable.add(app.app_id)
                    work.event("instance.unschedulable", app.tenant, app=app.name, reason=reason)

    async def _create(self, app: DesiredApp, node_name: str, work: _Pass) -> None:
        self._unplaceable.discard(app.app_id)
        node, instance = self.pool[node_name], secrets.token_hex(3)
        network = self.network_of(app.tenant)
        spec = InstanceSpec(
            self.platform_id,
            app.tenant,
            app.name,
            app.revision,
            instance,
            app.image,
            app.command,
            app.env,
            app.port,
            app.cpu_millicores,
            app.memory_mib,
            PIDS_LIMIT,
            network,
        )
        async with self._limit:
            try:
                await node.runtime.ensure_network(network, {PLATFORM_LABEL: self.platform_id, TENANT_LABEL: app.tenant})
                container = await self._create_container(node, spec)
            except EngineError as exc:
                failures = self._retry_at.get(app.app_id, (0, 0.0))[0] + 1
                self._retry_at[app.app_id] = (failures, time.monotonic() + backoff(failures))
                self._problems[app.app_id] = f"{exc} (tried {failures} times, again with backoff)"
                work.event(
                    "instance.failed",
                    app.tenant,
                    app=app.name,
                    node=node.name,
                    reason=str(exc),
                    retry_in_seconds=backoff(failures),
                )
                return
        self._retry_at.pop(app.app_id, None)
        self._problems[app.app_id] = None
        self.tracked[instance] = Tracked(
            instance,
            app.app_id,
            node.name,
            container.id,
            app.revision,
            InstanceState.STARTING,
            container.endpoint,
            started_at=container.started_at,
        )
        work.event(
            "instance.create",
            app.tenant,
            app=app.name,
            instance=instance,
            node=node.name,
            revision=app.revision,
            endpoint=container.endpoint,
        )

    async def _create_container(self, node: NodeHandle, spec: InstanceSpec) -> Container:
        """Create the instance's container, shipping its image to the node first if the node lacks it."""
        try:
            return await node.runtime.create(spec)
        except ImageMissing:
            if self.image_store is None or self.image_store is node.runtime:
                raise
        await images.ship(spec.image, self.image_store, node.runtime)
        return await node.runtime.create(spec)

    async def _restart(self, app: DesiredApp, container: Container, work: _Pass) -> None:
        tracked = self.tracked[container.instance]
        async with self._limit:
            try:
                started = await self.pool[container.node].runtime.start(container.id)
            except EngineError as exc:
                tracked.restart_at = time.monotonic() + backoff(tracked.crashes)
                work.event("instance.failed", app.tenant, app=app.name, instance=tracked.id, reason=str(exc))
                return
        tracked.restarts += 1
        tracked.restart_at, tracked.checked_at = None, 0.0
        tracked.endpoint, tracked.started_at = started.endpoint, started.started_at
        work.event("instance.restart", app.tenant, app=app.name, instance=tracked.id, restarts=tracked.restarts)

    async def _record_crash(self, crash: Crashed, work: _Pass) -> None:
        """Apply a crash to its instance, say why in its message (its last output, when it exited by itself)."""
        tracked, container = self.tracked[crash.container.instance], crash.container
        tracked.crashes, tracked.restart_at, tracked.state, tracked.failures = (
            crash.crashes,
            crash.restart_at,
            crash.state,
            0,
        )
        times = f"{crash.crashes} times in a row" if crash.crashes > 1 else "once"
        delay = crash.restart_at - time.monotonic()
        work.event(
            "instance.crashed",
            crash.app.tenant,
            app=crash.app.name,
            instance=tracked.id,
            exit_code=container.exit_code,
            crashes=crash.crashes,
            restart_in_seconds=round(delay),
        )
        if tracked.stopped_because:
            tracked.message, tracked.stopped_because = f"{tracked.stopped_because}; restarted {times}", None
            return
        tracked.message = f"exited with code {container.exit_code}, {times}"
        lines: list[str] = []
        try:
            if container.node in self.pool:
                async for line in self.pool[container.node].runtime.logs(container.id, follow=False, since=None):
                    if line.strip():
                        lines = [*lines[1 - LAST_OUTPUT_LINES :], line.strip()[:200]]
        except EngineError as exc:
            log.warning("reading the output of %s: %s", tracked.id, exc)
        if lines:
            tracked.message += "; last output: " + " | ".join(lines)

    async def _remove(self, container: Container, reason: str, work: _Pass) -> None:
        tracked = self.tracked.get(container.instance)
        if tracked is not None:
            was_serving = tracked.state == InstanceState.READY
            tracked.state = InstanceState.STOPPING
            if was_serving and tracked.endpoint and self.drain is not None:
                self._publish()  # out of the routes first...
                if not await self.drain(tracked.endpoint):  # ...then its requests in flight finish
                    log.warning("instance %s still had requests in flight after the drain timeout", tracked.id)
        async with self._limit:
            try:
                await self.pool[container.node].runtime.remove(container.id)
            except EngineError as exc:
                log.warning("removing %s: %s", container.instance, exc)
                return
        work.event(
            "instance.remove",
            container.tenant,
            app=container.app,
            instance=container.instance,
            node=container.node,
            reason=reason,
        )
        self._forget(container.instance, work)

    async def _stop(self, tracked: Tracked) -> None:
        """Stop an instance that failed liveness; the next pass restarts it as a crashed one."""
        if tracked.node not in self.pool:
            return
        try:
            await self.pool[tracked.node].runtime.stop(tracked.container_id)
        except EngineError as exc:
            log.warning("stopping unhealthy %s: %s", tracked.id, exc)

    def _forget(self, instance: str, work: _Pass) -> None:
        if self.tracked.pop(instance, None) is not None:
            work.removed.append(instance)

    def _settle(self, desired: list[DesiredApp]) -> None:
        """Clear the problem of each app that runs as asked; drop what is held for apps that are gone."""
        ready = Counter((t.app_id, t.revision) for t in self.tracked.values() if t.state == InstanceState.READY)
        for app in desired:
            if ready[(app.app_id, app.revision)] >= app.replicas:
                self._problems[app.app_id] = None
        live = {app.app_id for app in desired}
        self._retry_at = {key: value for key, value in self._retry_at.items() if key in live}
        self._unplaceable &= live
        self._problems = {key: value for key, value in self._problems.items() if key in live}
        self._problems_saved = {key: value for key, value in self._problems_saved.items() if key in live}

    async def _sweep_networks(self, containers: list[Container], desired: list[DesiredApp], work: _Pass) -> None:
        """Remove each node's networks of tenants that have neither a container there nor an app to run: a
        deleted tenant's network must not outlive it (it holds a subnet of the node's pool)."""
        self._swept_at = time.monotonic()
        wanted = {app.tenant for app in desired if app.replicas > 0}
        for node in self.pool:
            if not node.reachable or node.capacity is None:
                continue
            used = {c.tenant for c in containers if c.node == node.name and c.instance not in work.removed}
            try:
                for name, tenant in (await node.runtime.networks(self.platform_id)).items():
                    if tenant not in used and tenant not in wanted:
                        await node.runtime.remove_network(name)
                        log.info("removed network %s of %s on %s: nothing of it runs there", name, tenant, node.name)
            except EngineError as exc:  # a container made meanwhile, or the engine away: next time
                log.warning("sweeping the networks of %s: %s", node.name, exc)

    # recording

    def _hurried(self) -> bool:
        """Look again soon while something is in motion: starting instances, pending restarts, a roll."""
        return self._busy or any(
            t.state in (InstanceState.STARTING, InstanceState.CRASHLOOP) or t.restart_at is not None
            for t in self.tracked.values()
        )

    def _publish(self) -> None:
        """Tell the front door each app's ready endpoints, if anything changed since the last time."""
        if self.publish is None:
            return
        ready: dict[int, list[str]] = {}
        for tracked in self.tracked.values():
            if tracked.state == InstanceState.READY and tracked.endpoint:
                ready.setdefault(tracked.app_id, []).append(tracked.endpoint)
        served = [
            ServedApp(
                app.tenant,
                app.name,
                tuple(app.hostnames),
                tuple(sorted(ready.get(app.app_id, ()))),
                app.requests_per_second,
                app.burst,
                app.max_body_mib,
            )
            for app in self._desired
        ]
        if served != self._published:
            self._published = served
            self.publish(served)

    def _save(self, work: _Pass) -> None:
        changed = []
        for tracked in self.tracked.values():
            snapshot = tracked.snapshot()
            if snapshot != tracked.saved:
                changed.append(tracked.row())
                tracked.saved = snapshot
        problems = {key: text for key, text in self._problems.items() if self._problems_saved.get(key) != text}
        if changed or work.removed or work.events or problems:
            with db.session(self.engine) as session:
                store.record(session, changed, work.removed, work.events, problems)
            self._problems_saved.update(problems)
        for event in work.events:
            log.info("%s %s %s", event.action, event.tenant, event.detail)

    def network_of(self, tenant: str) -> str:
        return f"strata-{self.platform_id[:8]}-{tenant}"
