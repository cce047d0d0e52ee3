"""The real reconciler's decisions, pass by pass, on engines in memory: a migrated SQLite database for the desired
state, `FakeRuntime` nodes for the actual state, a `FakeClock` for deadlines and backoff, and a health checker
that answers for the fakes' made-up endpoints. No Docker, no sleeps: each test calls `reconcile()` itself.

The real-daemon tests (`tests/paas/test_reconciler.py`) stay the proof that containers really run; these say
what the reconciler decides, fast."""

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from hosting.paas import networks
from hosting.paas.fake_runtime import FakeClock, FakeHealthChecker, FakePorts, FakeRuntime
from hosting.paas.liveness import Liveness
from hosting.paas.nodes import NODE_LOST_AFTER_SECONDS, NodeHandle, NodePool
from hosting.paas.reconciler import Reconciler
from hosting.paas.runtime import Capacity
from hosting.paas.scheduler import Strategy
from tenants import apps, db, instances, tenancy
from tenants.enums import InstanceState
from tenants.models import App, Event, Instance, Node
from tenants.schemas import AppSpec, TenantCreate

PLATFORM = "fakeplatform0001"
NODE = Capacity(cpu_millicores=4000, memory_mib=8192)
HELLO = AppSpec(image="strata/hello", replicas=3, cpu_millicores=250, memory_mib=64, health_path="/healthz")


@dataclass
class World:
    """The desired state's database, the fake nodes, the clock, and what the front door was told."""

    engine: Engine
    clock: FakeClock = field(default_factory=FakeClock)
    ports: FakePorts = field(default_factory=FakePorts)
    nodes: dict[str, FakeRuntime] = field(default_factory=dict)
    published: list[dict[str, tuple[str, ...]]] = field(default_factory=list)  # app -> its endpoints, each time

    def node(self, name: str, capacity: Capacity = NODE) -> FakeRuntime:
        runtime = FakeRuntime(name, capacity=capacity, clock=self.clock.now, ports=self.ports)
        self.nodes[name] = runtime
        return runtime

    def reconciler(self, *names: str) -> Reconciler:
        pool = NodePool([NodeHandle(self.nodes[name], "local", "fake://") for name in names or self.nodes])
        return Reconciler(
            self.engine,
            PLATFORM,
            pool,
            Strategy.SPREAD,
            publish=lambda routes: self.published.append({r.app: r.endpoints for r in routes}),
            liveness=Liveness(FakeHealthChecker(self.ports)),
            clock=self.clock.monotonic,
        )

    def tenant(self, name: str = "acme") -> None:
        with db.session(self.engine) as session:
            tenancy.create_tenant(session, "op", TenantCreate(name=name, plan="large"))

    def deploy(self, app: str = "web", spec: AppSpec = HELLO, tenant: str = "acme") -> None:
        with db.session(self.engine) as session:
            apps.deploy(session, "op", tenant, app, spec, platform_domain="localhost")

    def scale(self, replicas: int, app: str = "web", tenant: str = "acme") -> None:
        with db.session(self.engine) as session:
            apps.scale(session, "op", tenant, app, replicas)

    def rows(self) -> list[Instance]:
        with db.session(self.engine) as session:
            return list(session.exec(select(Instance).order_by(Instance.id)))

    def events(self, action: str) -> list[Event]:
        with db.session(self.engine) as session:
            return list(session.exec(select(Event).where(Event.action == action).order_by(Event.id)))

    def running(self, app: str | None = None) -> list[str]:
        """The instances running now on every node."""
        return sorted(c.instance for node in self.nodes.values() for c in node.running(app=app))

    def served(self, app: str = "web") -> tuple[str, ...]:
        return self.published[-1].get(app, ()) if self.published else ()


@pytest.fixture
def world(engine: Engine) -> Iterator[World]:
    world = World(engine)
    world.tenant()
    yield world


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """One event loop for a whole scenario: the reconciler's locks belong to the loop they first wait in."""
    asyncio.run(scenario())


async def passes(reconciler: Reconciler, count: int = 1) -> None:
    for _ in range(count):
        await reconciler.reconcile()


def states(reconciler: Reconciler) -> list[InstanceState]:
    return sorted(t.state for t in reconciler.tracked.values())


# deploying and scaling


def test_a_deploy_creates_its_instances_and_serves_them_once_their_health_checks_pass(world: World) -> None:
    world.node("local")
    reconciler = world.reconciler()
    world.deploy()

    async def scenario() -> None:
        await passes(reconciler)

    run(scenario)
    local = world.nodes["local"]
    assert len(local.running(app="web")) == 3
    assert states(reconciler) == [InstanceState.READY] * 3
    assert sorted(world.served()) == sorted(c.endpoint for c in local.running() if c.endpoint)
    assert [row.state for row in world.rows()] == ["ready"] * 3
    assert {c.spec.network for c in local.containers_of()} == {f"strata-{PLATFORM[:8]}-acme"}
    assert len(world.events("instance.create")) == 3 and len(world.events("instance.ready")) == 3


def test_an_instance_whose_health_check_fails_is_never_served_and_says_why(world: World) -> None:
    world.node("local").health = "HTTP 503"
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"replicas": 2}))

    async def scenario() -> None:
        await passes(reconciler, 3)

    run(scenario)
    assert states(reconciler) == [InstanceState.STARTING] * 2
    assert world.served() == ()
    assert {row.message for row in world.rows()} == {
        "waiting for its health check: GET /healthz on port 8080: HTTP 503"
    }
    assert world.nodes["local"].calls["create"] == 2  # waiting is not failing: nothing is created again


def test_scaling_up_adds_instances_and_scaling_down_removes_the_surplus(world: World) -> None:
    world.node("local")
    reconciler = world.reconciler()
    world.deploy()

    async def scenario() -> None:
        await passes(reconciler)
        first = world.running()
        world.scale(5)
        await passes(reconciler)
        assert len(world.running()) == 5 and set(first) <= set(world.running())
        assert len(world.served()) == 5
        world.scale(1)
        await passes(reconciler)

    run(scenario)
    assert len(world.running()) == 1 and len(world.served()) == 1
    assert len(world.rows()) == 1
    assert [e.detail["reason"] for e in world.events("instance.remove")] == ["scale down"] * 4


def test_a_remove_the_engine_refuses_leaves_the_instance_as_it_was(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy()

    async def scenario() -> None:
        await passes(reconciler)
        local.fail("remove")
        world.scale(2)
        await reconciler.reconcile()  # the remove fails: the instance is still there, and judged as before
        assert states(reconciler) == [InstanceState.READY] * 3 and len(world.served()) == 3
        world.scale(3)
        await passes(reconciler, 2)

    run(scenario)
    assert len(world.running()) == 3 and states(reconciler) == [InstanceState.READY] * 3


def test_what_a_failed_write_held_is_written_with_the_next_pass(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk or a lock fails one pass's write: its removals and events are not lost with it."""
    world.node("local")
    reconciler = world.reconciler()
    world.deploy()
    record = instances.record

    def refused(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    async def scenario() -> None:
        await passes(reconciler)
        world.scale(2)
        monkeypatch.setattr(instances, "record", refused)
        with pytest.raises(OperationalError):
            await reconciler.reconcile()
        monkeypatch.setattr(instances, "record", record)
        await passes(reconciler)

    run(scenario)
    assert len(world.rows()) == 2  # the removed instance's row went too
    assert [e.detail["reason"] for e in world.events("instance.remove")] == ["scale down"]


def test_spread_places_an_apps_instances_on_different_nodes(world: World) -> None:
    for name in ("n1", "n2", "n3"):
        world.node(name)
    reconciler = world.reconciler()
    world.deploy()

    async def scenario() -> None:
        await passes(reconciler)

    run(scenario)
    assert [len(node.running()) for node in world.nodes.values()] == [1, 1, 1]


def test_an_image_no_node_has_fails_its_creates_with_backoff_on_the_clock(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"image": "acme/missing", "replicas": 1}))

    async def scenario() -> None:
        await passes(reconciler)
        assert local.calls["create"] == 1
        await passes(reconciler, 3)
        assert local.calls["create"] == 1  # backing off: 1 s
        world.clock.advance(1)
        await passes(reconciler)
        assert local.calls["create"] == 2
        world.clock.advance(1)
        await passes(reconciler)
        assert local.calls["create"] == 2  # now 2 s
        local.add_image("acme/missing")
        world.clock.advance(1)
        await passes(reconciler)

    run(scenario)
    assert len(local.running()) == 1
    failed = world.events("instance.failed")
    assert [e.detail["retry_in_seconds"] for e in failed] == [1.0, 2.0]
    assert "image acme/missing is not on node local" in failed[0].detail["reason"]
    with db.session(world.engine) as session:
        assert session.exec(select(App.problem)).one() is None  # cleared once it runs


# a new revision


def test_a_new_revision_rolls_one_at_a_time_never_below_the_replicas_ready(world: World) -> None:
    world.node("local")
    reconciler = world.reconciler()
    world.deploy()

    async def scenario() -> None:
        await passes(reconciler)
        world.deploy(spec=HELLO.model_copy(update={"env": {"COLOUR": "blue"}}))
        for _ in range(12):
            await passes(reconciler)
            ready = [t for t in reconciler.tracked.values() if t.state == InstanceState.READY]
            assert len(ready) >= 3
            assert len(world.served()) >= 3

    run(scenario)
    assert sorted(t.revision for t in reconciler.tracked.values()) == [2, 2, 2]
    assert {c.spec.revision for c in world.nodes["local"].containers_of()} == {2}
    assert len(world.served()) == 3


def test_a_revision_that_never_gets_healthy_leaves_the_old_one_serving(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy()

    async def scenario() -> None:
        await passes(reconciler)
        old = world.served()
        local.health = "HTTP 500"  # what every new container answers from now on
        world.deploy(spec=HELLO.model_copy(update={"env": {"BROKEN": "1"}}))
        await passes(reconciler, 5)
        assert world.served() == old

    run(scenario)
    revisions = sorted(c.spec.revision for c in local.running())
    assert revisions == [1, 1, 1, 2]  # one new instance tried at a time, the old ones all kept


# crashes


def test_a_crashed_instance_is_restarted_after_a_backoff_of_1_2_4_s_then_is_a_crashloop(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"replicas": 1}))

    async def crash_and_restart(after: float) -> None:
        [instance] = world.running()
        local.emit(instance, "starting", "panic: out of cheese")
        local.crash(instance, exit_code=3)
        starts = local.calls["start"]
        await passes(reconciler, 2)
        assert local.calls["start"] == starts  # within its backoff: not yet
        world.clock.advance(after - 0.5)
        await passes(reconciler)
        assert local.calls["start"] == starts
        world.clock.advance(0.5)
        await passes(reconciler, 2)
        assert local.calls["start"] == starts + 1
        assert world.running() == [instance]  # the same instance, started again

    async def scenario() -> None:
        await passes(reconciler)
        [before] = reconciler.tracked.values()
        await crash_and_restart(1)
        assert before.state == InstanceState.READY and before.restarts == 1
        assert before.message is None  # healthy again
        await crash_and_restart(2)
        await crash_and_restart(4)
        assert before.restarts == 3 and before.crashes == 3

    run(scenario)
    crashed = world.events("instance.crashed")
    assert [(e.detail["crashes"], e.detail["restart_in_seconds"]) for e in crashed] == [(1, 1), (2, 2), (3, 4)]
    assert {e.detail["exit_code"] for e in crashed} == {3}


def test_a_crash_says_its_exit_code_and_last_output_and_the_third_in_a_row_is_a_crashloop(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"replicas": 1}))

    async def scenario() -> None:
        await passes(reconciler)
        [tracked] = reconciler.tracked.values()
        for crashes, backoff in ((1, 1), (2, 2), (3, 4)):
            local.emit(tracked.id, "", f"panic {crashes}")
            local.crash(tracked.id, exit_code=3)
            await passes(reconciler)
            times = "once" if crashes == 1 else f"{crashes} times in a row"
            output = " | ".join(f"panic {n}" for n in range(1, crashes + 1))  # the last lines, not blank ones
            assert tracked.message == f"exited with code 3, {times}; last output: {output}"
            assert tracked.state == (InstanceState.CRASHLOOP if crashes == 3 else InstanceState.STARTING)
            assert world.served() == ()
            world.clock.advance(backoff)
            await passes(reconciler)

    run(scenario)
    [row] = world.rows()
    assert row.restarts == 3


def test_a_container_removed_behind_the_platforms_back_is_replaced(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"replicas": 2}))

    async def scenario() -> None:
        await passes(reconciler)
        gone = world.running()[0]
        local.vanish(gone)
        await passes(reconciler)
        assert gone not in world.running() and len(world.running()) == 2

    run(scenario)
    [vanished] = world.events("instance.vanished")
    assert vanished.detail["app"] == "web"


# nodes


def test_an_unreachable_node_keeps_its_instances_until_it_counts_as_lost(world: World) -> None:
    a, b = world.node("a"), world.node("b")
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"replicas": 2}))

    async def scenario() -> None:
        await passes(reconciler)
        assert (len(a.running()), len(b.running())) == (1, 1)
        a.unreachable()
        for _ in range(5):
            world.clock.advance(5)  # 25 s of passes (on the reconciler's clock)
            await passes(reconciler)
        assert len(b.running()) == 1  # nothing made twice meanwhile
        assert len(reconciler.tracked) == 2
        with db.session(world.engine) as session:
            assert session.get(Node, "a").state == "unreachable"  # type: ignore[union-attr]
        world.clock.advance(NODE_LOST_AFTER_SECONDS - 20)  # first seen silent 20 s ago: 30 s now
        await passes(reconciler, 2)
        assert len(b.running()) == 2  # its instance is placed elsewhere
        a.reachable_again()
        await passes(reconciler, 3)

    run(scenario)
    assert len(a.running()) + len(b.running()) == 2  # the one on `a` is surplus once `a` answers again
    assert len(world.served()) == 2


def test_a_node_set_aside_keeps_its_instances_as_long_as_an_unreachable_one_then_rejoins(world: World) -> None:
    a, b = world.node("a"), world.node("b")
    reconciler = world.reconciler()
    world.deploy(spec=HELLO.model_copy(update={"replicas": 2}))

    async def scenario() -> None:
        await passes(reconciler)
        assert (len(a.running()), len(b.running())) == (1, 1)
        handle = reconciler.pool["a"]
        reconciler.pool.set_aside("a")  # a remote host's connection dropped, being made again
        for _ in range(5):
            world.clock.advance(5)
            await passes(reconciler)
        assert len(b.running()) == 1 and len(reconciler.tracked) == 2  # nothing made twice meanwhile
        world.clock.advance(NODE_LOST_AFTER_SECONDS - 20)
        await passes(reconciler, 2)
        assert len(b.running()) == 2  # its instance is placed elsewhere
        reconciler.pool.attach(handle)  # connected again
        await passes(reconciler, 3)

    run(scenario)
    assert len(a.running()) + len(b.running()) == 2  # the one on `a` is surplus once `a` is back
    assert len(world.served()) == 2


def test_a_restarted_reconciler_adopts_the_running_instances_and_creates_nothing(world: World) -> None:
    local = world.node("local")
    world.deploy()

    async def first_life() -> None:
        await passes(world.reconciler())

    run(first_life)
    before = world.running()
    reconciler = world.reconciler()  # a new daemon: nothing in memory, rows and labels only

    async def second_life() -> None:
        await passes(reconciler, 3)

    run(second_life)
    assert world.running() == before
    assert local.calls["create"] == 3 and local.calls["remove"] == 0 and local.calls["start"] == 0
    assert sorted(reconciler.tracked) == before


# deleting


def test_a_deleted_apps_containers_are_removed_and_no_longer_served(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    world.deploy("web")
    world.deploy("api", HELLO.model_copy(update={"replicas": 2}))

    async def scenario() -> None:
        await passes(reconciler)
        assert len(local.running(app="api")) == 2
        with db.session(world.engine) as session:
            apps.delete(session, "op", "acme", "api")
        await passes(reconciler)

    run(scenario)
    assert local.containers_of(app="api") == []
    assert len(local.running(app="web")) == 3
    assert "api" not in world.published[-1] and len(world.served("web")) == 3
    assert len(world.rows()) == 3
    assert {e.detail["reason"] for e in world.events("instance.remove")} == {"orphan"}


def test_a_gone_tenants_network_is_swept_and_the_others_kept(world: World) -> None:
    local = world.node("local")
    world.tenant("globex")
    reconciler = world.reconciler()
    world.deploy(tenant="acme")
    world.deploy(tenant="globex")

    async def scenario() -> None:
        await passes(reconciler)
        assert local.network_names() == [f"strata-{PLATFORM[:8]}-acme", f"strata-{PLATFORM[:8]}-globex"]
        with db.session(world.engine) as session:
            tenancy.delete_tenant(session, "op", "acme")
        await passes(reconciler)

    run(scenario)
    assert local.containers_of(tenant="acme") == []
    assert local.network_names() == [f"strata-{PLATFORM[:8]}-globex"]
    assert len(local.running()) == 3


def test_a_tenants_network_is_kept_while_it_builds_even_with_no_app_to_run(world: World) -> None:
    local = world.node("local")
    reconciler = world.reconciler()
    reconciler.building = lambda: {"acme"}  # its first build: no app yet, its RUN steps on its network

    async def scenario() -> None:
        name = networks.tenant_network(PLATFORM, "acme")
        await local.ensure_network(name, {"strata.platform": PLATFORM, "strata.tenant": "acme"})
        reconciler._swept_at = world.clock.monotonic() - networks.SWEEP_SECONDS  # a sweep is due
        await passes(reconciler)
        assert local.network_names() == [f"strata-{PLATFORM[:8]}-acme"]
        reconciler.building = set
        reconciler._swept_at = world.clock.monotonic() - networks.SWEEP_SECONDS  # due again
        await passes(reconciler)

    run(scenario)
    assert local.network_names() == []
