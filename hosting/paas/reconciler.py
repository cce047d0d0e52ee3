"""The reconciler: make the containers on the nodes match the apps' desired state, again and again.

Level-triggered, as Kubernetes controllers are: each pass observes the whole desired state (the database) and
the whole actual state (`observer`: containers found by label on every node), asks the planner what to do
(`planner`, a pure function), acts on it, checks health (`liveness`), and records what it did. It trusts no
event and no memory it cannot rebuild: after a restart it adopts the running containers from their labels and
their rows, restarting nothing that was fine.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine
from sqlmodel import select

from hosting.paas import images, networks
from hosting.paas.image_sweep import sweep_images
from hosting.paas.liveness import Liveness
from hosting.paas.logs import last_lines
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.observer import observe, track
from hosting.paas.pause import pause
from hosting.paas.planner import Action, Crashed, Create, Observed, Remove, Restart, Unplaceable, backoff, plan
from hosting.paas.problems import AppProblems
from hosting.paas.pulls import ImagePuller
from hosting.paas.runtime import Container, EngineError, ImageMissing, InstanceSpec, Mount, NodeRuntime
from hosting.paas.scheduler import Strategy
from hosting.paas.serving import routes
from hosting.paas.sleeper import ActivitySource, InFlight, Sleeper
from hosting.paas.tracked import Tracked
from hosting.paas.usage import UsageSampler
from hosting.paas.volumes import VolumeError
from tenants import db
from tenants import instances as store
from tenants import nodes as registry
from tenants.enums import InstanceState
from tenants.instances import ActionEvent, DesiredApp
from tenants.models import Instance, Tenant
from tenants.routes import RouteSpec
from tenants.schemas import SleepRead
from tenants.secrets import SecretBox, SecretKeyError

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 1.0
FAST_PASS_INTERVAL_SECONDS = 0.1  # while an instance is starting or waiting to restart
LAST_OUTPUT_LINES = 3  # of a crashed instance's output, in its message
PIDS_LIMIT = 256
MAX_PARALLEL_ACTIONS = 8

Publish = Callable[[list[RouteSpec]], None]
Drain = Callable[[str], Awaitable[bool]]
LetGo = Callable[[str], Awaitable[bool]]  # instance -> whether the other daemons' front doors let go of it in time
# (tenant, volumes, node) -> a block in which they are mounted on the node and stay there: their paths there
VolumeMounts = Callable[[str, Sequence[str], str], AbstractAsyncContextManager[list[str]]]


@dataclass
class _Pass:
    """The record of one pass: its events and the instances it forgot."""

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
        liveness: Liveness | None = None,  # its health checker: tests pass one for FakeRuntime's endpoints
        clock: Callable[[], float] = time.monotonic,  # for deadlines and backoff; tests pass a FakeClock's
        secrets: SecretBox | None = None,  # decrypts tenants' registry logins for their pulls
        volumes: VolumeMounts | None = None,  # the nodes' volumes (`NodeVolumes.mounted`)
        activity: ActivitySource | None = None,  # the front door's traffic per app: idle apps sleep
        in_flight: InFlight = lambda tenant, app: 0,  # requests the front door's activator holds for an app
    ) -> None:
        self.engine, self.platform_id, self.pool, self.strategy = engine, platform_id, pool, strategy
        pool.on_change = self.nudge
        self.publish, self.drain, self.clock = publish, drain, clock
        self.volumes = volumes
        self.image_store = image_store  # where images are built, loaded and pulled; shipped to nodes from there
        self.pulls = ImagePuller(engine, image_store, secrets, clock, self.nudge) if image_store else None
        self.box = secrets
        self.liveness, self.usage, self.problems = liveness or Liveness(), UsageSampler(engine), AppProblems()
        self.tracked: dict[str, Tracked] = {}
        self._creating: set[str] = set()  # the ids of instances whose containers are being created
        self._adopted = False
        self._desired: list[DesiredApp] = []
        self._read = store.DesiredCache()  # the apps as last read: those that read the same are not built again
        self._published: list[RouteSpec] | None = None
        self._busy = False  # the last pass acted: the next one comes soon
        self._unsaved = _Pass()  # removals and events a failed write (a full disk, a lock) left for the next
        self._swept_at = 0.0
        self.building: Callable[[], set[str]] = set  # the tenants with a build running: their networks stay
        self.paused: set[str] = set()  # containers frozen for a backup's copy: not health-checked meanwhile
        self.saved: Callable[[], None] = lambda: None  # after a pass wrote instance rows (other daemons read them)
        self.let_go: LetGo | None = (
            None  # the other daemons' front doors, waited for before a container that served stops
        )
        self._tenants_seen: set[str] = set()  # the tenants with apps last pass: one gone brings a sweep
        self._limit = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sleeper = Sleeper(pool, self.liveness.checker, self._publish, drain, activity, in_flight, clock)

    async def wake(self, tenant: str, name: str) -> str | None:
        """The endpoint of a ready instance of the app, woken first if it sleeps (the front door's activator
        asks, holding a request for it); None when it has none to offer."""
        app = next((a for a in self._desired if (a.tenant, a.name) == (tenant, name)), None)
        if app is None:
            return None
        return await self.sleeper.wake(app, [t for t in self.tracked.values() if t.app_id == app.app_id])

    def sleeps(self) -> dict[tuple[str, str], SleepRead]:
        """Each app's sleep as this daemon knows it: asleep or not, its wake-ups (for the API, in memory)."""
        by_app: dict[int, list[Tracked]] = {}
        for instance in self.tracked.values():
            by_app.setdefault(instance.app_id, []).append(instance)
        return {
            (app.tenant, app.name): self.sleeper.status(app.tenant, app.name, by_app.get(app.app_id, []))
            for app in self._desired
        }

    def nudge(self) -> None:
        """Ask for a pass now (the desired state changed); safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event) -> None:
        """Reconcile until `stopping` is set (or cancelled); a failing pass is logged and retried, never fatal.
        It may run again after (a daemon that leads again): `close` ends what it keeps."""
        self._loop = asyncio.get_running_loop()
        while not stopping.is_set():
            self._wake.clear()  # before the pass: a nudge during it brings the next one at once
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile pass failed; retrying")
            await pause(self._wake, stopping, self._interval())

    def forget(self) -> None:
        """Drop what it knows of the instances (another daemon may act on them before this one runs again): the
        next pass adopts them from their rows and containers, and the meter goes on from the saved positions."""
        self.tracked, self._adopted, self._published = {}, False, None
        self.usage.meter = None

    async def close(self) -> None:
        """End its sleeper's, health checker's and puller's work and connections."""
        await self.sleeper.close()
        await self.liveness.close()
        if self.pulls is not None:
            await self.pulls.close()

    async def reconcile(self) -> None:
        """One pass: observe, plan, act, check health, record."""
        desired, rows, draining = await asyncio.to_thread(self._load)
        with_apps = {app.tenant for app in desired}
        tenants_gone, self._tenants_seen = bool(self._tenants_seen - with_apps), with_apps
        if rows is not None:
            self.tracked = {row.id: Tracked.adopt(row) for row in rows.values()}
            self._adopted = True
        work, waiting = _Pass(), dict[int, float]()  # apps whose image is not pulled yet create nothing (`pulls`)
        if self.pulls is not None:
            desired, waiting = await self.pulls.resolve(desired, work.events, self.problems)
        self._desired, now = desired, self.clock()
        names = {app.app_id: (app.tenant, app.name) for app in desired}
        mark = self.sleeper.starts
        containers = await observe(self.engine, self.platform_id, self.pool, self.tracked, names, now)
        work.removed, found = track(self.tracked, containers, names)
        work.events += found
        await self.sleeper.settle(desired, self.tracked.values(), now)
        woken = self.sleeper.started_since(mark)  # by a request meanwhile: seen stopped, running now
        if woken:
            containers = [replace(c, running=True) if c.instance in woken else c for c in containers]

        observed = Observed(containers, self.tracked, self.pool.views(draining), self.problems.retry_at() | waiting)
        actions = plan(desired, observed, now, self.strategy)
        for failed in await asyncio.gather(*(self._act(action, work) for action in actions), return_exceptions=True):
            if isinstance(failed, Exception):  # one action's failure must not cost the pass its routes and record
                log.error("a reconcile action failed", exc_info=failed)
        self._busy = bool(actions)

        apps = {app.app_id: app for app in desired}
        stopped = {c.instance for c in containers if not c.running}
        checked = [t for t in self.tracked.values() if t.container_id not in self.paused]
        for tracked, verdict in await self.liveness.check(checked, apps, stopped, now):
            work.events += [verdict.event] if verdict.event else []
            if verdict.stop:
                await self._stop(tracked)
        self.problems.settle(desired, self.tracked.values())
        await self.usage.sample(self.pool, list(self.tracked.values()), names)
        self._publish()
        work.events += self.sleeper.events
        self.sleeper.events = []
        await asyncio.to_thread(self._save, work)
        if work.removed or tenants_gone or self.clock() - self._swept_at >= networks.SWEEP_SECONDS:
            self._swept_at = self.clock()
            present = [c for c in containers if c.instance not in work.removed]
            wanted = {a.tenant for a in desired if a.replicas} | self.building()
            await networks.sweep(self.pool, self.platform_id, present, wanted)
            await self._sweep_images(present)

    async def _sweep_images(self, present: list[Container]) -> None:
        """Remove deleted tenants' build images from the image store and the nodes (after their containers)."""
        if self.image_store is None:
            return
        nodes = [node.runtime for node in self.pool if node.reachable and node.capacity is not None]
        runtimes = {id(runtime): runtime for runtime in [self.image_store, *nodes]}
        tenants = await asyncio.to_thread(self._tenant_names)
        await sweep_images(runtimes.values(), self.platform_id, tenants, present)

    def _tenant_names(self) -> set[str]:
        with db.session(self.engine) as session:
            return set(session.exec(select(Tenant.name)))

    def _load(self) -> tuple[list[DesiredApp], dict[str, Instance] | None, set[str]]:
        with db.session(self.engine) as session:
            desired = store.desired_apps(session, self._read)
            rows = None if self._adopted else store.load_instances(session)
            draining = registry.draining(session)
        return desired, rows, draining

    # acting

    async def _act(self, action: Action, work: _Pass) -> None:
        match action:
            case Create(app, node):
                instance = self._new_instance_id()
                try:
                    await self._create(instance, app, self.pool[node], work)
                finally:
                    self._creating.discard(instance)
            case Remove(container, reason):
                await self._remove(container, reason, work)
            case Restart(app, container):
                await self._restart(app, container, work)
            case Crashed():
                await self._record_crash(action, work)
            case Unplaceable(app, reason):
                if self.problems.unplaceable(app, reason):
                    work.event("instance.unschedulable", app.tenant, app=app.name, reason=reason)

    def _new_instance_id(self) -> str:
        """An id that no instance has, nor one being created: of 6 hex digits, 10,000 instances drew one twice."""
        while (instance := secrets.token_hex(3)) in self.tracked or instance in self._creating:
            pass
        self._creating.add(instance)
        return instance

    async def _create(self, instance: str, app: DesiredApp, node: NodeHandle, work: _Pass) -> None:
        network = networks.tenant_network(self.platform_id, app.tenant)
        async with self._limit:
            try:
                async with self._mounts(app, node.name) as mounts:  # none moves until its container exists
                    spec = InstanceSpec(
                        self.platform_id, app.tenant, app.name, app.revision, instance, app.image, app.command,
                        {**app.env, **self._unsealed(app)}, app.port, app.cpu_millicores, app.memory_mib,
                        PIDS_LIMIT, network, mounts, tuple(name for name, _ in app.volumes),
                    )  # fmt: skip
                    await node.runtime.ensure_network(network, spec.network_labels)
                    container = await self._create_container(node.runtime, spec)
            except EngineError as exc:
                delay = self.problems.create_failed(app, str(exc), self.clock())
                detail = {"app": app.name, "node": node.name, "reason": str(exc), "retry_in_seconds": delay}
                work.events.append(ActionEvent("instance.failed", app.tenant, detail))
                return
        self.problems.created(app)
        self.tracked[instance] = Tracked(
            instance, app.app_id, node.name, container.id, app.revision, InstanceState.STARTING, container.endpoint,
            started_at=container.started_at, published=container.published,
        )  # fmt: skip
        detail = {"app": app.name, "instance": instance, "node": node.name, "revision": app.revision}
        work.events.append(ActionEvent("instance.create", app.tenant, {**detail, "endpoint": container.endpoint}))

    async def _create_container(self, runtime: NodeRuntime, spec: InstanceSpec) -> Container:
        """Create the instance's container, shipping its image to the node first if the node lacks it."""
        try:
            return await runtime.create(spec)
        except ImageMissing:
            if self.image_store is None or self.image_store is runtime:
                raise
        await images.ship(spec.image, self.image_store, runtime)
        return await runtime.create(spec)

    def _unsealed(self, app: DesiredApp) -> dict[str, str]:
        """The app's sealed env (a service's password, a binding's DATABASE_URL), decrypted for its container."""
        if not app.sealed_env:
            return {}
        if self.box is None:
            raise EngineError("this platform has no key to decrypt the app's sealed env")
        try:
            return {name: self.box.decrypt(value) for name, value in app.sealed_env}
        except SecretKeyError as exc:
            raise EngineError(str(exc)) from None

    @asynccontextmanager
    async def _mounts(self, app: DesiredApp, node: str) -> AsyncIterator[tuple[Mount, ...]]:
        """The app's volumes as its container on `node` binds them, each mounted there first if it was not
        (after a reboot an unmounted mount point would take the app's writes onto the node's disk, unlimited),
        and kept there for the block: a volume's move waits for the container made in it."""
        if not app.volumes:
            yield ()
            return
        if self.volumes is None:
            raise EngineError("this platform keeps no volumes")
        try:
            async with self.volumes(app.tenant, [name for name, _ in app.volumes], node) as paths:
                yield tuple(Mount(path, target) for path, (_, target) in zip(paths, app.volumes, strict=True))
        except VolumeError as exc:
            raise EngineError(str(exc)) from None

    async def _restart(self, app: DesiredApp, container: Container, work: _Pass) -> None:
        tracked = self.tracked[container.instance]
        async with self._limit:
            try:
                async with self._mounts(app, container.node):
                    started = await self.pool[container.node].runtime.start(container.id)
            except EngineError as exc:
                tracked.restart_at = self.clock() + backoff(tracked.crashes)
                work.event("instance.failed", app.tenant, app=app.name, instance=tracked.id, reason=str(exc))
                return
        tracked.restarts += 1
        tracked.restart_at, tracked.checked_at = None, 0.0
        tracked.endpoint, tracked.published = started.endpoint, started.published
        tracked.started_at = started.started_at
        work.event("instance.restart", app.tenant, app=app.name, instance=tracked.id, restarts=tracked.restarts)

    async def _record_crash(self, crash: Crashed, work: _Pass) -> None:
        """Apply a crash to its instance and say why in its message (its last output, when it exited itself)."""
        tracked, container, app = self.tracked[crash.container.instance], crash.container, crash.app
        tracked.crashes, tracked.restart_at, tracked.state = crash.crashes, crash.restart_at, crash.state
        tracked.failures = 0
        delay = round(crash.restart_at - self.clock())
        detail = {"app": app.name, "instance": tracked.id, "exit_code": container.exit_code, "crashes": crash.crashes}
        work.events.append(ActionEvent("instance.crashed", app.tenant, {**detail, "restart_in_seconds": delay}))
        times = f"{crash.crashes} times in a row" if crash.crashes > 1 else "once"
        if tracked.stopped_because:  # the reconciler stopped it: that is why
            tracked.message, tracked.stopped_because = f"{tracked.stopped_because}; restarted {times}", None
            return
        tracked.message = f"exited with code {container.exit_code}, {times}"
        try:
            lines = await last_lines(self.pool[container.node].runtime, container.id, LAST_OUTPUT_LINES)
        except EngineError as exc:
            log.warning("reading the output of %s: %s", tracked.id, exc)
            return
        if lines:
            tracked.message += "; last output: " + " | ".join(lines)

    async def _remove(self, container: Container, reason: str, work: _Pass) -> None:
        tracked = self.tracked.get(container.instance)
        was = tracked.state if tracked is not None else None
        if tracked is not None:
            tracked.state = InstanceState.STOPPING
            was_serving = was == InstanceState.READY
            if was_serving and tracked.endpoint and self.drain is not None:
                self._publish()  # out of the routes first...
                drained, _ = await asyncio.gather(  # ...then its requests in flight finish, at every door
                    self.drain(tracked.endpoint), self._others_let_go(tracked.id)
                )
                if not drained:
                    log.warning("instance %s still had requests in flight after the drain timeout", tracked.id)
        async with self._limit:
            try:
                await self.pool[container.node].runtime.remove(container.id)
            except EngineError as exc:
                log.warning("removing %s: %s", container.instance, exc)
                if tracked is not None and was is not None:
                    tracked.state = was  # judged as before, and planned again next pass
                    tracked.saved = None  # its row may say stopping (for the other doors): written again
                return
        detail = {"app": container.app, "instance": container.instance, "node": container.node, "reason": reason}
        work.events.append(ActionEvent("instance.remove", container.tenant, detail))
        if self.tracked.pop(container.instance, None) is not None:
            work.removed.append(container.instance)

    async def _others_let_go(self, instance: str) -> None:
        """Wait for the other daemons' front doors to let go of the instance (a failure to learn it is logged: the
        container stops all the same, as after their timeout)."""
        if self.let_go is None:
            return
        try:
            await self.let_go(instance)
        except Exception as exc:  # noqa: BLE001 - the database out of reach a moment: not worth a stuck removal
            log.warning("whether the other front doors let go of %s is not known: %s", instance, exc)

    async def _stop(self, tracked: Tracked) -> None:
        """Stop an instance that failed liveness; the next pass restarts it as a crashed one."""
        if tracked.node not in self.pool:
            return  # its node went meanwhile: so did it
        try:
            await self.pool[tracked.node].runtime.stop(tracked.container_id)
        except EngineError as exc:
            log.warning("stopping unhealthy %s: %s", tracked.id, exc)

    # recording

    def _interval(self) -> float:
        """Look again soon while something is in motion: starting instances, pending restarts, a roll."""
        hurried = self._busy or any(
            t.state in (InstanceState.STARTING, InstanceState.CRASHLOOP) or t.restart_at is not None
            for t in self.tracked.values()
        )
        return FAST_PASS_INTERVAL_SECONDS if hurried else PASS_INTERVAL_SECONDS

    def _publish(self) -> None:
        """Tell the front door each app's ready endpoints, if anything changed since the last time."""
        served = routes(self._desired, self.tracked.values())
        if self.publish is not None and served != self._published:
            self._published = served
            self.publish(served)

    def _save(self, work: _Pass) -> None:
        work = _Pass(self._unsaved.events + work.events, self._unsaved.removed + work.removed)
        changed = [(t, snapshot) for t in self.tracked.values() if (snapshot := t.snapshot()) != t.saved]
        problems = self.problems.unsaved()
        if changed or work.removed or work.events or problems:
            self._unsaved = work
            with db.session(self.engine) as session:
                store.record(session, [t.row() for t, _ in changed], work.removed, work.events, problems)
            self._unsaved = _Pass()
            for tracked, snapshot in changed:  # only once written: a failed write is tried again next pass
                tracked.saved = snapshot
            self.problems.saved(problems)
            if changed or work.removed:
                self.saved()
        for event in work.events:
            log.info("%s %s %s", event.action, event.tenant, event.detail)
