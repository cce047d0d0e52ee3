"""Which daemon leads, and the wake-ups that carry changes between daemons.

One daemon leads a platform: it alone reconciles, places instances, runs the schedules and drives the VMs (two
reconcilers on the same engines would start every instance twice). The others stand by: they serve the API,
their host's SSH and front door, and lead when the leader goes.

On PostgreSQL the leader is the daemon that holds a session-level advisory lock (`LOCK_KEY`) on a connection of
its own. The server releases it the moment that session ends — its process killed at once, its host or its network
gone once the server's TCP keepalives (`SERVER_KEEPALIVES`, set on the session) go unanswered — and a standby,
trying every `TRY_SECONDS`, leads next. The leader proves its session alive as often; if it cannot within
`PROBE_TIMEOUT_SECONDS` (before the server would give the session up), its term ends (`demoted`): the daemon stops
its leader work at once, mid-pass if so, and stands by again in the same process (a database restarted under a
lone daemon costs it a few seconds of reconciling, not its life). A leader that stops keeps its lock until its work
has (`released`): a standby never leads while it still acts.

The same connection LISTENs on `CHANGES`: a daemon whose API changed the desired state NOTIFYs it, and every
other daemon's `on_change` runs (the leader's reconciler passes at once; a standby's front door reloads its
routes). A notification names its sender, which takes its own as said already (a leader's after each pass wrote
rows would bring it another pass each time).
A notification is a wake-up only, lost on a disconnect: the database stays the truth, read again every pass.

A daemon's name is its own the same way: it holds a second advisory lock, keyed by its name (`claimed`), on a
connection of its own for its whole life, so a second daemon given a running one's name is refused at once, and one
started again right after its last run died is not.

On SQLite (one daemon: its home's lock file keeps a second out) the daemon leads from its start.
"""

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from sqlalchemy import Engine
from sqlmodel import Session

from tenants import daemons, db

log = logging.getLogger(__name__)

LOCK_KEY = 0x5374726174614C64  # "StrataLd" in ASCII: no other program on the database takes this lock
NAME_LOCK_CLASS = 0x53744E6D  # "StNm": a name's lock is (this, hashtext(name)), a space apart from `LOCK_KEY`'s
CHANGES = "strata_changes"  # payload: the sending daemon's name
WAKES = "strata_wakes"  # payload TENANT/APP: a standby's front door holds a request for that sleeping app
TRY_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = 1.0
# The server gives up a silent lock session (a cut network, a host gone) after 3 + 3 x 1 s of unanswered TCP
# keepalives: later than the leader gives up its lead (`PROBE_TIMEOUT_SECONDS` after its last good probe), so the
# next leader never begins before the last one stopped. (A Unix socket has no keepalive; its end is seen at once.)
SERVER_KEEPALIVES = "-c tcp_keepalives_idle=3 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"


class NameTaken(Exception):
    """Another daemon running on the database has this daemon's name."""


@contextmanager
def claimed(engine: Engine, name: str) -> Iterator[None]:
    """Hold `name` for the daemon while in the block, or raise NameTaken at once. Two daemons of one name would
    share one row, each taking the other's door activity and builds for its own. The lock is the session's: the
    server frees it the moment a daemon's process dies (or its host, once the keepalives go unanswered)."""
    if engine.dialect.name != "postgresql":
        yield  # SQLite's database is one home's, and its daemon is alone (the home's lock)
        return
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=db.CONNECT_TIMEOUT_SECONDS,
        application_name=f"strata daemon name ({name})",
        options=SERVER_KEEPALIVES,
    ) as connection:
        row = connection.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (NAME_LOCK_CLASS, name)).fetchone()
        if not (row and row[0]):
            raise NameTaken(name)
        yield


class Leadership:
    """This daemon's part in the election. `leading` is set while it leads; `demoted` is set when a term ends
    without its asking (the lock's session failed): its leader work must stop at once, and it stands by again,
    leading again when it wins the lock again. `on_change` runs (on the loop) when another daemon says the desired
    state changed; `on_wake`, while leading, when a standby asks for a sleeping app to be woken."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        on_change: Callable[[], None],
        on_wake: Callable[[str, str], None] = lambda tenant, app: None,
    ) -> None:
        self.engine, self.name, self.on_change, self.on_wake = engine, name, on_change, on_wake
        self.leading, self.demoted = asyncio.Event(), asyncio.Event()
        self.since: datetime | None = None  # when this daemon began to lead
        self._postgres = engine.dialect.name == "postgresql"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._announcing = False
        self._announce_again = False
        self._sending: set[asyncio.Future[None]] = set()

    async def run(self, stopping: asyncio.Event, released: asyncio.Event) -> None:
        """Take part, registered and heartbeating: standing by until the lock is won, leading while it is held.
        A standby ends at `stopping`; a leader keeps the lock until `released` (its work has stopped: no standby
        may lead before). The daemon's row is removed at the end."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._write, self._register_row)
        beating = asyncio.create_task(self._heartbeat())
        try:
            if self._postgres:
                await self._elect(stopping, released)
            else:
                await self._lead()
                await released.wait()
        finally:
            beating.cancel()
            try:
                await asyncio.to_thread(self._write, lambda session: daemons.leave(session, self.name))
            except Exception as exc:  # the database is out of reach: the row ages into `gone`
                log.warning("could not remove this daemon's row: %s", exc)

    def announce(self) -> None:
        """Tell the other daemons the desired state changed (NOTIFY); safe from any thread, coalesced."""
        if self._postgres and self._loop is not None:
            self._loop.call_soon_threadsafe(self._schedule_announce)

    def _schedule_announce(self) -> None:
        if self._announcing:
            self._announce_again = True
            return
        self._announcing = True
        task = asyncio.ensure_future(self._send_announcements())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_announcements(self) -> None:
        try:
            while True:
                self._announce_again = False
                try:
                    await asyncio.to_thread(self._notify)
                except Exception as exc:  # a wake-up lost: the others read the database on their own anyway
                    log.warning("could not tell the other daemons of a change: %s", exc)
                if not self._announce_again:
                    return
        finally:
            self._announcing = False

    def _notify(self) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "SELECT pg_notify(%(channel)s, %(payload)s)", {"channel": CHANGES, "payload": self.name}
            )

    def request_wake(self, tenant: str, app: str) -> None:
        """Ask the leader to wake the app (NOTIFY); from the loop."""
        if not self._postgres:
            return  # one daemon: it leads
        task = asyncio.ensure_future(asyncio.to_thread(self._send_wake, f"{tenant}/{app}"))
        self._sending.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._sending.discard)

    def _send_wake(self, payload: str) -> None:
        try:
            with self.engine.begin() as connection:
                connection.exec_driver_sql(
                    "SELECT pg_notify(%(channel)s, %(payload)s)", {"channel": WAKES, "payload": payload}
                )
        except Exception as exc:  # the request waits its time out at the activator, answered 503
            log.warning("could not ask the leader to wake %s: %s", payload, exc)

    async def _elect(self, stopping: asyncio.Event, released: asyncio.Event) -> None:
        """Stand by, trying for the lock, until won; then lead, probing the lock's session. A session that fails
        ends the term (`demoted`), and the daemon stands by again, on a new connection."""
        while not self._done(stopping, released):
            try:
                async with await self._connect() as connection:
                    await connection.execute(f"LISTEN {CHANGES}")
                    await connection.execute(f"LISTEN {WAKES}")
                    while not self._done(stopping, released):
                        if self.leading.is_set():
                            await self._probe(connection)
                        elif not stopping.is_set() and await self._try_lock(connection):
                            await self._lead()
                        await self._listen(connection)
            except (psycopg.Error, TimeoutError) as exc:
                if self.leading.is_set():
                    log.error("this daemon (%s) lost the lead: its lock's session failed (%s)", self.name, exc)
                    self.leading.clear()
                    self.since = None
                    self.demoted.set()
                    await self._beat()  # its row says so at once, if the database answers
                else:
                    log.warning("standing by without the database (%s); trying again", exc)
                if not self._done(stopping, released):
                    await _pause(stopping, RECONNECT_SECONDS)

    def _done(self, stopping: asyncio.Event, released: asyncio.Event) -> bool:
        return released.is_set() if self.leading.is_set() else stopping.is_set()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await psycopg.AsyncConnection.connect(
            conninfo,
            autocommit=True,
            connect_timeout=db.CONNECT_TIMEOUT_SECONDS,
            application_name=f"strata leader election ({self.name})",
            options=SERVER_KEEPALIVES,
        )

    async def _listen(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Wait `TRY_SECONDS` for notifications, passing each on."""
        async for notification in connection.notifies(timeout=TRY_SECONDS):
            if notification.channel == CHANGES:
                if notification.payload != self.name:
                    self.on_change()
            elif self.leading.is_set():
                tenant, _, app = notification.payload.partition("/")
                self.on_wake(tenant, app)

    async def _try_lock(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> bool:
        cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def _probe(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """The lock's session answers within `PROBE_TIMEOUT_SECONDS`, or TimeoutError."""
        await asyncio.wait_for(connection.execute("SELECT 1"), PROBE_TIMEOUT_SECONDS)

    async def _lead(self) -> None:
        try:  # the database's clock, as every daemon's heartbeat is judged by
            since = await asyncio.wait_for(asyncio.to_thread(self._clock), PROBE_TIMEOUT_SECONDS)
        except Exception:  # it answered for the lock a moment ago; not leading for want of the time would be worse
            since = datetime.now(UTC)
        self.since = since
        self.demoted.clear()
        self.leading.set()
        log.info("this daemon (%s) leads", self.name)
        try:
            await asyncio.to_thread(self._write, lambda session: daemons.lead(session, self.name, since))
        except Exception as exc:  # the lock is what makes the leader; the row only says so, at the next beat
            log.warning("could not record that this daemon leads: %s", exc)

    async def _heartbeat(self) -> None:
        """Until cancelled (at the end of `run`): a leader stopping still leads until it releases the lock."""
        while True:
            await asyncio.sleep(daemons.HEARTBEAT_SECONDS)
            await self._beat()

    async def _beat(self) -> None:
        try:
            await asyncio.to_thread(self._write, self._heartbeat_row)
        except Exception as exc:  # the database is out of reach a moment: the next beat tries again
            log.warning("heartbeat not recorded: %s", exc)

    def _register_row(self, session: Session) -> None:
        daemons.register(session, self.name, os.getpid(), db.clock(session), socket.gethostname())

    def _heartbeat_row(self, session: Session) -> None:
        daemons.heartbeat(session, self.name, os.getpid(), db.clock(session), self.since, socket.gethostname())

    def _clock(self) -> datetime:
        with db.session(self.engine) as session:
            return db.clock(session)

    def _write(self, write: Callable[[Session], None]) -> None:
        with db.session(self.engine) as session:
            write(session)


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
