import pytest

from hosting.paas.reconciler import BACKOFF_CAP_SECONDS, backoff
from hosting.paas.scheduler import NodeView, Request, has_cpu, has_memory, isolation_matches, place


def node(
    name: str = "n",
    *,
    ready: bool = True,
    cpu: int = 2000,
    memory: int = 4096,
    used_cpu: int = 0,
    used_memory: int = 0,
    tenant: str | None = None,
) -> NodeView:
    return NodeView(name, ready, cpu, memory, used_cpu, used_memory, tenant)


SHARED = Request("acme", dedicated=False, cpu_millicores=500, memory_mib=512)
DEDICATED = Request("acme", dedicated=True, cpu_millicores=500, memory_mib=512)


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


def test_placement_spreads_onto_the_emptiest_fitting_node() -> None:
    nodes = [node("busy", used_memory=3000), node("idle", used_memory=100), node("down", ready=False)]
    assert place(nodes, SHARED).name == "idle"  # type: ignore[union-attr]


def test_no_fitting_node_means_no_placement() -> None:
    assert place([node(used_memory=4000), node(ready=False)], SHARED) is None


def test_backoff_doubles_from_one_second_up_to_its_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(100) == BACKOFF_CAP_SECONDS
