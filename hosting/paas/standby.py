"""What a standby daemon keeps current while another leads: its front door, fed from the leader's records, and
its view of its engines, for its own API.

Only the leader reconciles, and it tells its own front door each app's ready endpoints as it sees them. Every
other daemon serves its host's front door too: it reads the same desired state and instance rows the leader
writes, and publishes the same routes from them — at once when told of a change, and every
`REFRESH_SECONDS` in any case (a notification may be lost). It stops before the daemon's own reconciler starts,
so the two never publish over each other. Its engines are asked whether they answer as often (nothing recorded:
the leader records the nodes), so its API's calls to them (images, logs, a shell) know where to go. And what its
front door carried (requests, bytes) is metered every `USAGE_INTERVAL_SECONDS`, added to the same rows as the
leader's (the writes add, so daemons never overwrite each other's counts).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from hosting.paas.nodes import NodePool
from hosting.paas.pause import pause
from hosting.paas.reconciler import Publish
from hosting.paas.serving import routes
from hosting.paas.tracked import Tracked
from hosting.paas.usage import USAGE_INTERVAL_SECONDS, added
from tenants import db, usage
from tenants import instances as store
from tenants.routes import RouteSpec
from tenants.usage import Traffic

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


class Standby:
    """Routes for `publish`, read from the records; `pool`'s engines probed; the front door's `traffic` metered."""

    def __init__(
        self,
        engine: Engine,
        pool: NodePool,
        publish: Publish,
        traffic: Callable[[], Traffic] = dict,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.pool, self.publish, self.traffic, self.monotonic = engine, pool, publish, traffic, monotonic
        self._metered_at = monotonic()
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
        while not stopping.is_set():
            self._wake.clear()
            await asyncio.gather(*(node.probe() for node in self.pool))
            if self.monotonic() - self._metered_at >= USAGE_INTERVAL_SECONDS:
                await self._meter()
            try:
                served = await asyncio.to_thread(self._load)
            except Exception as exc:  # the database is out of reach a moment: the routes stay as they are
                log.warning("the standby's routes were not read: %s", exc)
            else:
                if served != self._published:
                    self._published = served
                    self.publish(served)
            await pause(self._wake, stopping, REFRESH_SECONDS)

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

    def _load(self) -> list[RouteSpec]:
        with db.session(self.engine) as session:
            desired = store.desired_apps(session)
            rows = store.load_instances(session)
        return routes(desired, [Tracked.adopt(row) for row in rows.values()])
