"""Apps put to sleep and woken: the reconciler carries out `sleep.decide`, and the front door's activator asks
for an app woken when a request comes for it while it sleeps.

Putting an app to sleep never cuts a request: its instances leave the routes first (the front door then hands
the app's requests to its activator), each is drained (no request in flight to it), and only then frozen. A
wake and a sleep of one app take turns (a lock per app): a request that comes while its app is being put to
sleep waits at the activator and wakes it again. Every request the activator holds or proxies counts as in
flight (`in_flight`), so an app with one never sleeps.
"""

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hosting.paas.health import OK, HealthChecker
from hosting.paas.nodes import NodePool
from hosting.paas.runtime import EngineError
from hosting.paas.sleep import Step, asleep, decide
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState
from tenants.instances import ActionEvent, DesiredApp
from tenants.routes import Activity
from tenants.schemas import SleepRead

log = logging.getLogger(__name__)

WAKE_TIMEOUT_SECONDS = 30.0  # a stopped instance that is not healthy by then is left to the reconciler
WAKE_POLL_SECONDS = 0.01  # between health checks of a stopped instance started again
# Upper bounds (seconds) of the cold-start histogram's buckets; the last one is +Inf.
COLD_START_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))

AppKey = tuple[str, str]  # (tenant, app)
ActivitySource = Callable[[], Awaitable[Mapping[AppKey, Activity] | None]]  # None: the front door is silent
InFlight = Callable[[str, str], int]
Drain = Callable[[str], Awaitable[bool]]


@dataclass
class _Sleep:
    """One app's sleep as this daemon knows it: when it was last active (monotonic), its wake-ups."""

    last_active: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wakeups: int = 0
    last_wake_seconds: float | None = None


@dataclass
class ColdStarts:
    """A histogram of how long wake-ups held their app's first request, per (tenant, state woken from): the
    count in each bucket of `COLD_START_BUCKETS` (not cumulative), and the sum of the seconds."""

    counts: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    sums: dict[tuple[str, str], float] = field(default_factory=dict)

    def observe(self, tenant: str, woken_from: str, seconds: float) -> None:
        key = (tenant, woken_from)
        self.counts.setdefault(key, [0] * len(COLD_START_BUCKETS))[bisect.bisect_left(COLD_START_BUCKETS, seconds)] += 1
        self.sums[key] = self.sums.get(key, 0.0) + seconds


class Sleeper:
    """`activity` reads the front door's traffic per app; `in_flight` counts the requests its activator holds
    or proxies for an app; `publish` makes the reconciler publish its routes again."""

    def __init__(
        self,
        pool: NodePool,
        checker: HealthChecker,
        publish: Callable[[], None],
        drain: Drain | None,
        activity: ActivitySource | None,
        in_flight: InFlight,
        clock: Callable[[], float],
    ) -> None:
        self.pool, self.checker, self.publish, self.drain = pool, checker, publish, drain
        self.activity, self.in_flight, self.clock = activity, in_flight, clock
        self.cold_starts = ColdStarts()
        self.events: list[ActionEvent] = []  # recorded by the reconciler's next pass
        self._apps: dict[AppKey, _Sleep] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.starts = 0  # containers a wake started so far: a pass's mark (`started_since`)
        self._started: dict[str, int] = {}  # instance id -> the count of starts when a wake started it

    def status(self, tenant: str, app: str, instances: Iterable[Tracked]) -> SleepRead:
        known = self._apps.get((tenant, app))
        state = asleep(list(instances))
        wake_ms = known.last_wake_seconds * 1000 if known and known.last_wake_seconds is not None else None
        return SleepRead(state=state or "awake", wakeups=known.wakeups if known else 0, last_wake_ms=wake_ms)

    async def settle(self, desired: Sequence[DesiredApp], tracked: Iterable[Tracked], now: float) -> None:
        """One pass: note each app's activity, wake at once the sleeping apps whose desired state changed (so
        the planner sees them awake), and start putting idle ones to sleep (in the background: a drain waits)."""
        traffic = await self.activity() if self.activity is not None else None
        by_app: dict[int, list[Tracked]] = {}
        for instance in tracked:
            by_app.setdefault(instance.app_id, []).append(instance)
        self._apps = {(a.tenant, a.name): self._apps.get((a.tenant, a.name)) or _Sleep(now) for a in desired}
        for app in desired:
            sleep, seen = self._apps[(app.tenant, app.name)], (traffic or {}).get((app.tenant, app.name))
            in_flight = self.in_flight(app.tenant, app.name) + (seen.in_flight if seen else 0)
            if in_flight:
                sleep.last_active = now
            elif seen is not None and seen.idle_seconds is not None:
                sleep.last_active = max(sleep.last_active, now - seen.idle_seconds)
            if sleep.lock.locked():
                continue  # being put to sleep or woken
            instances = by_app.get(app.app_id, [])
            idle = now - sleep.last_active if traffic is not None else 0.0  # unknown: never idle
            may_stop = not any(self.pool[t.node].vm for t in instances if t.node in self.pool)
            match decide(app, instances, idle, in_flight, may_stop=may_stop):
                case Step.WAKE:
                    await self._wake(app, instances, sleep)
                case Step.PAUSE:
                    self._start(self._pause(app, instances, sleep))
                case Step.STOP:
                    self._start(self._stop(app, instances, sleep))

    async def wake(self, app: DesiredApp, instances: Sequence[Tracked]) -> str | None:
        """An endpoint of a ready instance of `app`, woken first if it sleeps; None when it has none (not
        sleeping and not ready, or it failed to wake: the reconciler takes it on)."""
        sleep = self._apps.setdefault((app.tenant, app.name), _Sleep(self.clock()))
        return await self._wake(app, instances, sleep)

    def started_since(self, mark: int) -> set[str]:
        """The instances whose containers a wake started after `mark` (a value of `starts`): a pass that observed
        them before saw them stopped, and must not take them for crashed. Forgets earlier starts (a pass asks
        once, passes one after another)."""
        self._started = {instance: start for instance, start in self._started.items() if start > mark}
        return set(self._started)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, step: Awaitable[None]) -> None:
        task = asyncio.ensure_future(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, app: DesiredApp, instances: Sequence[Tracked], sleep: _Sleep) -> str | None:
        async with sleep.lock:
            sleep.last_active = self.clock()
            woken_from = asleep(instances)
            if woken_from is not None:
                started = time.monotonic()
                await asyncio.gather(*(self._wake_one(app, t) for t in instances))
                self.publish()
                sleep.wakeups += 1
                sleep.last_wake_seconds = time.monotonic() - started
                self.cold_starts.observe(app.tenant, woken_from, sleep.last_wake_seconds)
                ms = round(sleep.last_wake_seconds * 1000, 1)
                self._event("app.wake", app, woken_from=str(woken_from), ms=ms)
            ready = [t.endpoint for t in instances if t.state == InstanceState.READY and t.endpoint]
            return ready[0] if ready else None

    async def _wake_one(self, app: DesiredApp, instance: Tracked) -> None:
        runtime = self.pool[instance.node].runtime
        try:
            if instance.state == InstanceState.PAUSED:
                await runtime.unpause(instance.container_id)
            elif instance.state == InstanceState.STOPPED:
                started = await runtime.start(instance.container_id)
                self.starts += 1
                self._started[instance.id] = self.starts
                instance.endpoint, instance.published = started.endpoint, started.published
                instance.started_at = started.started_at
                await self._healthy(app, instance)
        except (EngineError, TimeoutError) as exc:
            log.warning("waking %s of %s/%s: %s", instance.id, app.tenant, app.name, exc)
            instance.state, instance.checked_at = InstanceState.STARTING, 0.0  # the reconciler judges it
            return
        instance.state, instance.checked_at, instance.failures = InstanceState.READY, self.clock(), 0

    async def _healthy(self, app: DesiredApp, instance: Tracked) -> None:
        """Wait until the started instance passes its health check (its port may accept before its app does)."""
        async with asyncio.timeout(WAKE_TIMEOUT_SECONDS):
            while instance.endpoint is None or await self.checker.check(
                instance.endpoint, app.health_path, app.kind
            ) != OK:  # fmt: skip
                await asyncio.sleep(WAKE_POLL_SECONDS)

    async def _pause(self, app: DesiredApp, instances: Sequence[Tracked], sleep: _Sleep) -> None:
        async with sleep.lock:
            if self.in_flight(app.tenant, app.name) or asleep(instances):
                return
            for instance in instances:
                instance.state = InstanceState.PAUSED  # out of the routes: the activator takes its requests
            self.publish()
            try:
                if not await self._drained(app, instances):
                    raise EngineError("a request came meanwhile, or one in flight outlasted the drain")
                for instance in instances:
                    await self.pool[instance.node].runtime.pause(instance.container_id)
            except EngineError as exc:
                log.info("%s/%s stays awake: %s", app.tenant, app.name, exc)
                await self._unpause(instances)
                self.publish()
                return
            self._event("app.sleep", app, state=str(InstanceState.PAUSED))

    async def _drained(self, app: DesiredApp, instances: Sequence[Tracked]) -> bool:
        """Drain every instance (no request in flight to it), unless a request for the app comes to the
        activator first: then the sleep is called off at once, rather than after the drain, and it is served."""
        drains = [self.drain(t.endpoint) for t in instances if t.endpoint] if self.drain is not None else []
        draining = asyncio.ensure_future(asyncio.gather(*drains))
        while not draining.done():
            if self.in_flight(app.tenant, app.name):
                draining.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await draining
                return False
            await asyncio.wait([draining], timeout=WAKE_POLL_SECONDS)
        if (failed := draining.exception()) is not None:  # the front door's (HAProxy did not answer)
            log.warning("draining %s/%s: %s", app.tenant, app.name, failed)
            return False
        return all(draining.result()) and not self.in_flight(app.tenant, app.name)

    async def _unpause(self, instances: Sequence[Tracked]) -> None:
        for instance in instances:
            try:
                await self.pool[instance.node].runtime.unpause(instance.container_id)
            except EngineError:
                pass  # it was never paused
            instance.state = InstanceState.READY

    async def _stop(self, app: DesiredApp, instances: Sequence[Tracked], sleep: _Sleep) -> None:
        async with sleep.lock:
            if self.in_flight(app.tenant, app.name) or asleep(instances) != InstanceState.PAUSED:
                return
            for instance in instances:
                runtime = self.pool[instance.node].runtime
                try:
                    await runtime.unpause(instance.container_id)  # a graceful stop: it gets its SIGTERM
                    await runtime.stop(instance.container_id)
                except EngineError as exc:
                    log.warning("stopping sleeping %s: %s", instance.id, exc)
                instance.state = InstanceState.STOPPED  # stopped or not, started by its wake as one
            self._event("app.sleep", app, state=str(InstanceState.STOPPED))

    def _event(self, action: str, app: DesiredApp, **detail: object) -> None:
        self.events.append(ActionEvent(action, app.tenant, {"app": app.name, **detail}))
