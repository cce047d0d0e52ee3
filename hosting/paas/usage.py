"""What running instances use: CPU (millicores, between two samples) and memory (MiB), every few seconds.

In memory only, for the API and the console; they change too often to be worth a database write.
"""

import asyncio
import time
from collections.abc import Iterable

from hosting.paas.nodes import NodePool
from hosting.paas.runtime import Usage
from hosting.paas.tracked import Tracked
from tenants.enums import InstanceState

USAGE_INTERVAL_SECONDS = 10.0


class UsageSampler:
    def __init__(self) -> None:
        self.usage: dict[str, tuple[int, int]] = {}  # instance -> (millicores, MiB) used lately
        self._samples: dict[str, Usage] = {}  # instance -> its last counters
        self._sampled_at = 0.0

    async def sample(self, pool: NodePool, tracked: Iterable[Tracked]) -> None:
        """Sample every running instance, if the last sample is old enough."""
        if time.monotonic() - self._sampled_at < USAGE_INTERVAL_SECONDS:
            return
        self._sampled_at = time.monotonic()
        running = [
            t for t in tracked if t.state != InstanceState.STOPPING and t.node in pool and pool[t.node].reachable
        ]
        samples = await asyncio.gather(*(pool[t.node].runtime.usage(t.container_id) for t in running))
        usage: dict[str, tuple[int, int]] = {}
        for instance, now in zip(running, samples, strict=True):
            before = self._samples.get(instance.id)
            if now is None:
                continue
            self._samples[instance.id] = now
            if before is not None and now.system_ns > before.system_ns:
                share = (now.cpu_ns - before.cpu_ns) / (now.system_ns - before.system_ns)
                usage[instance.id] = (round(share * now.cpus * 1000), -(-now.memory_bytes // 2**20))  # MiB, up
        kept = {t.id for t in running}
        self._samples = {key: value for key, value in self._samples.items() if key in kept}
        self.usage = usage
