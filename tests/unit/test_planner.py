"""The planner's rules as tables: desired apps and observed containers in, actions out. No Docker, no clock."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hosting.paas.nodes import NODE_LOST_AFTER_SECONDS, NodePool
from hosting.paas.planner import (
    BACKOFF_CAP_SECONDS,
    Action,
    Crashed,
    Create,
    Observed,
    Remove,
    Restart,
    Unplaceable,
    backoff,
    plan,
)
from hosting.paas.runtime import Container
from hosting.paas.scheduler import NodeView, Strategy
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState
from tenants.instances import DesiredApp
from tests.unit.desired import desired_app

READY, STARTING, CRASHLOOP, UNHEALTHY = (
    InstanceState.READY,
    InstanceState.STARTING,
    InstanceState.CRASHLOOP,
    InstanceState.UNHEALTHY,
)
NOW = 1000.0
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)


def app(name: str = "web", replicas: int = 3, revision: int = 1, **changes: object) -> DesiredApp:
    return desired_app(name, replicas=replicas, revision=revision, **changes)


def node(name: str = "n1", memory: int = 4096, cpu: int = 2000, **changes: object) -> NodeView:
    return replace(NodeView(name, True, cpu, memory, 0, 0), **changes)  # type: ignore[arg-type]  # by name


class World:
    """Containers and what is remembered of them, built up by a test."""

    def __init__(self) -> None:
        self.containers: list[Container] = []
        self.tracked: dict[str, Tracked] = {}

    def add(
        self,
        of: DesiredApp,
        instance: str,
        state: InstanceState = READY,
        *,
        revision: int | None = None,
        node: str = "n1",
        running: bool = True,
        started: int = 0,
        remembered: bool = False,
        **tracked: object,
    ) -> Container:
        revision = revision or of.revision
        started_at = EPOCH + timedelta(seconds=started)
        container = Container(
            node, f"c-{instance}", of.tenant, of.name, revision, instance, running, None if running else 1,
            started_at, f"127.0.0.1:{len(self.containers) + 20000}", remembered=remembered,
        )  # fmt: skip
        self.containers.append(container)
        self.tracked[instance] = Tracked(
            instance, of.app_id, node, container.id, revision, state, container.endpoint, started_at=started_at
        )
        for key, value in tracked.items():
            setattr(self.tracked[instance], key, value)
        return container

    def plan(
        self,
        *apps: DesiredApp,
        nodes: list[NodeView] | None = None,
        retry_at: dict[int, float] | None = None,
        now: float = NOW,
    ) -> list[Action]:
        observed = Observed(self.containers, self.tracked, nodes or [node()], retry_at or {})
        return plan(list(apps), observed, now, Strategy.SPREAD)


def kinds(actions: list[Action]) -> list[str]:
    return [type(action).__name__ for action in actions]


def removed(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.container.instance, a.reason) for a in actions if isinstance(a, Remove)]


# creating and removing


def test_a_new_app_gets_all_its_replicas_at_once() -> None:
    assert World().plan(app(replicas=3)) == [Create(app(replicas=3), "n1")] * 3


def test_an_app_as_desired_needs_nothing() -> None:
    world, web = World(), app()
    for name in "abc":
        world.add(web, name)
    assert world.plan(web) == []


def test_surplus_goes_least_useful_first_not_ready_then_newest() -> None:
    world, web = World(), app(replicas=2)
    world.add(web, "old-ready", started=0)
    world.add(web, "new-ready", started=10)
    world.add(web, "starting", STARTING, started=5)
    world.add(web, "newest-ready", started=20)
    assert removed(world.plan(web)) == [("starting", "scale down"), ("newest-ready", "scale down")]


def test_scaled_to_zero_removes_even_exited_instances() -> None:
    world, web = World(), app(replicas=0)
    world.add(web, "a")
    world.add(web, "b", running=False)
    assert sorted(removed(world.plan(web))) == [("a", "scale down"), ("b", "scaled to zero")]


def test_a_container_of_an_app_that_no_longer_exists_is_an_orphan() -> None:
    world = World()
    world.add(app("gone"), "x")
    assert removed(world.plan(app("web", replicas=0))) == [("x", "orphan")]


def test_orphans_claim_no_room_on_their_node() -> None:
    world = World()
    for index in range(8):  # 8 x 512 MiB: the node would be full if they counted
        world.add(app("gone", memory_mib=512), f"x{index}")
    actions = world.plan(app(replicas=1), nodes=[node(memory=4096)])
    assert kinds(actions).count("Create") == 1


def test_replicas_spread_over_nodes() -> None:
    actions = World().plan(app(replicas=2), nodes=[node("n1"), node("n2")])
    assert sorted(a.node for a in actions if isinstance(a, Create)) == ["n1", "n2"]


# crashes


@pytest.mark.parametrize(
    "failures, delay", [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 60), (20, BACKOFF_CAP_SECONDS)]
)
def test_backoff_doubles_up_to_its_cap(failures: int, delay: float) -> None:
    assert backoff(failures) == delay


@pytest.mark.parametrize(
    "crashes_before, restart_in, state", [(0, 1, STARTING), (1, 2, STARTING), (2, 4, CRASHLOOP), (9, 60, CRASHLOOP)]
)
def test_a_crash_is_recorded_with_its_backoff_and_crashloop_from_the_third(
    crashes_before: int, restart_in: float, state: InstanceState
) -> None:
    world, web = World(), app(replicas=1)
    exited = world.add(web, "a", STARTING, running=False, crashes=crashes_before)
    assert world.plan(web) == [Crashed(web, exited, crashes_before + 1, NOW + restart_in, state)]


def test_a_crashed_instance_is_restarted_once_its_backoff_has_passed() -> None:
    world, web = World(), app(replicas=1)
    exited = world.add(web, "a", CRASHLOOP, running=False, crashes=3, restart_at=NOW + 4)
    assert world.plan(web) == []
    assert world.plan(web, now=NOW + 4) == [Restart(web, exited)]


def test_a_crashed_instance_still_counts_as_a_replica() -> None:
    world, web = World(), app(replicas=2)
    world.add(web, "a")
    world.add(web, "b", CRASHLOOP, running=False, crashes=3, restart_at=NOW + 30)
    assert world.plan(web) == []  # nothing created beside it while it waits to restart


def test_failed_creates_back_off() -> None:
    web = app(replicas=1)
    assert World().plan(web, retry_at={web.app_id: NOW + 2}) == []
    assert World().plan(web, retry_at={web.app_id: NOW + 2}, now=NOW + 2) == [Create(web, "n1")]


# placement refused


def test_what_fits_nowhere_is_said_once() -> None:
    web = app(replicas=3, isolation="dedicated")
    [refused] = World().plan(web, nodes=[node("shared1"), node("shared2")])
    assert isinstance(refused, Unplaceable) and "tenant acme is dedicated and has no VM node" in refused.reason


def test_what_fits_is_placed_and_the_rest_refused() -> None:
    web = app(replicas=3, memory_mib=1024)
    actions = World().plan(web, nodes=[node(memory=2048)])
    assert kinds(actions) == ["Create", "Create", "Unplaceable"]
    assert actions[2].reason == "no node fits: 1 short of memory (need 1024 MiB)"  # type: ignore[union-attr]


# rolling deploys


def test_a_roll_starts_with_one_new_instance() -> None:
    world, v2 = World(), app(revision=2)
    for name in "abc":
        world.add(v2, name, revision=1)
    assert world.plan(v2) == [Create(v2, "n1")]


def test_a_roll_waits_while_the_new_instance_is_not_ready() -> None:
    world, v2 = World(), app(revision=2)
    for name in "abc":
        world.add(v2, name, revision=1)
    world.add(v2, "new", STARTING)
    assert world.plan(v2) == []


def test_a_ready_new_instance_replaces_the_oldest_revision_and_brings_the_next() -> None:
    world, v3 = World(), app(revision=3)
    world.add(v3, "v1", revision=1)
    world.add(v3, "v2a", revision=2)
    world.add(v3, "v2b", revision=2)
    world.add(v3, "new")
    actions = world.plan(v3)
    assert removed(actions) == [("v1", "replaced by a new revision")]
    assert kinds(actions).count("Create") == 1


def test_old_instances_that_are_not_ready_go_at_once() -> None:
    world, v2 = World(), app(revision=2, replicas=2)
    world.add(v2, "old-sick", UNHEALTHY, revision=1)
    world.add(v2, "old-ok", revision=1)
    world.add(v2, "new", STARTING)
    assert removed(world.plan(v2)) == [("old-sick", "old revision")]


@pytest.mark.parametrize("stuck", [STARTING, UNHEALTHY, CRASHLOOP])
def test_a_revision_that_never_gets_healthy_leaves_the_old_one_serving(stuck: InstanceState) -> None:
    world, v2 = World(), app(revision=2, replicas=2)
    world.add(v2, "old1", revision=1)
    world.add(v2, "old2", revision=1)
    world.add(v2, "new", stuck, running=stuck != CRASHLOOP, restart_at=NOW + 30 if stuck == CRASHLOOP else None)
    assert removed(world.plan(v2)) == []


def simulate_roll(world: World, desired: DesiredApp, *, nodes: list[NodeView] | None = None) -> list[int]:
    """Apply the plans pass after pass (a created instance is ready by the next pass); the ready count of each."""
    counts, made = [], 0
    for step in range(50):
        actions = world.plan(desired, nodes=nodes, now=NOW + step)
        for action in actions:
            if isinstance(action, Remove):
                world.containers.remove(action.container)
                del world.tracked[action.container.instance]
        for action in actions:
            if isinstance(action, Create):
                made += 1
                world.add(desired, f"made{made}", node=action.node)
        counts.append(sum(1 for t in world.tracked.values() if t.state == READY))
        if not actions:
            return counts
    raise AssertionError("the roll never settled")


def test_a_rolling_deploy_never_has_fewer_ready_instances_than_replicas() -> None:
    world, v2 = World(), app(revision=2, replicas=4)
    for index in range(4):
        world.add(v2, f"old{index}", revision=1)
    counts = simulate_roll(world, v2)
    assert min(counts) >= 4
    assert {c.revision for c in world.containers} == {2} and len(world.containers) == 4


def test_draining_starts_the_replacement_before_removing() -> None:
    world, web = World(), app(replicas=2)
    world.add(web, "a", node="old")
    world.add(web, "b", node="old")
    nodes = [node("old", draining=True), node("new")]
    assert world.plan(web, nodes=nodes) == [Create(web, "new")]  # one at a time, none removed yet
    counts = simulate_roll(world, web, nodes=nodes)
    assert min(counts) >= 2 and {c.node for c in world.containers} == {"new"}


# apps with volumes: one writer, on the node of their data


def with_volume(**changes: object) -> DesiredApp:
    return app(replicas=1, volumes=(("data", "/var/lib/web"),), volume_node="n2", **changes)


def test_an_app_with_a_volume_is_placed_on_its_volumes_node_only() -> None:
    web = with_volume()
    assert World().plan(web, nodes=[node("n1", memory=8192), node("n2")]) == [Create(web, "n2")]
    actions = World().plan(web, nodes=[node("n1"), node("n2", ready=False)])
    assert actions == [Unplaceable(web, "no node fits: its volumes are on node n2, which is not ready")]


def test_a_new_revision_of_an_app_with_a_volume_stops_the_old_instance_before_starting_one() -> None:
    world, v2 = World(), with_volume(revision=2)
    world.add(v2, "old", revision=1, node="n2")
    nodes = [node("n1"), node("n2")]
    assert removed(world.plan(v2, nodes=nodes)) == [
        ("old", "old revision (stopped before the new one starts: one writer)")
    ]
    assert kinds(world.plan(v2, nodes=nodes)) == ["Remove"]  # still there (draining): nothing is created beside it
    world.containers.clear()
    world.tracked.clear()
    assert world.plan(v2, nodes=nodes) == [Create(v2, "n2")]


def test_an_app_with_a_volume_stays_on_its_draining_node() -> None:
    world, web = World(), with_volume()
    world.add(web, "a", node="n2")
    assert world.plan(web, nodes=[node("n1"), node("n2", draining=True)]) == []
    world.containers.clear()
    world.tracked.clear()
    assert world.plan(web, nodes=[node("n1"), node("n2", draining=True)]) == [Create(web, "n2")]


def test_an_app_with_a_volume_waits_while_another_apps_container_still_mounts_it() -> None:
    """A volume moved from app old to app web: old's last container (an older revision) still mounts it."""
    world, web, old = World(), with_volume(), app("old", replicas=1)
    world.containers.append(replace(world.add(old, "x", node="n2"), volumes=("data",)))
    world.containers.pop(-2)
    nodes = [node("n1"), node("n2")]
    waiting = "volume data is still mounted by an instance of app old: it starts once that one is gone"
    assert world.plan(web, old, nodes=nodes) == [Unplaceable(web, waiting)]
    world.containers.clear()
    assert world.plan(web, nodes=nodes) == [Create(web, "n2")]


# what was observed, not seen


def test_instances_of_an_unreachable_node_as_last_seen_are_kept_and_nothing_is_created_twice() -> None:
    world, web = World(), app(replicas=2)
    world.add(web, "a", node="away", remembered=True)
    world.add(web, "b", node="away", remembered=True)
    assert world.plan(web, nodes=[node("away", ready=False), node("n1")]) == []


def test_a_container_remembered_from_a_silent_node_is_not_removed_until_it_answers() -> None:
    world = World()
    world.add(app("gone"), "x", node="away", remembered=True)  # an orphan, but its node cannot be asked now
    world.add(app("web", replicas=0), "y", node="away", remembered=True)
    assert world.plan(app("web", replicas=0), nodes=[node("away", ready=False)]) == []


def test_adopted_instances_after_a_restart_create_nothing() -> None:
    world, web = World(), app(replicas=3)
    for name in "abc":
        world.add(web, name, READY, restarts=2)
    assert world.plan(web) == []


def test_a_node_not_attached_keeps_its_instances_until_it_counts_as_lost() -> None:
    pool = NodePool()
    assert pool.kept_away({"vm1"}, now=0.0) == {"vm1"}
    assert pool.kept_away({"vm1"}, now=NODE_LOST_AFTER_SECONDS - 0.1) == {"vm1"}
    assert pool.kept_away({"vm1"}, now=NODE_LOST_AFTER_SECONDS) == set()
    pool.detach("vm2")
    assert pool.kept_away({"vm2"}, now=0.0) == set()  # removed for good: gone at once
