"""What running instances use, sampled every 10 s from their cgroups' counters (one read per node): in memory for
the API and the console (millicores and MiB lately), and metered into hourly rollups (`tenants.usage`).

Metering takes differences of cumulative counters, per instance: a container's first sample counts from zero, and
so does a counter that went down (its container started again). A daemon restart never counts twice: an
instance whose container ran before this meter began is only a baseline at its first sample, since the last
daemon counted it up to its last flush (what came after that is lost: one interval at most). Each sample's
amounts are written in one transaction; a failed write is tried again with the next.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from hosting.paas.cgroups import Counters
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.runtime import EngineError
from hosting.paas.tracked import Tracked
from tenants import db
from tenants.enums import InstanceState, Isolation
from tenants.usage import Amounts, Batch, Traffic, UsageKey, hour_of, merge, record

log = logging.getLogger(__name__)

USAGE_INTERVAL_SECONDS = 10.0
MAX_GAP_SECONDS = 3 * USAGE_INTERVAL_SECONDS  # of memory and time counted between two samples (a node away longer)
SECONDS_PER_HOUR = 3600
MIB = 2**20

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Sample:
    """An instance's counters at one moment, and whose they are."""

    instance: str
    tenant: str
    app: str
    node_kind: Isolation
    started_at: datetime | None  # when its container last started
    counters: Counters


@dataclass(frozen=True)
class _Last:
    started_at: datetime | None
    cpu_ns: int
    at: datetime


class Meter:
    """Samples in, amounts out (`pending`): the differencing, without any I/O. `began` is when it started; an
    instance that started before, first seen, is a baseline."""

    def __init__(self, began: datetime) -> None:
        self.began = began
        self.pending: Batch = {}  # not written yet
        self.lately: dict[str, tuple[int, int]] = {}  # instance -> (millicores, MiB) between its last two samples
        self._last: dict[str, _Last] = {}

    def observe(self, samples: Iterable[Sample], now: datetime, kept: set[str]) -> None:
        """Add what each sampled instance used since its previous sample; forget instances not in `kept` (gone)."""
        lately, hour = {}, hour_of(now)
        for sample in samples:
            before, counters = self._last.get(sample.instance), sample.counters
            self._last[sample.instance] = _Last(sample.started_at, counters.cpu_ns, now)
            if before is None and (sample.started_at is None or sample.started_at < self.began):
                continue  # counted by an earlier meter
            if before is None or before.started_at != sample.started_at or counters.cpu_ns < before.cpu_ns:
                cpu_ns, since = counters.cpu_ns, sample.started_at or now  # a new or restarted container
            else:
                cpu_ns, since = counters.cpu_ns - before.cpu_ns, before.at
                elapsed = (now - before.at).total_seconds()
                if elapsed > 0:
                    lately[sample.instance] = (round(cpu_ns / elapsed / 1e6), math.ceil(counters.memory_bytes / MIB))
            seconds = min(max(0.0, (now - since).total_seconds()), MAX_GAP_SECONDS)
            amounts = Amounts(
                cpu_seconds=cpu_ns / 1e9,
                memory_mib_hours=counters.memory_bytes / MIB * seconds / SECONDS_PER_HOUR,
                instance_hours=seconds / SECONDS_PER_HOUR,
            )
            merge(self.pending, UsageKey(sample.tenant, sample.app, hour, sample.node_kind), amounts)
        self._last = {instance: last for instance, last in self._last.items() if instance in kept}
        self.lately = lately

    def take(self) -> Batch:
        batch, self.pending = self.pending, {}
        return batch

    def give_back(self, batch: Batch) -> None:
        """A batch whose write failed: written with the next."""
        for key, amounts in batch.items():
            merge(self.pending, key, amounts)


class UsageSampler:
    """Samples the instances every `USAGE_INTERVAL_SECONDS` and writes what they used, with the front door's
    traffic (`traffic`, set by the daemon: what came since it was last asked) and the volumes' storage."""

    def __init__(self, engine: Engine, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.engine, self.clock = engine, clock
        self.meter = Meter(clock())
        self.traffic: Callable[[], Traffic] = dict
        self._unwritten: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._stored_at = self.meter.began  # storage is counted up to here
        self._sampled_at = 0.0

    @property
    def usage(self) -> Mapping[str, tuple[int, int]]:
        """Instance -> (millicores, MiB) used lately."""
        return self.meter.lately

    async def sample(self, pool: NodePool, tracked: Iterable[Tracked], names: Mapping[int, tuple[str, str]]) -> None:
        """Sample every running instance and write what they used, if the last sample is old enough. `names`
        gives each app's (tenant, name) by its id."""
        if time.monotonic() - self._sampled_at < USAGE_INTERVAL_SECONDS:
            return
        self._sampled_at = time.monotonic()
        tracked = list(tracked)
        by_node: dict[str, list[Tracked]] = {}
        for t in tracked:
            if t.state != InstanceState.STOPPING and t.app_id in names and t.node in pool and pool[t.node].reachable:
                by_node.setdefault(t.node, []).append(t)
        kinds = {node: _kind(pool[node]) for node in by_node}  # a node may go while it is read
        read = await asyncio.gather(*(_read(pool[node], group) for node, group in by_node.items()))
        now = self.clock()
        samples = [
            Sample(t.id, *names[t.app_id], kinds[t.node], t.started_at, counters[t.container_id])
            for group, counters in zip(by_node.values(), read, strict=True)
            for t in group
            if t.container_id in counters
        ]
        self.meter.observe(samples, now, {t.id for t in tracked})
        await self.flush(now)

    async def flush(self, now: datetime) -> None:
        """Write what was metered since the last write, in one transaction."""
        batch, traffic = self.meter.take(), _added(self._unwritten, self.traffic())
        self._unwritten = {}
        stored = (now - self._stored_at).total_seconds()
        try:
            await asyncio.to_thread(self._write, batch, traffic, stored, now)
        except (SQLAlchemyError, OSError) as exc:  # a locked or full database: kept for the next write
            log.warning("usage not written yet: %s", exc)
            self.meter.give_back(batch)
            self._unwritten = traffic
            return
        self._stored_at = now

    def _write(self, batch: Batch, traffic: Traffic, stored: float, now: datetime) -> None:
        with db.session(self.engine) as session:
            record(session, batch, traffic, stored, now)


async def _read(node: NodeHandle, group: list[Tracked]) -> dict[str, Counters]:
    try:
        return await node.runtime.counters([t.container_id for t in group])
    except EngineError as exc:
        log.debug("usage of node %s not read: %s", node.name, exc)
        return {}


def _kind(node: NodeHandle) -> Isolation:
    return Isolation.DEDICATED if node.tenant else Isolation.SHARED


def _added(*traffics: Traffic) -> dict[tuple[str, str], tuple[int, int, int]]:
    total: dict[tuple[str, str], tuple[int, int, int]] = {}
    for traffic in traffics:
        for key, (requests, bytes_in, bytes_out) in traffic.items():
            before = total.get(key, (0, 0, 0))
            total[key] = (before[0] + requests, before[1] + bytes_in, before[2] + bytes_out)
    return total
