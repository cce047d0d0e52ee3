"""Reconciler passes at scale: the real `Reconciler` on 1,000 `FakeRuntime` nodes running 10,000 instances.

    PYTHONPATH=. .venv/bin/python bench/reconciler.py [--database sqlite|postgresql] [--nodes 1000]
        [--instances 10000] [--replicas 10] [--passes 10] [--seed 1] [--timeout 600]

Engines in memory (no Docker), a migrated database (SQLite in a temporary directory, or with `--database
postgresql` a PostgreSQL 15 server of its own, started as the tests start theirs: `tests/postgres.py`, hence the
repository's root on PYTHONPATH), a `FakeClock`, and health checks answered by `FakeHealthChecker`: what is timed
is the platform's work in a pass (reading the desired state, observing every node, planning, acting, judging
health, sampling usage, writing rows and events), not an engine's (but for the fakes' own Python, whose listings
are shown apart). Each phase is one kind of pass, timed
`--passes` times where it repeats: its wall time (median and worst), the CPU time the process spent in it (median,
all threads: what other jobs on a shared machine cannot inflate), the part of the wall time the fake engines
spent listing their containers (making the `Container`s a real engine's parsed answer would be), and the SQL
statements it ran (SQLAlchemy's `before_cursor_execute`; an executemany counts once; median and worst):
- deploy: the first pass, which registers every node, creates every instance (placed by SPREAD) and sees them ready;
- idle: nothing to do and no health check due;
- checks due: nothing to do, but every ready instance's health check is due (every 2 s on the clock);
- usage due: nothing to do, but the usage sampler's 10 s are up (its clock is apart: no other phase samples);
- crashes: 1% of the instances crashed since the last pass (recorded, their last output read);
- restarts: those crashed instances restarted once their backoff has passed;
- scale up: every app gets one replica more;
- unreachable: a node's engine stops answering (its instances are kept, as for 30 s);
- node lost: the next pass gives that node up (its `lost_after` set to 0): its instances are placed elsewhere.
Bounded: the whole run stops after `--timeout` seconds and says so. No baseline: absolute times (goal: a steady
pass, idle or checks due, within 200 ms at the default scale).
"""

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, event
from sqlmodel import col, select

from hosting.paas.fake_runtime import FakeClock, FakeHealthChecker, FakePorts, FakeRuntime
from hosting.paas.liveness import HEALTH_INTERVAL_SECONDS, Liveness
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.planner import BACKOFF_CAP_SECONDS
from hosting.paas.reconciler import Reconciler
from hosting.paas.runtime import Capacity, Container
from hosting.paas.scheduler import Strategy
from hosting.paas.usage import USAGE_INTERVAL_SECONDS, UsageSampler
from tenants import apps, db, tenancy
from tenants.enums import InstanceState
from tenants.models import App, Tenant
from tenants.schemas import AppSpec, TenantCreate

PLATFORM = "benchplatform001"
NODE_SIZES = [Capacity(4000, 8192), Capacity(8000, 16384)]
APPS_PER_TENANT = 5  # the large plan allows 50 apps and 100 instances per tenant
CRASHED_SHARE = 0.01
TIMEOUT_SECONDS = 600.0


class ListedRuntime(FakeRuntime):
    """A `FakeRuntime` that adds up the time its container listings take (`listing`): the fake engines' share
    of a pass, apart from the reconciler's (a container made into a `Container` once per state, as `DockerRuntime`
    keeps what it inspected; a real engine's request and its parse are `bench/engine_listing.py`'s)."""

    listing = 0.0

    async def containers(self, platform: str) -> list[Container]:
        started = time.perf_counter()
        try:
            return await super().containers(platform)
        finally:
            self.listing += time.perf_counter() - started


@dataclass
class World:
    """A reconciler over fake nodes; `clock` its time, `metered` the time its usage sampler reads (moved apart, so
    a phase samples usage only when it means to)."""

    reconciler: Reconciler
    clock: FakeClock
    metered: FakeClock
    nodes: list[ListedRuntime]


def make_world(engine: Engine, args: argparse.Namespace) -> World:
    """The nodes, the apps (10 replicas each by default, five per tenant) and a reconciler over them."""
    rng = random.Random(args.seed)
    clock, metered, ports = FakeClock(), FakeClock(), FakePorts()
    nodes = [
        ListedRuntime(f"node-{i:03d}", capacity=rng.choice(NODE_SIZES), clock=clock.now, ports=ports)
        for i in range(args.nodes)
    ]
    apps_wanted = max(1, args.instances // args.replicas)
    with db.session(engine) as session:
        for index in range(apps_wanted):
            tenant = f"t{index // APPS_PER_TENANT:03d}"
            if index % APPS_PER_TENANT == 0:
                tenancy.create_tenant(session, "bench", TenantCreate(name=tenant, plan="large"))
            spec = AppSpec(image="strata/hello", replicas=args.replicas, cpu_millicores=100, memory_mib=64)
            apps.deploy(session, "bench", tenant, f"app{index % APPS_PER_TENANT}", spec, platform_domain="localhost")
    reconciler = Reconciler(
        engine,
        PLATFORM,
        NodePool(NodeHandle(node, "local", "fake://") for node in nodes),
        Strategy.SPREAD,
        publish=lambda routes: None,
        liveness=Liveness(FakeHealthChecker(ports)),
        clock=clock.monotonic,
    )
    reconciler.usage = UsageSampler(engine, clock.now, metered.monotonic)
    return World(reconciler, clock, metered, nodes)


class Statements:
    """The SQL statements an engine runs (SQLAlchemy's `before_cursor_execute`), counted from any thread: the
    reconciler reads and writes in `asyncio.to_thread`."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: object) -> None:
        with self._lock:
            self.count += 1


@dataclass(frozen=True)
class Pass:
    """One timed pass: its wall time, the CPU time the process spent meanwhile (all threads: the database's
    too; what other jobs on the machine cannot inflate), the statements it ran, and the wall time of it that
    the fake engines spent listing their containers."""

    seconds: float
    cpu: float
    statements: int
    listing: float


async def phases(world: World, args: argparse.Namespace) -> None:
    reconciler, clock, nodes = world.reconciler, world.clock, world.nodes
    rng = random.Random(args.seed)
    statements = Statements(reconciler.engine)
    print(f"{args.nodes} nodes, {args.instances} instances wanted, {args.passes} passes per repeated phase")
    print(f"database: {args.database}")
    print(f"{'phase':<12} {'median':>9} {'worst':>9} {'cpu':>9} {'listing':>9} {'SQL/pass':>9} {'worst':>6}  what")

    def report(name: str, passes: list[Pass], what: str) -> None:
        def ms(values: list[float]) -> str:
            return f"{statistics.median(values) * 1000:>7.0f}ms"

        seconds, queries = [p.seconds for p in passes], [p.statements for p in passes]
        print(
            f"{name:<12} {ms(seconds)} {max(seconds) * 1000:>7.0f}ms {ms([p.cpu for p in passes])} "
            f"{ms([p.listing for p in passes])} {statistics.median(queries):>9.0f} {max(queries):>6}  {what}"
        )

    async def timed(before: Callable[[], object] = lambda: None) -> Pass:
        before()
        counted, listed = statements.count, listing()
        started, cpu = time.perf_counter(), time.process_time()
        await reconciler.reconcile()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return Pass(seconds, cpu, statements.count - counted, listing() - listed)

    def listing() -> float:
        return sum(node.listing for node in nodes)

    def ready() -> int:
        return sum(1 for t in reconciler.tracked.values() if t.state == InstanceState.READY)

    deploy = [await timed()]
    report("deploy", deploy, f"{sum(len(n.running()) for n in nodes)} created, {ready()} ready")

    report("idle", [await timed() for _ in range(args.passes)], "nothing due")

    def checks_due() -> None:
        clock.advance(HEALTH_INTERVAL_SECONDS)

    due = [await timed(checks_due) for _ in range(args.passes)]
    report("checks due", due, f"{ready()} ready instances checked each pass")

    def usage_due() -> None:
        world.metered.advance(USAGE_INTERVAL_SECONDS)

    metered = [await timed(usage_due) for _ in range(args.passes)]
    report("usage due", metered, f"{len(reconciler.usage.usage)} instances' counters read and metered each pass")

    running = [(node, c.instance) for node in nodes for c in node.running()]
    crashed = rng.sample(running, max(1, int(len(running) * CRASHED_SHARE)))

    def crash() -> None:
        for node, instance in crashed:
            node.emit(instance, "panic: the benchmark")
            node.crash(instance, exit_code=2)

    report("crashes", [await timed(crash)], f"{len(crashed)} crashes recorded")

    def backoff_passes() -> None:
        clock.advance(BACKOFF_CAP_SECONDS)

    starts = sum(node.calls["start"] for node in nodes)
    restart = [await timed(backoff_passes)]
    report("restarts", restart, f"{sum(node.calls['start'] for node in nodes) - starts} restarted")

    def scale_up() -> None:
        with db.session(reconciler.engine) as session:
            for app, tenant in session.exec(select(App, Tenant).join(Tenant, col(App.tenant_id) == Tenant.id)).all():
                apps.scale(session, "bench", tenant.name, app.name, app.replicas + 1)

    created = sum(node.calls["create"] for node in nodes)
    scale = [await timed(scale_up)]
    report("scale up", scale, f"{sum(node.calls['create'] for node in nodes) - created} created")

    lost = max(nodes, key=lambda node: len(node.running()))  # SPREAD fills the roomiest nodes first

    def give_up() -> None:
        reconciler.pool[lost.name].lost_after = 0.0  # given up now, not 30 s after it stopped answering

    had = len(lost.running())
    report("unreachable", [await timed(lost.unreachable)], f"a node of {had} stops answering: they are kept")
    created = sum(node.calls["create"] for node in nodes)
    moved = [await timed(give_up)]
    report("node lost", moved, f"{sum(n.calls['create'] for n in nodes) - created} of its {had} placed elsewhere")


async def bounded(work: Awaitable[None], seconds: float) -> bool:
    try:
        await asyncio.wait_for(work, seconds)
    except TimeoutError:
        return False
    return True


@contextmanager
def database(kind: str, home: Path) -> Iterator[Engine]:
    """A migrated control-plane database: SQLite in `home`, or a PostgreSQL 15 server of the bench's own (the
    tests' `tests/postgres.py`: a cluster in a temporary directory, on a Unix socket, durability off)."""
    if kind == "sqlite":
        engine = db.open_engine(f"sqlite:///{home / 'strata.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    from tests.postgres import Postgres  # only this option needs the repository's root on sys.path

    server = Postgres.create()
    try:
        server.start()
        server.create_database("bench")
        engine = db.open_engine(server.url("bench"))
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        server.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS)
    args = parser.parse_args()
    logging.getLogger("hosting").setLevel(logging.ERROR)  # a lost node's warning is the point of a phase
    with tempfile.TemporaryDirectory(prefix="strata-bench-") as home, database(args.database, Path(home)) as engine:
        if not asyncio.run(bounded(phases(make_world(engine, args), args), args.timeout)):
            print(f"stopped after {args.timeout:.0f} s (--timeout)", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
