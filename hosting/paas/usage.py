"""What running instances use, sampled every 10 s from their cgroups' counters (one read per node): in memory for
the API and the console (millicores and MiB lately), and metered into hourly rollups (`tenants.usage`).

Metering takes differences of cumulative counters, per instance and cgroup incarnation: the cgroup's identity
(its directory's inode, read with the counters) tells a container started again from the one read before,
whatever the engine's cached start time says; a new incarnation, or a counter that went down, counts from zero.
Each sample's amounts are written in one transaction with where each instance's count stands (its container,
cgroup and CPU counter: `usage_position`). A daemon started again goes on from those positions: an instance whose
container kept running (the same cgroup, its counter not lower) counts the CPU used while no daemon ran, and its
memory- and instance-hours over the gap, at most `MAX_DOWN_SECONDS` of them (the memory held over the gap is
taken as what the first reading after it holds); one started again meanwhile counts from zero. Nothing counts
twice: what a position covers was written with it. Only an instance with no position (a daemon killed before
its first write) and a container started before this daemon is a baseline at its first sample.

Durations (memory- and instance-hours) are measured on the monotonic clock; amounts go to the wall clock's hour
(UTC) of their sample. A gap while an instance's node was not read (unreachable, its read failed) counts its
CPU in full but at most `MAX_GAP_SECONDS` of time; a slow pass is no gap. Sampling never fails a reconcile pass:
a node or container that cannot be read is logged and left for the next sample.
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
from hosting.paas.tracked import Tracked
from tenants import db
from tenants.enums import InstanceState, Isolation
from tenants.usage import Amounts, Batch, Position, Traffic, UsageKey, hour_of, merge, positions, record

log = logging.getLogger(__name__)

USAGE_INTERVAL_SECONDS = 10.0
MAX_GAP_SECONDS = 3 * USAGE_INTERVAL_SECONDS  # of memory and time counted across a node's missed samples
MAX_DOWN_SECONDS = 3600.0  # of memory and time counted across a daemon's restart, for a container that ran on
STORAGE_INTERVAL_SECONDS = 300.0  # volumes' sizes are read and counted this often, not every sample
SECONDS_PER_HOUR = 3600
MIB = 2**20

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


@dataclass(frozen=True)
class Sample:
    """An instance's counters at one moment, and whose they are. `interrupted`: its node was not read at one
    sample or more since the instance's last one."""

    instance: str
    tenant: str
    app: str
    node_kind: Isolation
    started_at: datetime | None  # when its container last started (as the engine said: maybe from a cache)
    counters: Counters
    container_id: str = ""
    interrupted: bool = False


@dataclass(frozen=True)
class _Last:
    container_id: str
    cgroup: int
    cpu_ns: int
    at: datetime  # wall clock
    mono: float | None  # monotonic clock; None for a position a daemon before this one saved


class Meter:
    """Samples in, amounts out (`pending`): the differencing, without any I/O. `began` is when it started;
    `saved` the positions the last daemon wrote (`tenants.usage.positions`)."""

    def __init__(self, began: datetime, saved: Mapping[str, Position] | None = None) -> None:
        self.began = began
        self.pending: Batch = {}  # not written yet
        self.lately: dict[str, tuple[int, int]] = {}  # instance -> (millicores, MiB) between its last two samples
        self.gone: set[str] = set()  # instances forgotten whose positions are not deleted yet
        self._last = {
            instance: _Last(p.container_id, p.cgroup, p.cpu_ns, p.at, None) for instance, p in (saved or {}).items()
        }

    def observe(self, samples: Iterable[Sample], now: datetime, kept: set[str], mono: float | None = None) -> None:
        """Add what each sampled instance used since its previous sample; forget instances not in `kept` (gone).
        `now` is the wall clock (the hour), `mono` the monotonic clock (durations; `now`'s timestamp if not
        given)."""
        mono = now.timestamp() if mono is None else mono
        lately, hour = {}, hour_of(now)
        for sample in samples:
            before, counters = self._last.get(sample.instance), sample.counters
            self._last[sample.instance] = _Last(sample.container_id, counters.cgroup, counters.cpu_ns, now, mono)
            if before is None:
                if sample.started_at is None or sample.started_at < self.began:
                    continue  # no position, and it may have been counted by an earlier meter: a baseline
                cpu_ns = counters.cpu_ns
                seconds = (now - max(sample.started_at, self.began)).total_seconds()
                seconds = min(seconds, MAX_GAP_SECONDS) if sample.interrupted else seconds
            else:
                if before.mono is None:  # across a restart of the daemon
                    elapsed = min((now - before.at).total_seconds(), MAX_DOWN_SECONDS)
                else:
                    elapsed = mono - before.mono
                    elapsed = min(elapsed, MAX_GAP_SECONDS) if sample.interrupted else elapsed
                same = before.container_id == sample.container_id and before.cgroup == counters.cgroup
                if same and counters.cpu_ns >= before.cpu_ns:
                    cpu_ns, seconds = counters.cpu_ns - before.cpu_ns, elapsed
                    if before.mono is not None and elapsed > 0:
                        millicores = round(cpu_ns / elapsed / 1e6)
                        lately[sample.instance] = (millicores, math.ceil(counters.memory_bytes / MIB))
                else:  # a new incarnation: from zero, and its time since it started (within the last interval)
                    started = (now - sample.started_at).total_seconds() if sample.started_at else elapsed
                    cpu_ns, seconds = counters.cpu_ns, min(started, elapsed)
            seconds = max(0.0, seconds)
            amounts = Amounts(
                cpu_seconds=cpu_ns / 1e9,
                memory_mib_hours=counters.memory_bytes / MIB * seconds / SECONDS_PER_HOUR,
                instance_hours=seconds / SECONDS_PER_HOUR,
            )
            merge(self.pending, UsageKey(sample.tenant, sample.app, hour, sample.node_kind), amounts)
        self.gone |= self._last.keys() - kept
        self._last = {instance: last for instance, last in self._last.items() if instance in kept}
        self.lately = lately

    def positions(self) -> list[Position]:
        """Where each instance's count stands: to be written with `take`'s batch."""
        return [Position(i, last.container_id, last.cgroup, last.cpu_ns, last.at) for i, last in self._last.items()]

    def take(self) -> Batch:
        batch, self.pending = self.pending, {}
        return batch

    def give_back(self, batch: Batch) -> None:
        """A batch whose write failed: written with the next."""
        for key, amounts in batch.items():
            merge(self.pending, key, amounts)


class UsageSampler:
    """Samples the instances every `USAGE_INTERVAL_SECONDS` and writes what they used, with the front door's
    traffic (`traffic`, set by the daemon: what came since it was last asked) and the volumes' storage. Its
    first sample loads the positions the last daemon saved."""

    def __init__(
        self, engine: Engine, clock: Clock = lambda: datetime.now(UTC), monotonic: Monotonic = time.monotonic
    ) -> None:
        self.engine, self.clock, self.monotonic = engine, clock, monotonic
        self.began = clock()  # containers started since are this daemon's to count from zero
        self.meter: Meter | None = None  # made with the saved positions, at the first sample
        self.traffic: Callable[[], Traffic] = dict
        self._unwritten: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._stored_at = monotonic()  # storage is counted up to here
        self._sampled_at: float | None = None
        self._missed: set[str] = set()  # nodes not read at a sample since their instances' last
        self._absent: set[str] = set()  # containers of ready instances without counters at the last sample
        self._uncounted: set[str] = set()  # and at two samples in a row: warned of, once

    @property
    def usage(self) -> Mapping[str, tuple[int, int]]:
        """Instance -> (millicores, MiB) used lately."""
        return self.meter.lately if self.meter is not None else {}

    async def sample(self, pool: NodePool, tracked: Iterable[Tracked], names: Mapping[int, tuple[str, str]]) -> None:
        """Sample every running instance and write what they used, if the last sample is old enough. `names`
        gives each app's (tenant, name) by its id. Never raises: what fails is logged, and tried again at the
        next sample."""
        mono = self.monotonic()
        if self._sampled_at is not None and mono - self._sampled_at < USAGE_INTERVAL_SECONDS:
            return
        self._sampled_at = mono
        try:
            await self._sample(pool, list(tracked), names)
        except Exception:  # sampling must never cost the reconciler its pass
            log.exception("usage not sampled")

    async def _sample(self, pool: NodePool, tracked: list[Tracked], names: Mapping[int, tuple[str, str]]) -> None:
        if self.meter is None:
            try:
                saved = await asyncio.to_thread(self._positions)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("usage not sampled yet: the meter's positions are not read: %s", exc)
                return
            self.meter = Meter(self.began, saved)
        by_node: dict[str, list[Tracked]] = {}
        for t in tracked:
            if t.state == InstanceState.STOPPING or t.app_id not in names or t.node not in pool:
                continue
            if pool[t.node].reachable:
                by_node.setdefault(t.node, []).append(t)
            else:
                self._missed.add(t.node)
        kinds = {node: _kind(pool[node]) for node in by_node}  # a node may go while it is read
        read = await asyncio.gather(*(_read(pool[node], group) for node, group in by_node.items()))
        now, mono = self.clock(), self.monotonic()
        samples, absent = [], set()
        for (node, group), counters in zip(by_node.items(), read, strict=True):
            if counters is None:
                self._missed.add(node)
                continue
            interrupted = node in self._missed
            self._missed.discard(node)
            for t in group:
                if t.container_id in counters:
                    tenant, app = names[t.app_id]
                    c = counters[t.container_id]
                    samples.append(Sample(t.id, tenant, app, kinds[node], t.started_at, c, t.container_id, interrupted))
                elif t.state == InstanceState.READY:  # running, as far as the last pass saw
                    absent.add(t.container_id)
                    if t.container_id not in self._absent or t.container_id in self._uncounted:
                        continue  # it may have just stopped: twice in a row is no chance
                    self._uncounted.add(t.container_id)  # its cgroup is not where the layout says (cgroup-parent?)
                    log.warning(
                        "usage: instance %s runs on node %s but its container %s has no cgroup counters where the "
                        "engine's layout puts them: it is not metered",
                        t.id,
                        node,
                        t.container_id[:12],
                    )
        self.meter.observe(samples, now, {t.id for t in tracked}, mono)
        self._absent, self._uncounted = absent, self._uncounted & absent
        await self.flush(now)

    async def flush(self, now: datetime) -> None:
        """Write what was metered since the last write, and where each instance's count stands, in one
        transaction; the volumes' storage every `STORAGE_INTERVAL_SECONDS`."""
        if self.meter is None:
            return
        batch, traffic = self.meter.take(), added(self._unwritten, self.traffic())
        self._unwritten = {}
        gone, mono = set(self.meter.gone), self.monotonic()
        stored = mono - self._stored_at
        stored = stored if stored >= STORAGE_INTERVAL_SECONDS else 0.0
        try:
            await asyncio.to_thread(self._write, batch, traffic, stored, now, self.meter.positions(), gone)
        except (SQLAlchemyError, OSError) as exc:  # a locked or full database: kept for the next write
            log.warning("usage not written yet: %s", exc)
            self.meter.give_back(batch)
            self._unwritten = traffic
            return
        self.meter.gone -= gone
        if stored:
            self._stored_at = mono

    def _positions(self) -> dict[str, Position]:
        with db.session(self.engine) as session:
            return positions(session)

    def _write(
        self, batch: Batch, traffic: Traffic, stored: float, now: datetime, at: list[Position], gone: set[str]
    ) -> None:
        with db.session(self.engine) as session:
            record(session, batch, traffic, stored, now, at, gone)


async def _read(node: NodeHandle, group: list[Tracked]) -> dict[str, Counters] | None:
    """The counters of the node's containers, or None if they could not be read (whyever: logged)."""
    try:
        return await node.runtime.counters([t.container_id for t in group])
    except Exception as exc:  # an engine away, a file gone mid-read, an answer that does not parse
        log.warning("usage of node %s not read: %r", node.name, exc)
        return None


def _kind(node: NodeHandle) -> Isolation:
    return Isolation.DEDICATED if node.tenant else Isolation.SHARED


def added(*traffics: Traffic) -> dict[tuple[str, str], tuple[int, int, int]]:
    """The sum of the front door's counts."""
    total: dict[tuple[str, str], tuple[int, int, int]] = {}
    for traffic in traffics:
        for key, (requests, bytes_in, bytes_out) in traffic.items():
            before = total.get(key, (0, 0, 0))
            total[key] = (before[0] + requests, before[1] + bytes_in, before[2] + bytes_out)
    return total
