"""The reconciler's decisions, apart from everything it does: a pure function of the apps as desired, the
containers as found, what is remembered of each instance, and the time.

`plan` returns values (create, remove, restart, a crash to record, an app that cannot be placed); the
reconciler carries them out. No engine, no database, no clock of its own, so the rules are tested as tables
(`tests/unit/test_planner.py`). Per app:
- a crashed instance of the current revision is recorded (crashes in a row, `crashloop` from the third) and
  restarted after an exponential backoff: 1, 2, 4 ... 60 s;
- surplus instances go, least useful first (not ready before ready, then the newest); so does every container
  of an app that no longer exists, and every instance of an app scaled to zero;
- missing instances are created where the scheduler places them, all at once, unless creating is backing off
  after failures, or a roll is under way;
- a new revision rolls one instance at a time: one new instance is added, and an old ready one removed only
  once a new one is ready, so the app never has fewer ready instances than its replicas; old instances that are
  not ready go at once. Instances on a draining node are replaced the same way.
- an app with volumes (one replica) is replaced stop-then-start, never two writers of its data, on the node
  its volumes are on, draining or not; and it starts no instance while a container of another app still mounts
  one of them.
- an instance stopped because its app sleeps (`sleep`) is no crash: it stays as it is until woken.
"""

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache

from hosting.paas.runtime import Container
from hosting.paas.scheduler import NodeView, NoFit, Request, Scheduler, Strategy
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState, Isolation
from tenants.instances import DesiredApp

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
CRASHLOOP_AFTER_CRASHES = 3

AppKey = tuple[str, str]  # (tenant, app)


def backoff(failures: int) -> float:
    """Seconds to wait after the `failures`-th failure in a row: 1, 2, 4, ... up to the cap."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_CAP_SECONDS)


@dataclass(frozen=True)
class Observed:
    """What a pass found: every container (those of unreachable nodes as last seen), what is remembered of each
    instance, the nodes as placement sees them (their claims are counted here), and when each app whose
    creates failed may try again (monotonic)."""

    containers: Sequence[Container]
    tracked: Mapping[str, Tracked]
    nodes: Sequence[NodeView]
    retry_at: Mapping[int, float]


@dataclass(frozen=True)
class Create:
    app: DesiredApp
    node: str


@dataclass(frozen=True)
class Unplaceable:
    app: DesiredApp
    reason: str


@dataclass(frozen=True)
class Remove:
    """Remove a container; a ready instance leaves the routes and is drained first."""

    container: Container
    reason: str


@dataclass(frozen=True)
class Restart:
    app: DesiredApp
    container: Container


@dataclass(frozen=True)
class Crashed:
    """A crash to record: the count in a row, when to restart, and the state until then."""

    app: DesiredApp
    container: Container
    crashes: int
    restart_at: float
    state: InstanceState


Action = Create | Unplaceable | Remove | Restart | Crashed


def plan(desired: Sequence[DesiredApp], observed: Observed, now: float, strategy: Strategy) -> list[Action]:
    """Everything to do this pass, in order; placements claim their node's room as they are made."""
    wanted = {(app.tenant, app.name): app for app in desired}
    by_app: dict[AppKey, list[Container]] = defaultdict(list)
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)  # (tenant, volume) -> apps whose containers mount it
    for container in observed.containers:
        by_app[(container.tenant, container.app)].append(container)
        for volume in container.volumes:
            holders[(container.tenant, volume)].add(container.app)
    actions: list[Action] = [
        Remove(container, "orphan") for key, found in by_app.items() if key not in wanted for container in found
    ]
    # Built at the first placement (most passes place nothing): from the claims as found, as then nothing else
    # has claimed room yet
    scheduler = cache(lambda: Scheduler(_claimed(observed.nodes, desired, by_app), strategy))
    draining = {node.name for node in observed.nodes if node.draining}
    for app in desired:
        found = by_app.get((app.tenant, app.name), [])
        actions += _plan_app(app, found, observed, scheduler, draining, now, _held(app, holders))
    # A container remembered from a node that does not answer (or is not attached yet) cannot be removed now:
    # it is, once its node answers again (or counts as lost, and the container with it).
    return [a for a in actions if not (isinstance(a, Remove) and a.container.remembered)]


def _plan_app(
    app: DesiredApp,
    found: list[Container],
    observed: Observed,
    scheduler: Callable[[], Scheduler],
    draining: set[str],
    now: float,
    held: str | None = None,
) -> list[Action]:
    def state(container: Container) -> InstanceState | None:
        tracked = observed.tracked.get(container.instance)
        return tracked.state if tracked else None

    if app.volumes:
        draining = set()  # its data stays on its node: so does its instance (`strata volumes move` moves both)
    if len(found) == app.replicas and all(
        c.running and c.revision == app.revision and c.node not in draining for c in found
    ):
        return []  # as asked, every instance running: nothing below would act (most apps, most passes)
    current = [c for c in found if c.revision == app.revision and c.node not in draining]
    old = [c for c in found if c.revision != app.revision or c.node in draining]
    actions: list[Action] = []
    live = []
    for container in current:
        if container.running:
            live.append(container)
        elif app.replicas > 0:
            live.append(container)
            if state(container) != InstanceState.STOPPED:  # else its app sleeps: started by its next request
                actions += _crashed(app, container, observed.tracked.get(container.instance), now)
        else:
            actions.append(Remove(container, "scaled to zero"))

    if len(live) > app.replicas:
        surplus = sorted(live, key=lambda c: _usefulness(c, state(c)))[: len(live) - app.replicas]
        actions += [Remove(c, "scale down") for c in surplus]
    elif len(live) < app.replicas and now >= observed.retry_at.get(app.app_id, 0.0):
        rolling = bool(old)
        if app.volumes and rolling:
            pass  # stopped first, started once it is gone: never two writers of one volume
        elif held is not None:
            actions.append(Unplaceable(app, held))
        elif not rolling or all(state(c) == InstanceState.READY for c in live):
            actions += _place(app, scheduler(), 1 if rolling else app.replicas - len(live))

    if app.volumes:
        return [*actions, *(Remove(c, "old revision (stopped before the new one starts: one writer)") for c in old)]
    ready_new = sum(1 for c in live if state(c) == InstanceState.READY)
    ready_old = sorted((c for c in old if state(c) == InstanceState.READY), key=lambda c: c.revision)
    actions += [Remove(c, "old revision") for c in old if state(c) != InstanceState.READY]
    while ready_old and ready_new + len(ready_old) > app.replicas:
        actions.append(Remove(ready_old.pop(0), "replaced by a new revision"))
    return actions


def _held(app: DesiredApp, holders: Mapping[tuple[str, str], set[str]]) -> str | None:
    """Why the app may not start an instance yet: a container of another app still mounts one of its volumes (it
    mounted it in an older revision, and is going). None when it may."""
    for volume, _ in app.volumes:
        others = sorted(holders.get((app.tenant, volume), set()) - {app.name})
        if others:
            return (
                f"volume {volume} is still mounted by an instance of app {others[0]}: it starts once that one is gone"
            )
    return None


def _crashed(app: DesiredApp, container: Container, tracked: Tracked | None, now: float) -> list[Action]:
    """Record a crash when first seen; restart once its backoff has passed."""
    if tracked is None:
        return []
    if tracked.restart_at is None:
        crashes = tracked.crashes + 1
        state = InstanceState.CRASHLOOP if crashes >= CRASHLOOP_AFTER_CRASHES else InstanceState.STARTING
        return [Crashed(app, container, crashes, now + backoff(crashes), state)]
    return [Restart(app, container)] if now >= tracked.restart_at else []


def _place(app: DesiredApp, scheduler: Scheduler, count: int) -> list[Action]:
    """Up to `count` placements; what does not fit is said once (the rest would not fit either)."""
    request = Request(
        app.tenant, app.name, app.isolation == Isolation.DEDICATED, app.cpu_millicores, app.memory_mib,
        app.volume_node,
    )  # fmt: skip
    actions: list[Action] = []
    for _ in range(count):
        target = scheduler.place(request)
        if isinstance(target, NoFit):
            return [*actions, Unplaceable(app, target.reason)]
        actions.append(Create(app, target.name))
    return actions


def _usefulness(container: Container, state: InstanceState | None) -> tuple[int, float]:
    """Sort key, least useful first: not ready before ready, then the newest."""
    started = container.started_at.timestamp() if container.started_at else float("inf")
    return (1 if state == InstanceState.READY else 0, -started)


def _claimed(
    nodes: Sequence[NodeView], desired: Sequence[DesiredApp], by_app: Mapping[AppKey, list[Container]]
) -> list[NodeView]:
    """The nodes with what the instances of wanted apps found on them claim (orphans claim nothing)."""
    cpu: dict[str, int] = {}
    memory: dict[str, int] = {}
    instances: dict[str, dict[AppKey, int]] = {}
    for app in desired:
        key = (app.tenant, app.name)
        for container in by_app.get(key, ()):
            node = container.node
            cpu[node] = cpu.get(node, 0) + app.cpu_millicores
            memory[node] = memory.get(node, 0) + app.memory_mib
            counts = instances.setdefault(node, {})
            counts[key] = counts.get(key, 0) + 1
    return [
        replace(
            node,
            allocated_cpu_millicores=node.allocated_cpu_millicores + cpu.get(node.name, 0),
            allocated_memory_mib=node.allocated_memory_mib + memory.get(node.name, 0),
            instances=instances.get(node.name, {}),
        )
        for node in nodes
    ]
