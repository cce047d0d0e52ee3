"""What a standby daemon does while another leads: its front door, fed from the leader's records, its view of its
engines, for its own API, and what its door's traffic tells the leader.

Only the leader reconciles, and it tells its own front door each app's ready endpoints as it sees them. Every
other daemon serves its host's front door too: it reads the same desired state and instance rows the leader
writes, and publishes the same routes from them — at once when told of a change, and every
`REFRESH_SECONDS` in any case (a notification may be lost). It stops before the daemon's own reconciler starts,
so the two never publish over each other. Its engines are asked whether they answer as often (nothing recorded:
the leader records the nodes), so its API's calls to them (images, logs, a shell) know where to go. Instances on
remote hosts are reached through SSH forwards of its own (`tunnels`), not the leader's, and so are those hosts'
engines, for its API; the others' recorded endpoints are on the leader's machine's loopback, routed only by a
standby on that machine. And what its front door carried (requests, bytes) is metered every
`USAGE_INTERVAL_SECONDS`, added to the same rows as the leader's (the writes add, so daemons never overwrite each
other's counts).

Sleeping apps: the door reports each app's activity (idle time, requests in flight) every `REFRESH_SECONDS`, and
the leader puts an app to sleep only when it is idle at every door. A request for a sleeping app reaches this
door's activator, which asks the leader to wake it (`request_wake`: a notification) and holds the request until
the records show an instance of it ready.
"""

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from hosting.paas.nodes import NodePool
from hosting.paas.pause import pause
from hosting.paas.reconciler import Drain, LetGo, Publish
from hosting.paas.serving import routes
from hosting.paas.sleeper import WAKE_TIMEOUT_SECONDS, ActivitySource, AppKey
from hosting.paas.tracked import Tracked
from hosting.paas.tunnels import HostAddress, Tunnels
from hosting.paas.usage import USAGE_INTERVAL_SECONDS, added
from tenants import daemons, db, usage
from tenants import instances as store
from tenants import nodes as registry
from tenants.enums import InstanceState
from tenants.instances import DesiredApp
from tenants.models import Instance
from tenants.routes import Activity, RouteSpec
from tenants.ssh_targets import SSH_DRIVER
from tenants.usage import Traffic

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
LET_GO_POLL_SECONDS = 0.05  # how often the leader reads whether the standbys' doors let go of an instance
WAKE_POLL_SECONDS = 0.02  # how often the records are read for a woken app's ready instance


class Standby:
    """Routes for `publish`, read from the records; `pool`'s engines probed; the front door's `traffic` metered.
    Remote hosts' instances are reached through `tunnels` (None: not routed here), which call `nudge` once a host is
    logged in to."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        pool: NodePool,
        publish: Publish,
        *,
        traffic: Callable[[], Traffic] = dict,
        activity: ActivitySource | None = None,
        request_wake: Callable[[str, str], None] = lambda tenant, app: None,
        tunnels: Tunnels | None = None,
        drain: Drain | None = None,
        host: str = socket.gethostname(),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.name, self.pool, self.publish, self.monotonic = engine, name, pool, publish, monotonic
        self.traffic, self.activity, self.request_wake, self.drain = traffic, activity, request_wake, drain
        self.tunnels = tunnels
        self._routed: dict[str, str] = {}  # instance -> its endpoint at this door, as last published
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._let_go: set[str] = set()  # the instances being removed this door said it let go of
        self.host = host  # this daemon's machine
        self._leader_host: str | None = None  # the leader's machine, as last known
        self._metered_at = self._reported_at = monotonic()
        self._waking: dict[AppKey, asyncio.Task[str | None]] = {}
        self._unwritten: Traffic = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published: list[RouteSpec] | None = None

    def nudge(self) -> None:
        """Read the records again now; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish the recorded routes whenever they change, until `stopping` (or cancelled: the daemon leads)."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._serve(stopping)
        finally:
            for task in [*self._draining.values(), *self._waking.values()]:
                task.cancel()
            if self.tunnels is not None:
                await self.tunnels.close()

    async def _serve(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()
            await asyncio.gather(*(node.probe() for node in self.pool))
            if self.monotonic() - self._metered_at >= USAGE_INTERVAL_SECONDS:
                await self._meter()
            if self.monotonic() - self._reported_at >= REFRESH_SECONDS:
                await self._report()
            try:
                desired, rows, hosts, leader_host = await asyncio.to_thread(self._load)
                self._leader_host = leader_host or self._leader_host
            except Exception as exc:  # the database is out of reach a moment: the routes stay as they are
                log.warning("the standby's routes were not read: %s", exc)
            else:
                reached = await self._reached(rows, hosts)
                served = routes(desired, reached)
                if served != self._published:
                    self._published = served
                    self.publish(served)
                await self._let_go_of(rows, reached)
            await pause(self._wake, stopping, REFRESH_SECONDS)

    async def wake(self, tenant: str, app: str) -> str | None:
        """An endpoint of a ready instance of the app, once the leader, asked, woke it; None if none is ready within
        `WAKE_TIMEOUT_SECONDS`. The requests held for one app share one wait."""
        key = (tenant, app)
        if key not in self._waking:
            self.request_wake(tenant, app)
            self._waking[key] = asyncio.ensure_future(self._ready(tenant, app))
            self._waking[key].add_done_callback(lambda _: self._waking.pop(key, None))
        return await asyncio.shield(self._waking[key])

    async def _ready(self, tenant: str, app: str) -> str | None:
        deadline = self.monotonic() + WAKE_TIMEOUT_SECONDS
        while self.monotonic() < deadline:
            rows, hosts = await asyncio.to_thread(self._ready_instances, tenant, app)
            endpoints = [t.endpoint for t in await self._reached(rows, hosts, every=False) if t.endpoint]
            if endpoints:
                return endpoints[0]
            await asyncio.sleep(WAKE_POLL_SECONDS)
        return None

    def _ready_instances(self, tenant: str, app: str) -> tuple[list[Instance], dict[str, HostAddress]]:
        with db.session(self.engine) as session:
            return store.ready_instances(session, tenant, app), _remote_hosts(session)

    async def _reached(
        self, rows: list[Instance], hosts: Mapping[str, HostAddress], *, every: bool = True
    ) -> list[Tracked]:
        """The instances as this door reaches them: those on remote hosts through forwards of its own (none yet:
        not routed here), the others (the local node's, VM nodes') at the endpoints the leader recorded, which are on
        its machine's loopback: reached only from that machine (elsewhere the same address is another's, maybe
        another tenant's). `every`: `rows` are all there are (the forwards to no other are let go)."""
        wanted: dict[HostAddress, set[int]] = {}
        for row in rows:
            if row.node in hosts:  # its engine is wanted too (its logs, a shell), whether or not it publishes
                ports = wanted.setdefault(hosts[row.node], set())
                if row.published is not None:
                    ports.add(row.published)
        ours = await self.tunnels.endpoints(wanted, every=every) if self.tunnels is not None else {}
        elsewhere = self._leader_host is not None and self._leader_host != self.host
        reached = [Tracked.adopt(row) for row in rows]
        for instance in reached:
            if instance.node in hosts:
                instance.endpoint = ours.get((instance.node, instance.published or 0))
            elif elsewhere:
                instance.endpoint = None
        return reached

    async def _let_go_of(self, rows: list[Instance], reached: list[Tracked]) -> None:
        """Drain what left this door's routes, and tell the leader which instances it is removing this door has let
        go of: those out of its routes with no drain of theirs still waiting for requests in flight."""
        routed = {t.id: t.endpoint for t in reached if t.state == InstanceState.READY and t.endpoint}
        for instance, endpoint in self._routed.items():
            if routed.get(instance) != endpoint and instance not in self._draining and self.drain is not None:
                self._draining[instance] = asyncio.create_task(self._drain(instance, endpoint))
        self._routed = routed
        removing = {row.id for row in rows if row.state == InstanceState.STOPPING}
        let_go = {instance for instance in removing if instance not in routed and instance not in self._draining}
        if let_go != self._let_go:
            try:
                await asyncio.to_thread(self._write_let_go, let_go)
            except Exception as exc:  # said again at the next read
                log.warning("the front door's drained instances not written: %s", exc)
            else:
                self._let_go = let_go

    async def _drain(self, instance: str, endpoint: str) -> None:
        assert self.drain is not None
        try:
            if not await self.drain(endpoint):
                log.warning("instance %s still had requests in flight at this door after the drain timeout", instance)
        finally:
            del self._draining[instance]
            self.nudge()  # say so at once

    def _write_let_go(self, instances: set[str]) -> None:
        with db.session(self.engine) as session:
            daemons.report_drained(session, self.name, instances)

    async def _report(self) -> None:
        self._reported_at = self.monotonic()
        seen = await self.activity() if self.activity is not None else None
        if seen is None:
            return  # HAProxy did not answer: the rows age with this daemon's heartbeat
        try:
            await asyncio.to_thread(self._write_activity, seen)
        except Exception as exc:
            log.warning("the front door's activity not written: %s", exc)

    def _write_activity(self, seen: Mapping[AppKey, Activity]) -> None:
        with db.session(self.engine) as session:
            daemons.report_activity(session, self.name, seen, db.clock(session))

    async def _meter(self) -> None:
        traffic, self._metered_at = added(self._unwritten, self.traffic()), self.monotonic()
        try:
            await asyncio.to_thread(self._record, traffic)
        except Exception as exc:  # a locked or full database: kept for the next write
            log.warning("the front door's usage not written yet: %s", exc)
            self._unwritten = traffic
        else:
            self._unwritten = {}

    def _record(self, traffic: Traffic) -> None:
        if traffic:
            with db.session(self.engine) as session:
                usage.record(session, {}, traffic, 0.0, datetime.now(UTC))

    def _load(self) -> tuple[list[DesiredApp], list[Instance], dict[str, HostAddress], str | None]:
        with db.session(self.engine) as session:
            desired, rows = store.desired_apps(session), list(store.load_instances(session).values())
            leader = daemons.leader(daemons.daemons(session, db.clock(session)))
            return desired, rows, _remote_hosts(session), leader.host if leader is not None else None


def _remote_hosts(session: Session) -> dict[str, HostAddress]:
    """The remote hosts recorded, by name, as they are logged in to."""
    return {
        node.name: HostAddress(node.name, node.docker_url, node.host_key, node.docker_socket)
        for node in registry.of_driver(session, SSH_DRIVER)
        if node.host_key is not None and node.docker_socket is not None
    }


def other_doors(engine: Engine, name: str, announce: Callable[[], None], timeout: float) -> LetGo:
    """The leader's wait, before it stops a container that served, for every standby's front door to let go of it:
    its row says `stopping` at once and the standbys are told; True once each one alive said it let go, False if
    one had not within `timeout` (its requests in flight may be cut)."""

    async def let_go(instance: str) -> bool:
        await asyncio.to_thread(_mark_stopping, engine, instance)
        announce()
        deadline = time.monotonic() + timeout
        while holding := await asyncio.to_thread(_holding, engine, name, instance):
            if time.monotonic() > deadline:
                log.warning("the front doors of %s did not let go of %s within %.0f s", ", ".join(sorted(holding)),
                            instance, timeout)  # fmt: skip
                return False
            await asyncio.sleep(LET_GO_POLL_SECONDS)
        return True

    return let_go


def _mark_stopping(engine: Engine, instance: str) -> None:
    with db.session(engine) as session:
        store.mark_stopping(session, instance)


def _holding(engine: Engine, name: str, instance: str) -> set[str]:
    with db.session(engine) as session:
        return daemons.holding(session, name, instance, db.clock(session))


def every_door(engine: Engine, name: str, own: ActivitySource) -> ActivitySource:
    """The leader's view of each app's traffic: its own door's, merged with what the standbys' doors reported
    (an app is idle only if idle at every door). None, as from `own`, when its own door does not answer."""

    async def activity() -> Mapping[AppKey, Activity] | None:
        seen = await own()
        if seen is None:
            return None
        elsewhere = await asyncio.to_thread(_elsewhere, engine, name)
        return {key: daemons.merged(elsewhere.get(key), seen[key]) if key in seen else elsewhere[key]
                for key in seen.keys() | elsewhere.keys()}  # fmt: skip

    return activity


def _elsewhere(engine: Engine, name: str) -> dict[AppKey, Activity]:
    with db.session(engine) as session:
        return daemons.activity_elsewhere(session, name, db.clock(session))
