import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from hosting.paas.planner import BACKOFF_CAP_SECONDS, backoff
from hosting.paas.scheduler import (
    FILTERS,
    NODE_FILTERS,
    NodeView,
    NoFit,
    Request,
    Scheduler,
    Strategy,
    free_memory_mib,
    has_cpu,
    has_memory,
    is_ready,
    isolation_matches,
    not_draining,
    replicas_on,
)
from strata.config import Settings


def node(
    name: str = "n",
    *,
    ready: bool = True,
    draining: bool = False,
    cpu: int = 2000,
    memory: int = 4096,
    used_cpu: int = 0,
    used_memory: int = 0,
    tenant: str | None = None,
    instances: dict[tuple[str, str], int] | None = None,
) -> NodeView:
    return NodeView(name, ready, cpu, memory, used_cpu, used_memory, tenant, draining, instances or {})


WEB = ("acme", "web")
SHARED = Request("acme", "web", dedicated=False, cpu_millicores=500, memory_mib=512)
DEDICATED = Request("acme", "web", dedicated=True, cpu_millicores=500, memory_mib=512)
SPREAD, BINPACK = Strategy.SPREAD, Strategy.BINPACK


def numbered(*nodes: NodeView) -> list[NodeView]:
    return [replace(view, name=f"n{i}") for i, view in enumerate(nodes)]


def placed(nodes: list[NodeView], request: Request = SHARED, strategy: Strategy = SPREAD) -> str:
    """The name of the node `request` lands on, or the reason it lands nowhere."""
    target = Scheduler(nodes, strategy).place(request)
    return target.reason if isinstance(target, NoFit) else target.name


@pytest.mark.parametrize(
    "view, ready, undrained",
    [
        (node(), True, True),
        (node(ready=False), False, True),
        (node(draining=True), True, False),
        (node(ready=False, draining=True), False, False),
    ],
)
def test_node_filters(view: NodeView, ready: bool, undrained: bool) -> None:
    assert (is_ready(view), not_draining(view)) == (ready, undrained)


@pytest.mark.parametrize(
    "view, request_, passes",
    [
        (node(), SHARED, True),
        (node(tenant="acme"), SHARED, False),  # a shared tenant never lands on a dedicated VM
        (node(tenant="acme"), DEDICATED, True),
        (node(tenant="globex"), DEDICATED, False),
        (node(), DEDICATED, False),  # a dedicated tenant never shares a kernel
    ],
)
def test_isolation(view: NodeView, request_: Request, passes: bool) -> None:
    assert isolation_matches(view, request_) is passes


@pytest.mark.parametrize(
    "used_memory, passes",
    [(0, True), (3584, True), (3585, False)],  # 4096 MiB, no memory overcommit
)
def test_memory_is_never_overcommitted(used_memory: int, passes: bool) -> None:
    assert has_memory(node(used_memory=used_memory), SHARED) is passes


@pytest.mark.parametrize("used_cpu, passes", [(0, True), (7500, True), (7501, False)])  # 2000m × 4.0
def test_cpu_may_be_overcommitted_up_to_the_ratio(used_cpu: int, passes: bool) -> None:
    assert has_cpu(node(used_cpu=used_cpu), SHARED) is passes


@pytest.mark.parametrize(
    "instances, count",
    [
        ({}, 0),
        ({WEB: 2}, 2),
        ({("acme", "api"): 3, ("globex", "web"): 1}, 0),  # other apps, and the same name of another tenant
    ],
)
def test_replicas_on_counts_only_the_requests_app(instances: dict[tuple[str, str], int], count: int) -> None:
    assert replicas_on(node(instances=instances), SHARED) == count


@pytest.mark.parametrize(
    "strategy, nodes, chosen",
    [
        (SPREAD, [node("busy", used_memory=3000), node("idle", used_memory=100), node("down", ready=False)], "idle"),
        (BINPACK, [node("busy", used_memory=3000), node("idle"), node("full", used_memory=3700)], "busy"),
        (SPREAD, [node("small", memory=2048), node("big", memory=8192, used_memory=4096)], "big"),  # most MiB free
        (BINPACK, [node("big", memory=8192), node("small", memory=2048)], "small"),
        (SPREAD, [node("idle", draining=True), node("busy", used_memory=3000)], "busy"),
        (SPREAD, [node("idle", used_cpu=7600), node("busy", used_memory=3000)], "busy"),  # idle lacks CPU
        (SPREAD, [node("a"), node("b"), node("c")], "a"),  # a tie: the first given
        (BINPACK, [node("a"), node("b"), node("c")], "a"),
        # Replicas spread before either strategy: the node without one of web's wins, though worse for it.
        (SPREAD, [node("idle", instances={WEB: 1}), node("busy", used_memory=3000)], "busy"),
        (BINPACK, [node("busy", used_memory=3000, instances={WEB: 1}), node("idle")], "idle"),
        (SPREAD, [node("two", instances={WEB: 2}), node("one", used_memory=3000, instances={WEB: 1})], "one"),
    ],
)  # fmt: skip
def test_placement_chooses_by_replicas_then_strategy(strategy: Strategy, nodes: list[NodeView], chosen: str) -> None:
    assert placed(nodes, SHARED, strategy) == chosen


def test_a_dedicated_tenant_gets_its_own_vm_even_when_shared_nodes_have_more_room() -> None:
    nodes = [node("shared", memory=65536), node("theirs", tenant="globex"), node("ours", tenant="acme")]
    assert placed(nodes, DEDICATED) == "ours"


@pytest.mark.parametrize("strategy", list(Strategy))
def test_replicas_of_an_app_land_on_different_nodes(strategy: Strategy) -> None:
    scheduler = Scheduler([node("a"), node("b", used_memory=1000), node("c", used_memory=2000)], strategy)
    nodes = [scheduler.place(SHARED).name for _ in range(4)]  # type: ignore[union-attr]
    assert sorted(Counter(nodes).values()) == [1, 1, 2]
    assert len(set(nodes[:3])) == 3


@pytest.mark.parametrize("strategy, used", [(SPREAD, {"a": 2, "b": 2}), (BINPACK, {"a": 4})])
def test_spread_balances_where_binpack_fills_one_node_first(strategy: Strategy, used: dict[str, int]) -> None:
    scheduler = Scheduler([node("a"), node("b")], strategy)
    apps = [Request("acme", f"app{i}", False, 500, 512) for i in range(4)]  # one replica each: nothing to spread
    assert Counter(scheduler.place(app).name for app in apps) == used  # type: ignore[union-attr]


def test_each_placement_claims_its_resources_until_the_node_is_full() -> None:
    scheduler = Scheduler([node("a", memory=1024)])
    first, second, third = scheduler.place(SHARED), scheduler.place(SHARED), scheduler.place(SHARED)
    assert isinstance(first, NodeView) and isinstance(second, NodeView)
    assert (first.allocated_memory_mib, first.allocated_cpu_millicores, first.instances) == (512, 500, {WEB: 1})
    assert (second.allocated_memory_mib, second.allocated_cpu_millicores, second.instances) == (1024, 1000, {WEB: 2})
    assert scheduler.nodes["a"] == second
    assert third == NoFit("no node fits: 1 short of memory (need 512 MiB)")


@pytest.mark.parametrize(
    "nodes, request_, reason",
    [
        ([], SHARED, "no node fits: there are no nodes"),
        (
            numbered(node(ready=False), node(ready=False), node(draining=True), *[node(used_memory=3800)] * 3),
            SHARED,
            "no node fits: 2 not ready, 1 draining, 3 short of memory (need 512 MiB)",
        ),
        (
            numbered(node(tenant="acme"), node(used_cpu=7800), node(used_memory=4000, used_cpu=7800)),
            SHARED,
            "no node fits: 1 dedicated to a tenant, 1 short of memory (need 512 MiB), 1 short of CPU (need 500m)",
        ),
        (
            numbered(node(), node(tenant="globex")),
            DEDICATED,
            "no node fits: tenant acme is dedicated and has no VM node: "
            "add one with `strata nodes add NAME --tenant acme`",
        ),
        (
            numbered(node(ready=False, tenant="acme"), node()),
            DEDICATED,
            "no node fits: 1 not ready, 1 not dedicated to acme",
        ),
    ],
)
def test_no_fitting_node_says_why_each_node_was_rejected(nodes: list[NodeView], request_: Request, reason: str) -> None:
    assert placed(nodes, request_) == reason


@pytest.mark.parametrize("value, strategy", [(None, SPREAD), ("", SPREAD), ("binpack", BINPACK)])
def test_strategy_is_read_from_the_environment(
    value: str | None, strategy: Strategy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if value is not None:
        monkeypatch.setenv("STRATA_SCHEDULER", value)
    assert Settings.from_env(tmp_path).scheduler is strategy


def test_an_unknown_strategy_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATA_SCHEDULER", "fastest")
    with pytest.raises(ValueError, match="STRATA_SCHEDULER='fastest': expected one of spread, binpack"):
        Settings.from_env(tmp_path)


def best_by_definition(nodes: list[NodeView], request: Request, strategy: Strategy) -> str | None:
    """Every filter on every node, then the fewest replicas, then the strategy's free memory, then the first."""
    fitting = [
        n
        for n in nodes
        if all(passes(n) for passes, _ in NODE_FILTERS) and all(passes(n, request) for passes, _ in FILTERS)
    ]
    room = -1 if strategy == SPREAD else 1
    best = min(fitting, key=lambda n: (replicas_on(n, request), room * free_memory_mib(n)), default=None)
    return best.name if best else None


def random_cluster(rng: random.Random) -> list[NodeView]:
    """Few distinct sizes and loads, so ties are common; some dedicated, not ready or draining."""
    return [
        node(
            f"n{i}",
            ready=rng.random() > 0.1,
            draining=rng.random() < 0.1,
            cpu=rng.choice([1000, 2000]),
            memory=rng.choice([2048, 4096]),
            used_memory=rng.choice([0, 512, 1024]),
            tenant=rng.choice([None, None, None, "acme", "globex"]),
            instances={WEB: rng.choice([0, 0, 1])},
        )
        for i in range(30)
    ]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("strategy", list(Strategy))
def test_the_index_places_exactly_as_checking_every_node_would(seed: int, strategy: Strategy) -> None:
    rng = random.Random(seed)
    scheduler = Scheduler(random_cluster(rng), strategy)
    for _ in range(120):
        request = Request(
            rng.choice(["acme", "globex", "initech"]),
            rng.choice(["web", "api"]),
            rng.random() < 0.3,
            rng.choice([250, 1000, 3000]),
            rng.choice([256, 512, 1024]),
        )
        expected = best_by_definition(list(scheduler.nodes.values()), request, strategy)
        target = scheduler.place(request)
        assert (None if isinstance(target, NoFit) else target.name) == expected


def test_backoff_doubles_from_one_second_up_to_its_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(100) == BACKOFF_CAP_SECONDS
