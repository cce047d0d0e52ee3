"""The reconciler: make the containers on the nodes match the apps' desired state, again and again.

Level-triggered, as Kubernetes controllers are: each pass reads the whole desired state (the database) and
the whole actual state (containers found by label on every node), acts idempotently on the difference,
and records what it did. It trusts no event and no memory it cannot rebuild: after a restart it adopts the
running containers from their labels and their rows, restarting nothing that was fine.

Per app, a pass
- restarts crashed instances of the current revision after an exponential backoff (capped), counting them,
  and so those never healthy within their start period (stopped as a liveness failure);
- removes surplus instances (least useful first) and every container whose app no longer exists;
- creates missing instances where the scheduler places them, all at once, except during a roll;
- rolls a new revision one instance at a time: it adds one new instance, and removes an old ready one only
  once a new one is ready, so the app never has fewer ready instances than its replicas;
- says in words why an app or an instance is not as asked (the app's `problem`, the instance's `message`).
After a pass that removed containers, and now and then, it removes the networks of tenants with nothing left
on a node. State it keeps in memory is keyed by app ids, which are never reused (see `tenants.models`).
"""

import asyncio
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from hosting.paas import images
from hosting.paas.health import OK, REFUSED, HealthChecker
from hosting.paas.nodes import NODE_LOST_AFTER_SECONDS, NodeHandle
from hosting.paas.pause import pause
from hosting.paas.runtime import (
    PLATFORM_LABEL,
    TENANT_LABEL,
    Container,
    EngineError,
    ImageMissing,
    InstanceSpec,
    NodeRuntime,
    Usage,
)
from hosting.paas.scheduler import NodeView, NoFit, Request, Scheduler, Strategy
from hosting.paas.serving import ServedApp
from tenants import db
from tenants import instances as store
from tenants import nodes as registry
from tenants.enums import InstanceState, Isolation
from tenants.instances import ActionEvent, DesiredApp
from tenants.models import Instance

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 1.0
FAST_PASS_INTERVAL_SECONDS = 0.1  # while an instance is starting or waiting to restart
HEALTH_INTERVAL_SECONDS = 2.0  # between checks of an instance that is ready
UNHEALTHY_AFTER_FAILURES = 3
RESTART_UNHEALTHY_AFTER_SECONDS = 60.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
CRASHLOOP_AFTER_CRASHES = 3
STABLE_AFTER_SECONDS = 30.0  # running this long forgives earlier crashes
START_PERIOD_SECONDS = 60.0  # an instance never healthy this long after it started is stopped and restarted
LAST_OUTPUT_LINES = 3  # of a crashed instance's output, in its message
NETWORK_SWEEP_SECONDS = 60.0  # how often networks are swept when no pass removed anything
PIDS_LIMIT = 256
MAX_PARALLEL_ACTIONS = 8
USAGE_INTERVAL_SECONDS = 10.0  # how often running instances' CPU and memory are sampled

AppKey = tuple[str, str]  # (tenant, app)


def backoff(failures: int) -> float:
    """Seconds to wait after the `failures`-th failure in a row: 1, 2, 4, ... up to the cap."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_CAP_SECONDS)


PERSISTED = tuple(Instance.model_fields)  # what of a Tracked instance its row keeps


@dataclass
class Tracked:
    """What the reconciler knows of one instance; the persisted part is rebuilt from its row after a restart."""

    id: str
    app_id: int
    node: str
    container_id: str
    revision: int
    state: InstanceState
    endpoint: str | None
    restarts: int = 0
    started_at: datetime | None = None
    last_health: str | None = None
    message: str | None = None  # why it is not ready, in words
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    failures: int = 0  # health checks failed in a row
    crashes: int = 0  # crashes in a row (forgiven once stable)
    restart_at: float | None = None  # when to restart after a crash (monotonic)
    checked_at: float = 0.0
    unhealthy_since: float | None = None
    stopped_because: str | None = None  # why the reconciler stopped it (a liveness failure), for its message
    saved: tuple[object, ...] | None = None  # the row as last written

    def row(self) -> Instance:
        return Instance(**{name: getattr(self, name) for name in PERSISTED})

    def snapshot(self) -> tuple[object, ...]:
        """The persisted fields: the row is rewritten only when this changes."""
        return tuple(getattr(self, name) for name in PERSISTED)

    @classmethod
    def adopt(cls, row: Instance) -> "Tracked":
        tracked = cls(**{name: getattr(row, name) for name in PERSISTED})
        # An instance caught mid-removal by a restart is judged afresh by its health check.
        tracked.state = InstanceState.STARTING if row.state == InstanceState.STOPPING else InstanceState(row.state)
        tracked.saved = tracked.snapshot()
        return tracked


@dataclass
class _Pass:
    """The work and the record of one pass."""

    events: list[ActionEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def event(self, action: str, tenant: str, **detail: object) -> None:
        self.events.append(ActionEvent(action, tenant, detail))


Publish = Callable[[list[ServedApp]], None]
Drain = Callable[[str], Awaitable[bool]]


class Reconciler:
    """`publish` receives every app's ready endpoints whenever they change; `drain` is awaited with an
    instance's endpoint after it left them and before its container stops (in-flight requests finish)."""

    def __init__(
        self,
        engine: Engine,
        platform_id: str,
        nodes: Iterable[NodeHandle],
        publish: Publish | None = None,
        drain: Drain | None = None,
        image_store: NodeRuntime | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        self.engine = engine
        self.platform_id = platform_id
        self.nodes = {node.name: node for node in nodes}
        self.image_store = image_store  # where images are built and loaded; shipped to nodes from there
        self._away_since: dict[str, float] = {}  # node not attached (yet) -> since when, for its instances
        self._removed: set[str] = set()  # nodes detached for good: their instances are gone at once
        self.health = HealthChecker()
        self.tracked: dict[str, Tracked] = {}
        self._adopted = False
        self._wake = asyncio.Event()
        self._create_failures: dict[int, tuple[int, float]] = {}  # app id -> (failures, retry at)
        self._unschedulable: set[int] = set()
        self._problems: dict[int, str | None] = {}  # app id -> why it does not run as asked
        self._problems_saved: dict[int, str | None] = {}
        self._swept_at = 0.0
        self._limit = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.publish = publish
        self.drain = drain
        self._desired: list[DesiredApp] = []
        self._published: list[ServedApp] | None = None
        self._busy = False  # the last pass acted: the next one comes soon
        self._samples: dict[str, Usage] = {}  # instance -> its last counters
        self.usage: dict[str, tuple[int, int]] = {}  # instance -> (millicores, MiB) used lately
        self._sampled_at = 0.0
        self.strategy = strategy or Strategy.from_env()

    def attach(self, node: NodeHandle) -> None:
        """Place instances on `node` too (a VM node that became ready), replacing a handle of its name."""
        self.nodes[node.name] = node
        self._away_since.pop(node.name, None)
        self._removed.discard(node.name)
        self.nudge()

    def detach(self, name: str) -> None:
        """Stop using node `name` (it is being removed); its instances are then gone and placed elsewhere."""
        self.nodes.pop(name, None)
        self._removed.add(name)
        self.nudge()

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
                interval = FAST_PASS_INTERVAL_SECONDS if self._hurried() else PASS_INTERVAL_SECONDS
                await pause(self._wake, stopping, interval)
        finally:
            await self.health.close()

    async def reconcile(self) -> None:
        """One pass: observe, act, check health, record."""
        desired, rows, draining = await asyncio.to_thread(self._load)
        for node in self.nodes.values():
            node.draining = node.name in draining
        if rows is not None:
            self.tracked = {row.id: Tracked.adopt(row) for row in rows.values()}
            self._adopted = True
        work = _Pass()
        self._desired = desired
        names = {app.app_id: (app.tenant, app.name) for app in desired}
        containers = await self._observe(names)
        self._track(containers, desired, work)

        wanted = {(app.tenant, app.name): app for app in desired}
        by_app: dict[AppKey, list[Container]] = defaultdict(list)
        for container in containers:
            by_app[(container.tenant, container.app)].append(container)

        actions = []
        for key, found in by_app.items():
            if key not in wanted:
                actions += [self._remove(c, work, reason="orphan") for c in found]
        views = self._views(containers, wanted)
        for app in desired:
            actions += self._plan(app, by_app.get((app.tenant, app.name), []), views, work)
        await asyncio.gather(*actions)
        self._busy = bool(actions)
        await self._check_health(containers, wanted, work)
        for app in desired:
            self._judge_app(app, by_app.get((app.tenant, app.name), []))
        self._forget_apps({app.app_id for app in desired})
        if time.monotonic() - self._sampled_at >= USAGE_INTERVAL_SECONDS:
            await self._sample_usage()
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

    async def _observe(self, names: dict[int, AppKey]) -> list[Container]:
        """Every container of this platform; a node that does not answer keeps its last known instances,
        so nothing is created twice while it is away."""
        found: list[Container] = []
        for node in list(self.nodes.values()):
            if node.capacity is None or not node.reachable:
                if not await node.refresh(self.engine):
                    found += self._remembered(node, names)
                    continue
            try:
                found += await node.runtime.containers(self.platform_id)
            except EngineError as exc:
                log.warning("node %s: %s", node.name, exc)
                await node.mark_unreachable(self.engine)
                found += self._remembered(node, names)
        return found + self._away(names)

    def _away(self, names: dict[int, AppKey]) -> list[Container]:
        """The instances last seen on a node that is not attached: after a restart of the daemon a VM node
        attaches only once it is connected again, so they are kept as they were for as long as an unreachable
        node's are (and nothing is created twice meanwhile); a removed node's are gone at once."""
        now = time.monotonic()
        away = {t.node for t in self.tracked.values()} - set(self.nodes) - self._removed
        self._away_since = {node: self._away_since.get(node, now) for node in away}
        kept = {node for node, since in self._away_since.items() if now - since < NODE_LOST_AFTER_SECONDS}
        return [self._container_of(t, names) for t in self.tracked.values() if t.node in kept and t.app_id in names]

    def _remembered(self, node: NodeHandle, names: dict[int, AppKey]) -> list[Container]:
        """What was last known of an unreachable node's containers; nothing once the node counts as lost."""
        if node.lost(time.monotonic()):
            return []
        tracked = self.tracked.values()
        return [self._container_of(t, names) for t in tracked if t.node == node.name and t.app_id in names]

    def _container_of(self, tracked: Tracked, names: dict[int, AppKey]) -> Container:
        """A tracked instance as its container was last seen (its node does not answer now)."""
        return Container(
            node=tracked.node,
            id=tracked.container_id,
            tenant=names[tracked.app_id][0],
            app=names[tracked.app_id][1],
            revision=tracked.revision,
            instance=tracked.id,
            running=True,
            exit_code=None,
            started_at=tracked.started_at,
            endpoint=tracked.endpoint,
            remembered=True,
        )

    def _track(self, containers: list[Container], desired: list[DesiredApp], work: _Pass) -> None:
        """Adopt containers not yet tracked; forget instances whose container is gone."""
        app_ids = {(app.tenant, app.name): app.app_id for app in desired}
        names = {app.app_id: (app.tenant, app.name) for app in desired}
        present = set()
        for container in containers:
            present.add(container.instance)
            if container.remembered:
                continue
            tracked = self.tracked.get(container.instance)
            if tracked is None and (container.tenant, container.app) in app_ids:
                self.tracked[container.instance] = Tracked(
                    id=container.instance,
                    app_id=app_ids[(container.tenant, container.app)],
                    node=container.node,
                    container_id=container.id,
                    revision=container.revision,
                    state=InstanceState.STARTING,
                    endpoint=container.endpoint,
                    started_at=container.started_at,
                )
            elif tracked is not None:
                tracked.endpoint = container.endpoint
                tracked.started_at = container.started_at
                tracked.container_id = container.id
        for gone in [t for t in self.tracked.values() if t.id not in present]:
            tenant, app = names.get(gone.app_id, ("", ""))
            if tenant:
                work.event("instance.vanished", tenant, app=app, instance=gone.id, node=gone.node)
            self._forget(gone.id, work)

    def _views(self, containers: list[Container], wanted: dict[AppKey, DesiredApp]) -> Scheduler:
        claims: dict[str, list[int]] = {name: [0, 0] for name in self.nodes}
        instances: dict[str, Counter[AppKey]] = {name: Counter() for name in self.nodes}
        for container in containers:
            app = wanted.get((container.tenant, container.app))
            if app and container.node in claims:
                claims[container.node][0] += app.cpu_millicores
                claims[container.node][1] += app.memory_mib
                instances[container.node][(container.tenant, container.app)] += 1
        views = (
            NodeView(
                name=name,
                ready=node.reachable and node.capacity is not None,
                cpu_millicores=node.capacity.cpu_millicores if node.capacity else 0,
                memory_mib=node.capacity.memory_mib if node.capacity else 0,
                allocated_cpu_millicores=claims[name][0],
                allocated_memory_mib=claims[name][1],
                tenant=node.tenant,
                draining=node.draining,
                instances=instances[name],
            )
            for name, node in self.nodes.items()
        )
        return Scheduler(views, self.strategy)

    # deciding

    def _plan(self, app: DesiredApp, found: list[Container], views: Scheduler, work: _Pass) -> list:
        """The actions that bring `app` one step closer to its desired state."""
        actions = []
        # Instances on a draining node are replaced as old revisions are: a new one first, then the old goes.
        current = [c for c in found if c.revision == app.revision and not self._draining(c)]
        old = [c for c in found if c.revision != app.revision or self._draining(c)]
        live = []
        for container in current:
            if container.running:
                live.append(container)
            elif app.replicas > 0:
                live.append(container)
                actions += self._crashed(app, container, work)
            else:
                actions.append(self._remove(container, work, reason="scaled to zero"))

        if len(live) > app.replicas:
            surplus = sorted(live, key=self._usefulness)[: len(live) - app.replicas]
            actions += [self._remove(c, work, reason="scale down") for c in surplus]
        elif len(live) < app.replicas and self._may_create(app):
            rolling = bool(old)
            if not rolling or all(self._state(c) == InstanceState.READY for c in live):
                count = 1 if rolling else app.replicas - len(live)
                actions += [self._create(app, views, work) for _ in range(count)]

        ready_new = sum(1 for c in live if self._state(c) == InstanceState.READY)
        ready_old = sorted((c for c in old if self._state(c) == InstanceState.READY), key=lambda c: c.revision)
        for container in old:
            if self._state(container) != InstanceState.READY:
                actions.append(self._remove(container, work, reason="old revision"))
        while ready_old and ready_new + len(ready_old) > app.replicas:
            actions.append(self._remove(ready_old.pop(0), work, reason="replaced by a new revision"))
        return actions

    def _crashed(self, app: DesiredApp, container: Container, work: _Pass) -> list:
        tracked = self.tracked.get(container.instance)
        if tracked is None:
            return []
        now = time.monotonic()
        if tracked.restart_at is None:
            tracked.crashes += 1
            delay = backoff(tracked.crashes)
            tracked.restart_at = now + delay
            tracked.failures = 0
            tracked.state = (
                InstanceState.CRASHLOOP if tracked.crashes >= CRASHLOOP_AFTER_CRASHES else (InstanceState.STARTING)
            )
            times = f"{tracked.crashes} times in a row" if tracked.crashes > 1 else "once"
            if tracked.stopped_because:
                tracked.message = f"{tracked.stopped_because}; restarted {times}"
                tracked.stopped_because = None
                explain = []
            else:
                tracked.message = f"exited with code {container.exit_code}, {times}"
                explain = [self._add_last_output(container, tracked)]
            work.event(
                "instance.crashed",
                app.tenant,
                app=app.name,
                instance=container.instance,
                exit_code=container.exit_code,
                crashes=tracked.crashes,
                restart_in_seconds=delay,
            )
            return explain
        if now < tracked.restart_at:
            return []
        return [self._restart(app, container, tracked, work)]

    async def _add_last_output(self, container: Container, tracked: Tracked) -> None:
        """Append the last lines a crashed instance printed to its message: what a user needs to see first."""
        node = self.nodes.get(container.node)
        if node is None:
            return
        lines: list[str] = []
        try:
            async for line in node.runtime.logs(container.id, follow=False, since=None):
                if line.strip():
                    lines = [*lines[1 - LAST_OUTPUT_LINES :], line.strip()[:200]]
        except EngineError as exc:
            log.warning("reading the output of %s: %s", tracked.id, exc)
            return
        if lines and tracked.message:
            tracked.message += "; last output: " + " | ".join(lines)

    def _judge_app(self, app: DesiredApp, found: list[Container]) -> None:
        """Forget the app's problem once it runs as asked: all its replicas of the current revision ready."""
        ready = [c for c in found if c.revision == app.revision and self._state(c) == InstanceState.READY]
        if len(ready) >= app.replicas:
            self._problems[app.app_id] = None

    def _forget_apps(self, live: set[int]) -> None:
        """Drop what is held in memory for apps that no longer exist."""
        self._create_failures = {key: value for key, value in self._create_failures.items() if key in live}
        self._unschedulable &= live
        self._problems = {key: value for key, value in self._problems.items() if key in live}
        self._problems_saved = {key: value for key, value in self._problems_saved.items() if key in live}

    def _may_create(self, app: DesiredApp) -> bool:
        """False while creating this app's instances is backing off after failures."""
        _, retry_at = self._create_failures.get(app.app_id, (0, 0.0))
        return time.monotonic() >= retry_at

    def _draining(self, container: Container) -> bool:
        node = self.nodes.get(container.node)
        return node is not None and node.draining

    def _state(self, container: Container) -> InstanceState | None:
        tracked = self.tracked.get(container.instance)
        return tracked.state if tracked else None

    def _usefulness(self, container: Container) -> tuple[int, float]:
        """Sort key, least useful first: not ready before ready, then the newest."""
        tracked = self.tracked.get(container.instance)
        ready = tracked is not None and tracked.state == InstanceState.READY
        started = container.started_at.timestamp() if container.started_at else float("inf")
        return (1 if ready else 0, -started)

    def _hurried(self) -> bool:
        """Look again soon while something is in motion: starting instances, pending restarts, a roll."""
        if self._busy:
            return True
        return any(
            t.state in (InstanceState.STARTING, InstanceState.CRASHLOOP) or t.restart_at is not None
            for t in self.tracked.values()
        )

    # acting

    async def _create(self, app: DesiredApp, views: Scheduler, work: _Pass) -> None:
        dedicated = app.isolation == Isolation.DEDICATED
        target = views.place(Request(app.tenant, app.name, dedicated, app.cpu_millicores, app.memory_mib))
        if isinstance(target, NoFit):
            self._problems[app.app_id] = f"cannot be placed: {target.reason}"
            if app.app_id not in self._unschedulable:
                self._unschedulable.add(app.app_id)
                work.event(
                    "instance.unschedulable",
                    app.tenant,
                    app=app.name,
                    reason=target.reason,
                )
            return
        self._unschedulable.discard(app.app_id)
        instance = secrets.token_hex(3)
        node = self.nodes[target.name]
        spec = InstanceSpec(
            platform=self.platform_id,
            tenant=app.tenant,
            app=app.name,
            revision=app.revision,
            instance=instance,
            image=app.image,
            command=app.command,
            env=app.env,
            port=app.port,
            cpu_millicores=app.cpu_millicores,
            memory_mib=app.memory_mib,
            pids_limit=PIDS_LIMIT,
            network=self.network_of(app.tenant),
        )
        async with self._limit:
            try:
                await node.runtime.ensure_network(
                    spec.network, {PLATFORM_LABEL: self.platform_id, TENANT_LABEL: app.tenant}
                )
                container = await self._create_container(node.runtime, spec)
            except EngineError as exc:
                failures = self._create_failures.get(app.app_id, (0, 0.0))[0] + 1
                self._create_failures[app.app_id] = (failures, time.monotonic() + backoff(failures))
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
        self._create_failures.pop(app.app_id, None)
        self._problems[app.app_id] = None
        self.tracked[instance] = Tracked(
            id=instance,
            app_id=app.app_id,
            node=node.name,
            container_id=container.id,
            revision=app.revision,
            state=InstanceState.STARTING,
            endpoint=container.endpoint,
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

    async def _create_container(self, runtime: NodeRuntime, spec: InstanceSpec) -> Container:
        """Create the instance's container, shipping its image to the node first if the node lacks it."""
        try:
            return await runtime.create(spec)
        except ImageMissing:
            if self.image_store is None or self.image_store is runtime:
                raise
        await images.ship(spec.image, self.image_store, runtime)
        return await runtime.create(spec)

    async def _restart(self, app: DesiredApp, container: Container, tracked: Tracked, work: _Pass) -> None:
        async with self._limit:
            try:
                started = await self.nodes[container.node].runtime.start(container.id)
            except EngineError as exc:
                tracked.restart_at = time.monotonic() + backoff(tracked.crashes)
                work.event("instance.failed", app.tenant, app=app.name, instance=tracked.id, reason=str(exc))
                return
        tracked.restarts += 1
        tracked.restart_at = None
        tracked.endpoint, tracked.started_at = started.endpoint, started.started_at
        tracked.checked_at = 0.0
        work.event("instance.restart", app.tenant, app=app.name, instance=tracked.id, restarts=tracked.restarts)

    async def _remove(self, container: Container, work: _Pass, *, reason: str) -> None:
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
                await self.nodes[container.node].runtime.remove(container.id)
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

    def _forget(self, instance: str, work: _Pass) -> None:
        if self.tracked.pop(instance, None) is not None:
            work.removed.append(instance)

    # health

    async def _check_health(self, containers: list[Container], wanted: dict[AppKey, DesiredApp], work: _Pass) -> None:
        """Check every live instance that is due, including those created in this very pass."""
        now = time.monotonic()
        apps = {app.app_id: app for app in wanted.values()}
        stopped = {c.instance for c in containers if not c.running}
        due = []
        for tracked in self.tracked.values():
            app = apps.get(tracked.app_id)
            if app is None or tracked.state == InstanceState.STOPPING or tracked.endpoint is None:
                continue
            if tracked.id in stopped or tracked.restart_at is not None:
                continue
            interval = HEALTH_INTERVAL_SECONDS if tracked.state == InstanceState.READY else 0.0
            if now - tracked.checked_at >= interval:
                due.append((app, tracked))
        results = await asyncio.gather(*(self.health.check(t.endpoint, app.health_path) for app, t in due))
        stuck = [t for (app, t), result in zip(due, results, strict=True) if self._judge(app, t, result, now, work)]
        await asyncio.gather(*(self._stop(t) for t in stuck))

    def _judge(self, app: DesiredApp, tracked: Tracked, result: str, now: float, work: _Pass) -> bool:
        """Apply a health result; True if the instance has been unhealthy so long it must be restarted."""
        tracked.checked_at = now
        tracked.last_health = result
        if result == OK:
            tracked.failures = 0
            tracked.unhealthy_since = None
            tracked.message = None
            if _age(tracked) > STABLE_AFTER_SECONDS:
                tracked.crashes = 0
            if tracked.state != InstanceState.READY:
                tracked.state = InstanceState.READY
                work.event("instance.ready", app.tenant, app=app.name, instance=tracked.id, endpoint=tracked.endpoint)
            return False
        tracked.failures += 1
        check = _describe_check(app, result)
        if tracked.state == InstanceState.READY and tracked.failures >= UNHEALTHY_AFTER_FAILURES:
            tracked.state = InstanceState.UNHEALTHY
            tracked.unhealthy_since = now
            work.event("instance.unhealthy", app.tenant, app=app.name, instance=tracked.id, health=result)
        if tracked.state == InstanceState.UNHEALTHY:
            tracked.message = f"unhealthy: {check}"
        elif tracked.state != InstanceState.READY:  # not healthy yet
            if _age(tracked) <= START_PERIOD_SECONDS:
                if not tracked.crashes:  # else its message says why it was restarted, which matters more
                    tracked.message = f"waiting for its health check: {check}"
                return False
            # Never healthy: a liveness failure, stopped now and restarted with backoff as a crash is.
            tracked.state = InstanceState.UNHEALTHY
            tracked.message = tracked.stopped_because = f"not healthy {START_PERIOD_SECONDS:.0f} s after start: {check}"
            work.event("instance.unhealthy", app.tenant, app=app.name, instance=tracked.id, health=result, reason=check)
            return True
        # An instance that stays unhealthy is stopped; the next pass restarts it as a crashed one (liveness).
        if tracked.unhealthy_since is not None and now - tracked.unhealthy_since > RESTART_UNHEALTHY_AFTER_SECONDS:
            tracked.unhealthy_since = None
            tracked.stopped_because = f"unhealthy for over {RESTART_UNHEALTHY_AFTER_SECONDS:.0f} s: {check}"
            work.event(
                "instance.stopped",
                app.tenant,
                app=app.name,
                instance=tracked.id,
                reason=f"unhealthy for over {RESTART_UNHEALTHY_AFTER_SECONDS:.0f}s",
            )
            return True
        return False

    async def _stop(self, tracked: Tracked) -> None:
        try:
            await self.nodes[tracked.node].runtime.stop(tracked.container_id)
        except EngineError as exc:
            log.warning("stopping unhealthy %s: %s", tracked.id, exc)

    async def _sweep_networks(self, containers: list[Container], desired: list[DesiredApp], work: _Pass) -> None:
        """Remove each node's networks of tenants that have neither a container there nor an app to run: a
        deleted tenant's network must not outlive it (it holds a subnet of the node's pool)."""
        self._swept_at = time.monotonic()
        wanted = {app.tenant for app in desired if app.replicas > 0}
        for node in list(self.nodes.values()):
            if not node.reachable or node.capacity is None:
                continue
            used = {c.tenant for c in containers if c.node == node.name and c.instance not in work.removed}
            try:
                networks = await node.runtime.networks(self.platform_id)
                for name, tenant in networks.items():
                    if tenant not in used and tenant not in wanted:
                        await node.runtime.remove_network(name)
                        log.info("removed network %s of %s on %s: nothing of it runs there", name, tenant, node.name)
            except EngineError as exc:  # a container made meanwhile, or the engine away: next time
                log.warning("sweeping the networks of %s: %s", node.name, exc)

    def _publish(self) -> None:
        """Tell the front door each app's ready endpoints, if anything changed since the last time."""
        if self.publish is None:
            return
        ready: dict[int, list[str]] = defaultdict(list)
        for tracked in self.tracked.values():
            if tracked.state == InstanceState.READY and tracked.endpoint:
                ready[tracked.app_id].append(tracked.endpoint)
        served = [
            ServedApp(
                tenant=app.tenant,
                app=app.name,
                hostnames=tuple(app.hostnames),
                endpoints=tuple(sorted(ready.get(app.app_id, ()))),
                requests_per_second=app.requests_per_second,
                burst=app.burst,
                max_body_mib=app.max_body_mib,
            )
            for app in self._desired
        ]
        if served != self._published:
            self._published = served
            self.publish(served)

    async def _sample_usage(self) -> None:
        """CPU (millicores, between two samples) and memory (MiB) of every running instance: in memory only,
        for the API and the console; they change too often to be worth a database write."""
        self._sampled_at = time.monotonic()
        running = [t for t in self.tracked.values() if t.state != InstanceState.STOPPING and t.node in self.nodes]
        samples = await asyncio.gather(*(self.nodes[t.node].runtime.usage(t.container_id) for t in running))
        usage: dict[str, tuple[int, int]] = {}
        for tracked, now in zip(running, samples, strict=True):
            before = self._samples.get(tracked.id)
            if now is None:
                continue
            self._samples[tracked.id] = now
            if before is not None and now.system_ns > before.system_ns:
                share = (now.cpu_ns - before.cpu_ns) / (now.system_ns - before.system_ns)
                usage[tracked.id] = (round(share * now.cpus * 1000), -(-now.memory_bytes // 2**20))  # MiB, rounded up
        self._samples = {key: value for key, value in self._samples.items() if key in self.tracked}
        self.usage = usage

    # recording

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


def _age(tracked: Tracked) -> float:
    """Seconds since the instance's container last started (0 when unknown)."""
    return (datetime.now(UTC) - tracked.started_at).total_seconds() if tracked.started_at else 0.0


def _describe_check(app: DesiredApp, result: str) -> str:
    """A failed health check in words: what was tried, and what came of it."""
    if app.health_path is None:
        tried = f"a TCP connect to port {app.port}"
    else:
        tried = f"GET {app.health_path} on port {app.port}"
    if result == REFUSED:
        result = "connection refused (is the app listening on that port?)"
    return f"{tried}: {result}"
