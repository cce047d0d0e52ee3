"""Placement: which node gets a new instance. Filters say which nodes may; weighers say which is best.

Each filter and weigher is a few lines with one job; the lists at the bottom are the configuration.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Like Nova's allocation ratios: CPU limits may be overcommitted (they are ceilings, shared fairly);
# memory may not (the kernel's OOM killer is no scheduler).
CPU_ALLOCATION_RATIO = 4.0
MEMORY_ALLOCATION_RATIO = 1.0


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


@dataclass(frozen=True)
class Request:
    tenant: str
    dedicated: bool
    cpu_millicores: int
    memory_mib: int


Filter = Callable[[NodeView, Request], bool]
Weigher = Callable[[NodeView, Request], float]


def is_ready(node: NodeView, request: Request) -> bool:
    return node.ready


def isolation_matches(node: NodeView, request: Request) -> bool:
    """A dedicated tenant only on its own nodes; a shared tenant never on anyone's dedicated node."""
    return node.tenant == request.tenant if request.dedicated else node.tenant is None


def has_memory(node: NodeView, request: Request) -> bool:
    return node.allocated_memory_mib + request.memory_mib <= node.memory_mib * MEMORY_ALLOCATION_RATIO


def has_cpu(node: NodeView, request: Request) -> bool:
    return node.allocated_cpu_millicores + request.cpu_millicores <= node.cpu_millicores * CPU_ALLOCATION_RATIO


def free_memory(node: NodeView, request: Request) -> float:
    """Spread: prefer the node with the largest share of its memory still free."""
    return 1 - node.allocated_memory_mib / node.memory_mib if node.memory_mib else 0.0


FILTERS: list[Filter] = [is_ready, isolation_matches, has_memory, has_cpu]
WEIGHERS: list[tuple[float, Weigher]] = [(1.0, free_memory)]


def place(
    nodes: Sequence[NodeView],
    request: Request,
    filters: Sequence[Filter] = FILTERS,
    weighers: Sequence[tuple[float, Weigher]] = WEIGHERS,
) -> NodeView | None:
    """The best node for `request`, or None when no node passes every filter."""
    candidates = [node for node in nodes if all(passes(node, request) for passes in filters)]
    if not candidates:
        return None
    return max(candidates, key=lambda node: sum(weight * score(node, request) for weight, score in weighers))
