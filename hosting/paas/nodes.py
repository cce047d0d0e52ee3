"""The nodes the platform may place instances on: each a runtime plus what placement needs to know, and the pool
of those that are live, shared by the reconciler, the VM nodes and the API."""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine

from hosting.paas.runtime import Capacity, EngineError, NodeRuntime
from hosting.paas.scheduler import NodeView
from tenants import db
from tenants import nodes as registry
from tenants.models import Node
from tenants.ssh_targets import SSH_DRIVER

log = logging.getLogger(__name__)

NODE_LOST_AFTER_SECONDS = 30.0  # unreachable this long: its instances are placed elsewhere
PROBE_SECONDS = 5.0  # an engine that has not answered a probe by then is taken as unreachable
HOST_DRIVER = "local"  # the host's own engine; a remote host's is SSH_DRIVER, a VM node's its hypervisor's


@dataclass
class NodeHandle:
    runtime: NodeRuntime
    driver: str
    docker_url: str
    capacity: Capacity | None = None  # unknown until the engine first answers
    reachable: bool = False
    tenant: str | None = None  # the owner of a dedicated VM node
    warned: bool = False  # its being unreachable is logged already
    unreachable_since: float | None = None  # monotonic time it stopped answering
    lost_after: float = NODE_LOST_AFTER_SECONDS

    @property
    def vm(self) -> bool:
        """A VM node (its driver a hypervisor's): what its containers free stays the VM's, not the host's."""
        return self.driver not in (HOST_DRIVER, SSH_DRIVER)

    def lost(self, now: float) -> bool:
        """Unreachable for so long that its instances are given up (and placed elsewhere)."""
        return self.unreachable_since is not None and now - self.unreachable_since >= self.lost_after

    @property
    def name(self) -> str:
        return self.runtime.name

    async def refresh(self, engine: Engine, now: float | None = None) -> bool:
        """Ask the engine for its capacity and record the node as ready; False if it does not answer (`now`,
        monotonic, is when: the reconciler's clock)."""
        try:
            self.capacity = await self.runtime.capacity()
        except EngineError as exc:
            if self.reachable or not self.warned:  # once per outage, not once per pass
                log.warning("node %s: %s", self.name, exc)
                self.warned = True
            await self.mark_unreachable(engine, now)
            return False
        self.warned = False
        self.reachable = True
        self.unreachable_since = None
        await asyncio.to_thread(self._record, engine, "ready")
        return True

    async def probe(self) -> None:
        """Whether the engine answers, for this daemon's own use (a standby's API): nothing is recorded and its
        capacity is left unknown, since the leader's passes learn and record the nodes. A hung engine is
        given up after `PROBE_SECONDS`: a standby probes between reads of its front door's routes."""
        try:
            await asyncio.wait_for(self.runtime.capacity(), PROBE_SECONDS)
        except (EngineError, TimeoutError):
            self.reachable = False
        else:
            self.reachable = True

    async def mark_unreachable(self, engine: Engine, now: float | None = None) -> None:
        self.reachable = False
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic() if now is None else now
        await asyncio.to_thread(self._record, engine, "unreachable")

    def _record(self, engine: Engine, state: str) -> None:
        capacity = self.capacity or Capacity(0, 0)
        node = Node(
            name=self.name,
            driver=self.driver,
            docker_url=self.docker_url,
            state=state,
            cpu_millicores=capacity.cpu_millicores,
            memory_mib=capacity.memory_mib,
        )
        with db.session(engine) as session:
            registry.register(session, "daemon", node)


class NodeSource(Protocol):
    """What brings nodes to the pool beside the local one (a hypervisor's VM nodes, the remote hosts): run until
    `stopping`, then `close` once the reconciler no longer uses them; `nudge` asks for a pass now."""

    async def run(self, stopping: asyncio.Event) -> None: ...

    def nudge(self) -> None: ...

    async def close(self) -> None: ...


class NodePool:
    """The live nodes by name. VM nodes and remote hosts attach theirs once connected and detach them when
    removed; a node that is gone but not detached (a daemon restarted before its VMs reconnect, a remote host's
    connection set aside while it is made again) is `away`, and its instances are kept
    for as long as an unreachable node's. `on_change` is called on every attach and detach."""

    def __init__(self, nodes: Iterable[NodeHandle] = ()) -> None:
        self._nodes = {node.name: node for node in nodes}
        self._away_since: dict[str, float] = {}  # node not attached (yet) -> since when, for its instances
        self._removed: set[str] = set()  # nodes detached for good: their instances are gone at once
        self.on_change: Callable[[], None] = lambda: None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __getitem__(self, name: str) -> NodeHandle:
        return self._nodes[name]

    def __iter__(self) -> Iterator[NodeHandle]:
        return iter(list(self._nodes.values()))  # a copy: nodes may come and go while a caller awaits

    def __len__(self) -> int:
        return len(self._nodes)

    def names(self) -> list[str]:
        return list(self._nodes)

    def attach(self, node: NodeHandle) -> None:
        """Place instances on `node` too (a VM node that became ready), replacing a handle of its name."""
        self._nodes[node.name] = node
        self._away_since.pop(node.name, None)
        self._removed.discard(node.name)
        self.on_change()

    def set_aside(self, name: str) -> None:
        """Stop using node `name` for now (its connection dropped and is being made again): it is away, and its
        instances are kept for as long as an unreachable node's, then placed elsewhere."""
        self._nodes.pop(name, None)
        self.on_change()

    def detach(self, name: str) -> None:
        """Stop using node `name` (it is being removed); its instances are then gone and placed elsewhere."""
        self._nodes.pop(name, None)
        self._removed.add(name)
        self.on_change()

    def kept_away(self, nodes: set[str], now: float) -> set[str]:
        """Of the nodes named (those instances were last seen on), the ones not attached whose instances are
        still kept: not detached for good, and away for less than a lost node's time."""
        away = nodes - set(self._nodes) - self._removed
        self._away_since = {node: self._away_since.get(node, now) for node in away}
        return {node for node, since in self._away_since.items() if now - since < NODE_LOST_AFTER_SECONDS}

    def views(self, draining: set[str]) -> list[NodeView]:
        """Each node as placement sees it before any claim; `draining` names the nodes being drained."""
        views = []
        for node in self._nodes.values():
            capacity = node.capacity or Capacity(0, 0)
            views.append(
                NodeView(
                    name=node.name,
                    ready=node.reachable and node.capacity is not None,
                    cpu_millicores=capacity.cpu_millicores,
                    memory_mib=capacity.memory_mib,
                    allocated_cpu_millicores=0,
                    allocated_memory_mib=0,
                    tenant=node.tenant,
                    draining=node.name in draining,
                )
            )
        return views
