"""Placement: which node gets a new instance. Filters say which nodes may; scorers say which is best.

Each filter is a few lines with one job, and the lists of them are the configuration. The scorers are two:
fewer of the app's replicas on a node first, then the `Strategy` (spread or binpack, as `strata.config` reads it)
orders by free memory. A `Scheduler` applies them for one reconcile pass: it is built once from the node
views, claims each placement's resources so the next placement sees them, and explains itself when no node
fits.
"""

import math
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

# Like Nova's allocation ratios: CPU limits may be overcommitted (they are ceilings, shared fairly);
# memory may not (the kernel's OOM killer is no scheduler).
CPU_ALLOCATION_RATIO = 4.0
MEMORY_ALLOCATION_RATIO = 1.0

AppKey = tuple[str, str]  # (tenant, app)


@dataclass(frozen=True)
class NodeView:
    """A node as placement sees it: its capacity, what its instances claim, whom it is dedicated to."""

    name: str
    ready: bool
    cpu_millicores: int
    memory_mib: int
    allocated_cpu_millicores: int
    allocated_memory_mib: int
    tenant: str | None = None  # a dedicated VM's tenant; None for shared nodes
    draining: bool = False  # keeps its instances but takes no new ones
    instances: Mapping[AppKey, int] = field(default_factory=dict)  # how many of each app's instances it runs


@dataclass(frozen=True)
class Request:
    """One instance to place: whose, of which app, how isolated, how big, and the node its volumes pin it to."""

    tenant: str
    app: str
    dedicated: bool
    cpu_millicores: int
    memory_mib: int
    node: str | None = None

    @property
    def app_key(self) -> AppKey:
        return (self.tenant, self.app)


@dataclass(frozen=True)
class NoFit:
    """No node passes every filter; `reason` counts the nodes by the first filter that rejected each."""

    reason: str


class Strategy(StrEnum):
    """Which node of those that fit and hold the fewest of the app's replicas: an order of free memory."""

    SPREAD = "spread"  # the most free MiB first (as Nova's RAM weigher): load spreads evenly
    BINPACK = "binpack"  # the least free MiB that still fits first: the tightest fit keeps whole nodes free


NodeFilter = Callable[[NodeView], bool]
Filter = Callable[[NodeView, Request], bool]


def free_memory_mib(node: NodeView) -> float:
    return node.memory_mib * MEMORY_ALLOCATION_RATIO - node.allocated_memory_mib


# Node filters: whether a node takes new instances at all, whatever they are.


def is_ready(node: NodeView) -> bool:
    return node.ready


def not_draining(node: NodeView) -> bool:
    return not node.draining


# Filters: whether a node may take this instance.


def isolation_matches(node: NodeView, request: Request) -> bool:
    """A dedicated tenant only on its own nodes; a shared tenant never on anyone's dedicated node."""
    return node.tenant == request.tenant if request.dedicated else node.tenant is None


def holds_its_volumes(node: NodeView, request: Request) -> bool:
    """An app's data lives on one node: its instance runs there."""
    return request.node is None or node.name == request.node


def has_memory(node: NodeView, request: Request) -> bool:
    return free_memory_mib(node) >= request.memory_mib


def has_cpu(node: NodeView, request: Request) -> bool:
    return node.allocated_cpu_millicores + request.cpu_millicores <= node.cpu_millicores * CPU_ALLOCATION_RATIO


def isolation_rejection(request: Request) -> str:
    return f"not dedicated to {request.tenant}" if request.dedicated else "dedicated to a tenant"


def volumes_rejection(request: Request) -> str:
    return f"not {request.node}, where its volumes are"


def memory_rejection(request: Request) -> str:
    return f"short of memory (need {request.memory_mib} MiB)"


def cpu_rejection(request: Request) -> str:
    return f"short of CPU (need {request.cpu_millicores}m)"


# The scorers: fewer of the app's replicas first, then the strategy's order of free memory.


def replicas_on(node: NodeView, request: Request) -> int:
    """Replicas of one app on different nodes, so that losing a node loses as few of them as can be."""
    return node.instances.get(request.app_key, 0)


# With each node's rejection as the reason names it. Order matters: a node counts for the first that rejects it.
NODE_FILTERS: list[tuple[NodeFilter, str]] = [(is_ready, "not ready"), (not_draining, "draining")]
FILTERS: list[tuple[Filter, Callable[[Request], str]]] = [
    (isolation_matches, isolation_rejection),
    (holds_its_volumes, volumes_rejection),
    (has_memory, memory_rejection),
    (has_cpu, cpu_rejection),
]


def passes_filters(node: NodeView, request: Request) -> bool:
    for passes, _ in FILTERS:
        if not passes(node, request):
            return False
    return True


class Scheduler:
    """Places instances for one reconcile pass; each placement claims its resources on its node.

    The best node passes every filter, holds the fewest of the app's replicas, and among those comes first in
    the strategy's order of free memory, then first as given. Checking every node for every instance would
    cost nodes x filters each time, so the ready nodes are indexed: by whom they are dedicated to (a
    request's isolation names the one pool it may use) and within a pool by free memory. A placement looks
    only at the nodes with enough memory, in the strategy's order, and stops at the first that passes the
    filters and holds none of the app's replicas: no later node can be better.
    """

    def __init__(self, nodes: Iterable[NodeView], strategy: Strategy = Strategy.SPREAD) -> None:
        self.strategy = strategy
        self.nodes: dict[str, NodeView] = {}  # every node, as the placements so far left it
        self._rank: dict[str, int] = {}  # a node's tie-break: the earlier given, the better
        self._pools: dict[str | None, list[tuple[float, int, str]]] = {}  # (free MiB, tie-break, name) sorted
        self._unfit: dict[Request, NoFit] = {}  # claims only take room: what fits nowhere fits nowhere later
        for rank, node in enumerate(nodes):
            self.nodes[node.name] = node
            self._rank[node.name] = rank
            if all(passes(node) for passes, _ in NODE_FILTERS):
                self._pools.setdefault(node.tenant, []).append(self._entry(node))
        for pool in self._pools.values():
            pool.sort()

    def place(self, request: Request) -> NodeView | NoFit:
        """The best node for `request`, its resources now claimed there; or why there is none (as of the
        first time this pass that the same request found none)."""
        if request in self._unfit:
            return self._unfit[request]
        best = self._pinned(request) if request.node is not None else self._best(request)
        if best is None:
            return self._unfit.setdefault(request, NoFit(self._explain(request)))
        return self._claim(best, request)

    def _best(self, request: Request) -> NodeView | None:
        pool = self._pools.get(request.tenant if request.dedicated else None, [])
        roomy = range(bisect_left(pool, (request.memory_mib,)), len(pool))  # the nodes before it lack memory
        best, fewest = None, math.inf
        for index in reversed(roomy) if self.strategy == Strategy.SPREAD else roomy:
            node = self.nodes[pool[index][2]]
            replicas = replicas_on(node, request)
            if replicas < fewest and passes_filters(node, request):
                best, fewest = node, replicas
                if replicas == 0:  # as few as can be, and every later node comes later in the strategy's order
                    break
        return best

    def _pinned(self, request: Request) -> NodeView | None:
        """The node holding the request's volumes, if it is ready and passes the filters. Draining or not: the
        data cannot leave with the instance (`strata volumes move` moves both)."""
        node = self.nodes.get(request.node or "")
        return node if node is not None and node.ready and passes_filters(node, request) else None

    def _claim(self, node: NodeView, request: Request) -> NodeView:
        pool = self._pools.get(node.tenant, [])
        index = bisect_left(pool, self._entry(node))
        pooled = index < len(pool) and pool[index][2] == node.name  # a draining node is in no pool
        if pooled:
            del pool[index]
        instances = {**node.instances, request.app_key: node.instances.get(request.app_key, 0) + 1}
        claimed = replace(
            node,
            allocated_cpu_millicores=node.allocated_cpu_millicores + request.cpu_millicores,
            allocated_memory_mib=node.allocated_memory_mib + request.memory_mib,
            instances=instances,
        )
        self.nodes[node.name] = claimed
        if pooled:
            insort(pool, self._entry(claimed))
        return claimed

    def _entry(self, node: NodeView) -> tuple[float, int, str]:
        """A node's place in its pool: ascending free memory; ties ordered so the scan meets the earlier first."""
        rank = self._rank[node.name]
        return (free_memory_mib(node), -rank if self.strategy == Strategy.SPREAD else rank, node.name)

    def _explain(self, request: Request) -> str:
        """Count every node under the first filter that rejects it: the operator sees what to add or fix."""
        if not self.nodes:
            return "no node fits: there are no nodes"
        if request.dedicated and all(node.tenant != request.tenant for node in self.nodes.values()):
            return (
                f"no node fits: tenant {request.tenant} is dedicated and has no VM node: "
                f"add one with `strata nodes add NAME --tenant {request.tenant}`"
            )
        if request.node is not None and request.node not in self.nodes:
            return f"no node fits: its volumes are on node {request.node}, which is gone"
        if request.node is not None:
            node = self.nodes[request.node]
            reason = "not ready"
            if node.ready:
                reason = next(why(request) for passes, why in FILTERS if not passes(node, request))
            return f"no node fits: its volumes are on node {request.node}, which is {reason}"
        counts = dict.fromkeys([why for _, why in NODE_FILTERS] + [why(request) for _, why in FILTERS], 0)
        for node in self.nodes.values():
            counts[self._rejection(node, request)] += 1
        return "no node fits: " + ", ".join(f"{count} {why}" for why, count in counts.items() if count)

    @staticmethod
    def _rejection(node: NodeView, request: Request) -> str:
        for node_passes, why in NODE_FILTERS:
            if not node_passes(node):
                return why
        return next(why(request) for passes, why in FILTERS if not passes(node, request))
