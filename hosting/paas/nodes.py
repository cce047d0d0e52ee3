"""The nodes the reconciler may place instances on, each a runtime plus what placement needs to know."""

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from hosting.paas.runtime import Capacity, EngineError, NodeRuntime
from tenants import db
from tenants import nodes as registry
from tenants.models import Node

log = logging.getLogger(__name__)

NODE_LOST_AFTER_SECONDS = 30.0  # unreachable this long: its instances are placed elsewhere


@dataclass
class NodeHandle:
    runtime: NodeRuntime
    driver: str
    docker_url: str
    capacity: Capacity | None = None  # unknown until the engine first answers
    reachable: bool = False
    tenant: str | None = None  # the owner of a dedicated VM node
    draining: bool = False  # no new instances; those on it are replaced elsewhere
    warned: bool = False  # its being unreachable is logged already
    unreachable_since: float | None = None  # monotonic time it stopped answering
    lost_after: float = NODE_LOST_AFTER_SECONDS

    def lost(self, now: float) -> bool:
        """Unreachable for so long that its instances are given up (and placed elsewhere)."""
        return self.unreachable_since is not None and now - self.unreachable_since >= self.lost_after

    @property
    def name(self) -> str:
        return self.runtime.name

    async def refresh(self, engine: Engine) -> bool:
        """Ask the engine for its capacity and record the node as ready; False if it does not answer."""
        try:
            self.capacity = await self.runtime.capacity()
        except EngineError as exc:
            if self.reachable or not self.warned:  # once per outage, not once per pass
                log.warning("node %s: %s", self.name, exc)
                self.warned = True
            await self.mark_unreachable(engine)
            return False
        self.warned = False
        self.reachable = True
        self.unreachable_since = None
        await asyncio.to_thread(self._record, engine, "ready")
        return True

    async def mark_unreachable(self, engine: Engine) -> None:
        self.reachable = False
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
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
