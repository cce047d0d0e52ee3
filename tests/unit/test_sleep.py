"""When an app sleeps, sleeps deeper and wakes: `sleep.decide` as a table, then the real reconciler on fake
engines, pass by pass (its clock a FakeClock, the front door's traffic a dict)."""

import asyncio
from dataclasses import replace

import pytest

from hosting.paas.sleep import STOP_AFTER_IDLE_FACTOR, Step, decide
from hosting.paas.tracked import Tracked
from tenants.enums import AppKind, InstanceState
from tenants.instances import DesiredApp
from tenants.routes import Activity
from tests.unit.test_reconciler_fake import HELLO, World, passes, world  # noqa: F401 (a fixture)

APP = DesiredApp("acme", "shared", 1, "web", 2, 2, "strata/hello", None, 8080, 250, 64, {}, "/healthz", [], 100,
                 200, 10, idle_stop_seconds=60)  # fmt: skip
READY, PAUSED, STOPPED = InstanceState.READY, InstanceState.PAUSED, InstanceState.STOPPED


def instances(*states: InstanceState, revision: int = 2, node: str = "local") -> list[Tracked]:
    return [Tracked(f"i{n}", 1, node, f"c{n}", revision, state, "127.0.0.1:1") for n, state in enumerate(states)]


@pytest.mark.parametrize(
    ("app", "found", "idle", "in_flight", "step"),
    [
        (APP, instances(READY, READY), 59.0, 0, Step.STAY),  # not idle long enough
        (APP, instances(READY, READY), 60.0, 0, Step.PAUSE),
        (APP, instances(READY, READY), 600.0, 1, Step.STAY),  # a request in flight
        (APP, instances(READY, InstanceState.STARTING), 600.0, 0, Step.STAY),  # not at rest
        (APP, instances(READY), 600.0, 0, Step.STAY),  # one replica short
        (APP, instances(READY, READY, revision=1), 600.0, 0, Step.STAY),  # a roll is due
        (replace(APP, idle_stop_seconds=0), instances(READY, READY), 600.0, 0, Step.STAY),  # never sleeps
        (replace(APP, kind=AppKind.POSTGRES), instances(READY, READY), 600.0, 0, Step.STAY),  # a service
        (APP, instances(PAUSED, PAUSED), 60.0 * STOP_AFTER_IDLE_FACTOR - 1, 0, Step.STAY),
        (APP, instances(PAUSED, PAUSED), 60.0 * STOP_AFTER_IDLE_FACTOR, 0, Step.STOP),
        (APP, instances(STOPPED, STOPPED), 1e9, 0, Step.STAY),  # as deep as it goes
        (APP, instances(PAUSED, PAUSED, node="vm1"), 1e9, 0, Step.STAY),  # on a VM node: paused is the deepest
        (APP, instances(PAUSED, PAUSED, revision=1), 0.0, 0, Step.WAKE),  # deployed while asleep
        (replace(APP, replicas=3), instances(STOPPED, STOPPED), 0.0, 0, Step.WAKE),  # scaled while asleep
        (replace(APP, replicas=0), instances(PAUSED, PAUSED), 0.0, 0, Step.STAY),  # removed as they are
        (replace(APP, idle_stop_seconds=0), instances(PAUSED, PAUSED), 0.0, 0, Step.WAKE),  # sleep turned off
    ],
)
def test_when_an_app_sleeps_and_wakes(app: DesiredApp, found: list[Tracked], idle: float, in_flight: int,
                                      step: Step) -> None:  # fmt: skip
    assert decide(app, found, idle, in_flight, may_stop=all(t.node == "local" for t in found)) == step


def test_an_idle_app_is_paused_then_stopped_and_woken_with_its_routes(world: World) -> None:  # noqa: F811
    world.node("local")
    world.deploy(spec=HELLO.model_copy(update={"replicas": 2, "idle_stop_seconds": 60}))
    traffic = {("acme", "web"): Activity(None, 0)}

    async def scenario() -> None:
        reconciler = world.reconciler()
        reconciler.sleeper.activity = lambda: _now(traffic)
        await passes(reconciler, 2)
        assert len(world.served()) == 2
        world.clock.advance(59)
        await passes(reconciler)
        assert {t.state for t in reconciler.tracked.values()} == {READY}
        world.clock.advance(1)
        await passes(reconciler)
        await asyncio.sleep(0)  # the pause runs beside the pass
        await passes(reconciler)
        assert {t.state for t in reconciler.tracked.values()} == {PAUSED}
        assert all(c.paused for c in world.nodes["local"].containers_of(app="web"))
        assert world.served() == ()  # the front door's activator takes its requests

        world.clock.advance(60 * STOP_AFTER_IDLE_FACTOR)
        await passes(reconciler)
        await asyncio.sleep(0)
        await passes(reconciler, 3)
        assert {t.state for t in reconciler.tracked.values()} == {STOPPED}
        assert world.running("web") == []  # and not restarted as crashed ones
        assert not world.events("instance.crashed")

        endpoint = await reconciler.wake("acme", "web")
        assert endpoint is not None and len(world.running("web")) == 2
        assert {t.state for t in reconciler.tracked.values()} == {READY}
        assert endpoint in world.served()
        assert reconciler.sleeps()[("acme", "web")].wakeups == 1
        traffic[("acme", "web")] = Activity(None, 1)  # a request in flight: it stays awake however long
        world.clock.advance(3600)
        await passes(reconciler, 3)
        assert {t.state for t in reconciler.tracked.values()} == {READY}
        assert [e.detail["state"] for e in world.events("app.sleep")] == ["paused", "stopped"]

    asyncio.run(scenario())


def test_an_idle_app_on_a_vm_node_stays_paused(world: World) -> None:  # noqa: F811
    """Stopping it would free only the VM's memory, and its start in the guest is slow: it stays paused."""
    world.node("vm1")
    world.deploy(spec=HELLO.model_copy(update={"idle_stop_seconds": 60}))
    traffic = {("acme", "web"): Activity(None, 0)}

    async def scenario() -> None:
        reconciler = world.reconciler()
        reconciler.sleeper.pool["vm1"].driver = "qemu"
        reconciler.sleeper.activity = lambda: _now(traffic)
        await passes(reconciler, 2)
        world.clock.advance(60)
        await passes(reconciler)
        await asyncio.sleep(0)
        await passes(reconciler)
        world.clock.advance(60 * STOP_AFTER_IDLE_FACTOR * 10)
        await passes(reconciler, 3)
        assert {t.state for t in reconciler.tracked.values()} == {PAUSED}
        assert [e.detail["state"] for e in world.events("app.sleep")] == ["paused"]
        assert await reconciler.wake("acme", "web") in world.served()

    asyncio.run(scenario())


def test_an_app_woken_from_stopped_while_a_pass_looks_is_not_taken_for_crashed(world: World) -> None:  # noqa: F811
    world.node("local")
    world.deploy(spec=HELLO.model_copy(update={"replicas": 2, "idle_stop_seconds": 60}))
    traffic = {("acme", "web"): Activity(None, 0)}

    async def scenario() -> None:
        reconciler = world.reconciler()
        reconciler.sleeper.activity = lambda: _now(traffic)
        await passes(reconciler, 2)
        world.clock.advance(60)
        await passes(reconciler)
        await asyncio.sleep(0)
        world.clock.advance(60 * STOP_AFTER_IDLE_FACTOR)
        await passes(reconciler)
        await asyncio.sleep(0)
        await passes(reconciler, 2)
        assert {t.state for t in reconciler.tracked.values()} == {STOPPED}

        async def a_request_meanwhile() -> dict[tuple[str, str], Activity]:
            # the pass has seen the containers stopped; the activator's wake starts them before it plans
            await reconciler.wake("acme", "web")
            reconciler.sleeper.activity = lambda: _now(traffic)
            return traffic

        traffic[("acme", "web")] = Activity(None, 1)
        reconciler.sleeper.activity = a_request_meanwhile
        await passes(reconciler, 3)
        assert not world.events("instance.crashed")
        assert {t.state for t in reconciler.tracked.values()} == {READY} and len(world.running("web")) == 2

    asyncio.run(scenario())


async def _now(traffic: dict[tuple[str, str], Activity]) -> dict[tuple[str, str], Activity]:
    return traffic
