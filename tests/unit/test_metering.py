"""Metering: counters differenced per instance and cgroup incarnation (from zero for a new or restarted
container, never twice), going on from the saved positions across a daemon restart, durations on the monotonic
clock; amounts rolled up per hour and added to the database's rows by the database, gone with their tenant."""

import asyncio
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Dialect, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from hosting.paas.cgroups import Counters
from hosting.paas.fake_runtime import FakeClock, FakeRuntime
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.runtime import InstanceSpec
from hosting.paas.tracked import Tracked
from hosting.paas.usage import MAX_DOWN_SECONDS, MAX_GAP_SECONDS, Meter, Sample, UsageSampler
from tenants import apps, db, tenancy, volumes
from tenants.enums import InstanceState, Isolation
from tenants.models import UsageHour
from tenants.schemas import AppSpec, TenantCreate, VolumeMount
from tenants.usage import FIELDS, Amounts, Position, UsageKey, adding, positions, record, report, totals, usage_report

BEGAN = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
HOUR = BEGAN
MIB = 2**20


def at(seconds: float) -> datetime:
    return BEGAN + timedelta(seconds=seconds)


def sample(
    cpu_s: float,
    started: datetime | None = BEGAN,
    memory_mib: int = 64,
    instance: str = "i1",
    cgroup: int = 1,
    interrupted: bool = False,
) -> Sample:
    counters = Counters(int(cpu_s * 1e9), memory_mib * MIB, cgroup)
    return Sample(instance, "acme", "web", Isolation.SHARED, started, counters, "c1", interrupted)


def metered(meter: Meter, hour: datetime = HOUR, kind: Isolation = Isolation.SHARED) -> Amounts:
    return meter.pending.get(UsageKey("acme", "web", hour, kind), Amounts())


def test_a_new_containers_first_sample_counts_from_zero_and_then_the_differences() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(2.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(5.0, started=at(1))], at(21), {"i1"})

    amounts = metered(meter)
    assert amounts.cpu_seconds == pytest.approx(5.0)
    assert amounts.instance_hours == pytest.approx(20 / 3600)  # from its start, not from the meter's
    assert amounts.memory_mib_hours == pytest.approx(64 * 20 / 3600)
    assert meter.lately == {"i1": (300, 64)}  # 3 CPU-s in 10 s


def test_a_container_started_again_counts_from_zero_and_its_total_never_goes_down() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(4.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(1.5, started=at(15), cgroup=2)], at(21), {"i1"})  # restarted: a new cgroup, from zero

    assert metered(meter).cpu_seconds == pytest.approx(5.5)


def test_a_counter_that_goes_down_counts_from_zero_even_with_the_same_start() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(4.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(0.5, started=at(1))], at(21), {"i1"})

    assert metered(meter).cpu_seconds == pytest.approx(4.5)


def test_a_container_that_ran_before_the_meter_began_is_a_baseline_never_counted_twice() -> None:
    """After a daemon restart: what it used before was the last daemon's to count."""
    meter = Meter(BEGAN)
    meter.observe([sample(100.0, started=at(-3600))], at(10), {"i1"})
    assert meter.pending == {}
    meter.observe([sample(103.0, started=at(-3600))], at(20), {"i1"})

    assert metered(meter).cpu_seconds == pytest.approx(3.0)
    assert metered(meter).instance_hours == pytest.approx(10 / 3600)


def test_a_gap_while_its_node_was_not_read_counts_at_most_a_few_intervals_of_time_but_all_of_the_cpu() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(1.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(60.0, started=at(1), interrupted=True)], at(611), {"i1"})  # its node away 10 minutes

    assert metered(meter).cpu_seconds == pytest.approx(60.0)
    assert metered(meter).instance_hours == pytest.approx((10 + MAX_GAP_SECONDS) / 3600)


def test_a_slow_pass_is_no_gap_all_of_its_time_counts() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(1.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(2.0, started=at(1))], at(71), {"i1"})  # a minute's pass; the node answered every time

    assert metered(meter).instance_hours == pytest.approx(70 / 3600)


def test_durations_are_the_monotonic_clocks_whatever_the_wall_clock_does() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(1.0, started=at(1))], at(11), {"i1"}, mono=100.0)
    meter.observe([sample(2.0, started=at(1))], at(11 + 3600), {"i1"}, mono=110.0)  # the wall clock jumped an hour

    assert metered(meter).instance_hours == pytest.approx(10 / 3600)  # the first 10 s: from the start
    assert metered(meter, HOUR + timedelta(hours=1)).instance_hours == pytest.approx(10 / 3600)


def test_a_stale_start_time_with_the_same_cgroup_is_the_same_incarnation_never_counted_twice() -> None:
    """The engine's inspect cache may give another start time for the container: its cgroup says it is the same."""
    meter = Meter(BEGAN)
    meter.observe([sample(4.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(5.0, started=at(-600))], at(21), {"i1"})

    assert metered(meter).cpu_seconds == pytest.approx(5.0)


def test_another_cgroup_with_the_same_start_time_is_a_new_incarnation_counted_from_zero() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(4.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(6.0, started=at(1), cgroup=2)], at(21), {"i1"})  # higher, but another cgroup

    assert metered(meter).cpu_seconds == pytest.approx(10.0)
    assert metered(meter).instance_hours == pytest.approx(20 / 3600)  # 10 s, then at most the interval


def test_after_a_daemon_restart_a_container_that_ran_on_counts_the_gap_from_its_saved_position() -> None:
    """The last daemon wrote the position at 10 s; this one's first sample at 70 s: the CPU, memory and time of
    the minute between count, once."""
    saved = {"i1": Position("i1", "c1", 1, 2 * 10**9, at(10))}
    meter = Meter(at(60), saved)
    meter.observe([sample(32.0, started=at(-600))], at(70), {"i1"}, mono=5.0)
    meter.observe([sample(33.0, started=at(-600))], at(80), {"i1"}, mono=15.0)

    assert metered(meter).cpu_seconds == pytest.approx(31.0)
    assert metered(meter).instance_hours == pytest.approx(70 / 3600)
    assert metered(meter).memory_mib_hours == pytest.approx(64 * 70 / 3600)


def test_a_long_restart_gap_counts_all_of_the_cpu_and_at_most_max_down_seconds_of_time() -> None:
    saved = {"i1": Position("i1", "c1", 1, 0, at(0))}
    meter = Meter(at(3 * 3600), saved)
    meter.observe([sample(100.0, started=at(-600))], at(3 * 3600), {"i1"})

    [amounts] = meter.pending.values()
    assert amounts.cpu_seconds == pytest.approx(100.0)
    assert amounts.instance_hours == pytest.approx(MAX_DOWN_SECONDS / 3600)


def test_after_a_daemon_restart_a_container_started_again_meanwhile_counts_from_zero() -> None:
    saved = {"i1": Position("i1", "c1", 1, 50 * 10**9, at(10))}
    meter = Meter(at(60), saved)
    meter.observe([sample(3.0, started=at(50), cgroup=7)], at(70), {"i1"})

    assert metered(meter).cpu_seconds == pytest.approx(3.0)
    assert metered(meter).instance_hours == pytest.approx(20 / 3600)  # since it started


def test_positions_are_where_each_count_stands_and_a_gone_instances_is_to_be_deleted() -> None:
    meter = Meter(BEGAN, {"old": Position("old", "c0", 9, 0, at(-60))})
    meter.observe([sample(4.0, started=at(1))], at(11), {"i1"})

    assert meter.positions() == [Position("i1", "c1", 1, 4 * 10**9, at(11))]
    assert meter.gone == {"old"}


def test_amounts_go_to_the_hour_of_their_sample_and_the_kind_of_their_node() -> None:
    meter = Meter(BEGAN)
    dedicated = Sample("i2", "acme", "web", Isolation.DEDICATED, at(1), Counters(10**9, MIB))
    meter.observe([sample(1.0, started=at(3590)), dedicated], at(3600 + 5), {"i1", "i2"})

    assert metered(meter, HOUR + timedelta(hours=1)).cpu_seconds == pytest.approx(1.0)
    assert metered(meter, HOUR + timedelta(hours=1), Isolation.DEDICATED).cpu_seconds == pytest.approx(1.0)
    assert metered(meter).cpu_seconds == 0


def test_an_instance_gone_is_forgotten() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(1.0, started=at(1))], at(11), {"i1"})
    meter.observe([], at(21), set())
    assert meter._last == {}


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
        tenancy.create_tenant(session, "op", TenantCreate(name="solo", isolation=Isolation.DEDICATED))
        yield session


def test_batches_add_to_the_hours_rows_with_traffic_and_storage(session: Session) -> None:
    key = UsageKey("acme", "web", HOUR, Isolation.SHARED)
    volumes.record_create(session, "op", tenancy.get_tenant(session, "acme"), "data", 2048, "local")
    spec = AppSpec(image="strata/hello", volumes=[VolumeMount(volume="data", path="/data")])
    apps.deploy(session, "op", "acme", "web", spec, platform_domain="localhost")

    record(session, {key: Amounts(cpu_seconds=1.5, instance_hours=0.25)}, {("acme", "web"): (3, 300, 3000)}, 0, at(5))
    record(session, {key: Amounts(cpu_seconds=2.0)}, {("solo", "api"): (1, 10, 20)}, 1800, at(1805))

    [web] = report(session, "acme", BEGAN)
    assert (web.app, web.node_kind, web.cpu_seconds, web.instance_hours) == ("web", Isolation.SHARED, 3.5, 0.25)
    assert (web.requests, web.bytes_in, web.bytes_out) == (3, 300, 3000)
    assert web.storage_gib_hours == pytest.approx(2 * 0.5)  # 2 GiB for half an hour
    [api] = report(session, "solo", BEGAN)
    assert (api.app, api.node_kind, api.requests) == ("api", Isolation.DEDICATED, 1)  # as the tenant's isolation
    assert len(session.exec(select(UsageHour)).all()) == 2
    assert report(session, None, BEGAN + timedelta(hours=1)) == []
    assert usage_report(session, "acme", BEGAN, at(1805)).plans["acme"].name == "small"


def test_a_deleted_tenants_usage_goes_with_it_and_a_batch_for_it_is_left_out(session: Session) -> None:
    record(session, {UsageKey("acme", "web", HOUR, Isolation.SHARED): Amounts(cpu_seconds=1.0)}, {}, 0, at(5))
    tenancy.delete_tenant(session, "op", "acme")
    record(session, {UsageKey("acme", "web", HOUR, Isolation.SHARED): Amounts(cpu_seconds=1.0)}, {}, 0, at(15))

    assert session.exec(select(UsageHour)).all() == []


def test_the_sampler_reads_each_node_once_and_writes_a_batch_with_the_front_doors_traffic(
    engine: Engine, tmp_path: Path
) -> None:
    """On a `FakeRuntime` node: one 250m instance for 10 s, 4 requests; a write that fails keeps it all for the
    next."""
    clock = FakeClock(start=BEGAN)
    runtime = FakeRuntime("local", clock=clock.now)
    pool = NodePool([NodeHandle(runtime, "local", "fake", reachable=True)])
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
    spec = InstanceSpec("p1", "acme", "web", 1, "i1", "strata/hello", None, {}, 8080, 250, 64, 64, "net")
    sampler = UsageSampler(engine, clock=clock.now)
    gone = db.open_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    gone.dispose()
    (tmp_path / "gone.db").unlink()
    (tmp_path / "gone.db").mkdir()  # no database can be opened there now
    broken = UsageSampler(gone, clock=clock.now)
    broken.meter = Meter(BEGAN)  # as if its positions were read before the database went

    async def run() -> None:
        await runtime.ensure_network("net", spec.network_labels)
        container = await runtime.create(spec)
        runtime.containers_of("acme", "web")[0].cpu_millicores_used = 250
        tracked = [Tracked("i1", 1, "local", container.id, 1, InstanceState.READY, None, started_at=clock.now())]
        clock.advance(10)
        for meter in (sampler, broken):
            meter.traffic = lambda: {("acme", "web"): (4, 400, 4000)}
            await meter.sample(pool, tracked, {1: ("acme", "web")})

    asyncio.run(run())

    with db.session(engine) as session:
        [line] = report(session, "acme", BEGAN)
    assert (line.cpu_seconds, line.instance_hours, line.requests, line.bytes_out) == (2.5, 10 / 3600, 4, 4000)
    assert line.memory_mib_hours == pytest.approx(16 * 10 / 3600)  # FakeRuntime's 16 MiB
    assert broken.meter is not None
    kept = broken.meter.pending[UsageKey("acme", "web", HOUR, Isolation.SHARED)]
    assert (kept.cpu_seconds, kept.requests) == (2.5, 0)  # the traffic is kept apart, once
    assert broken._unwritten == {("acme", "web"): (4, 400, 4000)}


def _one_instance(clock: FakeClock) -> tuple[FakeRuntime, NodePool, InstanceSpec]:
    runtime = FakeRuntime("local", clock=clock.now)
    pool = NodePool([NodeHandle(runtime, "local", "fake", reachable=True)])
    spec = InstanceSpec("p1", "acme", "web", 1, "i1", "strata/hello", None, {}, 8080, 250, 64, 64, "net")
    return runtime, pool, spec


def test_a_daemon_started_again_goes_on_from_the_saved_positions_counting_the_time_it_was_down_once(
    engine: Engine,
) -> None:
    """250m for 10 s metered, the daemon away 60 s, then 10 s more: 80 s of 250m is 20 CPU-s, each second once."""
    clock = FakeClock(start=BEGAN)
    runtime, pool, spec = _one_instance(clock)
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
    names = {1: ("acme", "web")}

    async def run() -> None:
        await runtime.ensure_network("net", spec.network_labels)
        container = await runtime.create(spec)
        runtime.containers_of("acme", "web")[0].cpu_millicores_used = 250
        tracked = [Tracked("i1", 1, "local", container.id, 1, InstanceState.READY, None, started_at=clock.now())]
        first = UsageSampler(engine, clock=clock.now, monotonic=clock.monotonic)
        clock.advance(10)
        await first.sample(pool, tracked, names)
        clock.advance(60)  # no daemon
        second = UsageSampler(engine, clock=clock.now, monotonic=clock.monotonic)
        await second.sample(pool, tracked, names)
        clock.advance(10)
        await second.sample(pool, tracked, names)
        clock.advance(10)
        await second.sample(pool, [], names)  # the instance gone: its position with it

    asyncio.run(run())

    with db.session(engine) as session:
        [line] = report(session, "acme", BEGAN)
        assert positions(session) == {}
    assert line.cpu_seconds == pytest.approx(20.0)
    assert line.instance_hours == pytest.approx(80 / 3600)


class _Broken(FakeRuntime):
    async def counters(self, container_ids: Sequence[str]) -> dict[str, Counters]:
        raise FileNotFoundError("cpuacct.usage vanished mid-read")


def test_a_node_whose_counters_fail_however_is_logged_and_the_others_are_still_metered(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(start=BEGAN)
    runtime, _, spec = _one_instance(clock)
    broken = _Broken("bad", clock=clock.now)
    pool = NodePool([NodeHandle(runtime, "local", "fake", reachable=True), NodeHandle(broken, "bad", "fake")])
    pool["bad"].reachable = True
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme"))
    sampler = UsageSampler(engine, clock=clock.now, monotonic=clock.monotonic)

    async def run() -> None:
        await runtime.ensure_network("net", spec.network_labels)
        container = await runtime.create(spec)
        runtime.containers_of("acme", "web")[0].cpu_millicores_used = 1000
        tracked = [
            Tracked("i1", 1, "local", container.id, 1, InstanceState.READY, None, started_at=clock.now()),
            Tracked("i2", 1, "bad", "f" * 64, 1, InstanceState.READY, None, started_at=clock.now()),
        ]
        clock.advance(10)
        await sampler.sample(pool, tracked, {1: ("acme", "web")})

    asyncio.run(run())

    with db.session(engine) as session:
        [line] = report(session, "acme", BEGAN)
    assert line.cpu_seconds == pytest.approx(10.0)
    assert "usage of node bad not read" in caplog.text and "vanished" in caplog.text


def test_a_running_container_without_counters_is_warned_of_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Its cgroup is elsewhere (a cgroup-parent, a rootless engine): metered at zero, but not silently."""
    clock = FakeClock(start=BEGAN)
    _, pool, _ = _one_instance(clock)
    sampler = UsageSampler(engine, clock=clock.now, monotonic=clock.monotonic)
    tracked = [Tracked("i1", 1, "local", "e" * 64, 1, InstanceState.READY, None, started_at=clock.now())]

    async def run() -> None:
        for _ in range(4):
            clock.advance(10)
            await sampler.sample(pool, tracked, {1: ("acme", "web")})

    asyncio.run(run())

    warnings = [r for r in caplog.records if "has no cgroup counters" in r.getMessage()]
    assert len(warnings) == 1 and "i1" in warnings[0].getMessage()


def test_two_daemons_adding_to_the_same_rows_at_once_never_deadlock(engine: Engine) -> None:
    """Each writes its front door's traffic, in whatever order its apps came: the rows are written in key order, so
    PostgreSQL never finds the two writes waiting on each other (and fails one)."""
    with db.session(engine) as session:
        for tenant in ("t1", "t2", "t3"):
            tenancy.create_tenant(session, "op", TenantCreate(name=tenant))
    apps_ = [(tenant, "web") for tenant in ("t1", "t2", "t3")]
    rounds = 60

    def door(order: list[tuple[str, str]]) -> None:
        for n in range(rounds):
            with db.session(engine) as session:
                record(session, {}, {app: (1, 10, 100) for app in order}, 0, at(n))

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(door, apps_), pool.submit(door, apps_[::-1])]:
            done.result()
    with db.session(engine) as session:
        assert sorted((line.tenant, line.requests) for line in report(session, None, BEGAN)) == [
            (tenant, 2 * rounds) for tenant in ("t1", "t2", "t3")
        ]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_the_rows_are_added_to_by_the_database_in_one_statement(dialect: Dialect) -> None:
    """INSERT ... ON CONFLICT DO UPDATE with additions, no read first: the same statement on both backends."""
    table = UsageHour.__table__  # type: ignore[attr-defined]
    sql = str(adding(dialect.name, table, ("tenant_id", "app", "hour", "node_kind")).compile(dialect=dialect))

    assert "ON CONFLICT (tenant_id, app, hour, node_kind) DO UPDATE SET cpu_seconds" in sql
    assert "usage_hour.cpu_seconds + excluded.cpu_seconds" in sql


def test_totals_are_the_sums_of_all_hours_one_row_each(session: Session) -> None:
    key = UsageKey("acme", "web", HOUR, Isolation.SHARED)
    record(session, {key: Amounts(cpu_seconds=1.5)}, {("acme", "web"): (2, 20, 200)}, 0, at(5))
    later = UsageKey("acme", "web", HOUR + timedelta(hours=5), Isolation.SHARED)
    record(session, {later: Amounts(cpu_seconds=2.0)}, {}, 0, at(5 * 3600 + 5))

    [total] = totals(session, "acme")
    assert (total.cpu_seconds, total.requests, total.bytes_out) == (3.5, 2, 200)
    assert totals(session, "solo") == []


def test_amounts_add_every_field() -> None:
    """`Amounts.add` names its fields one by one (it runs for each instance at each sample): none is left out."""
    total = Amounts(**dict.fromkeys(FIELDS, 1))
    total.add(Amounts(**dict.fromkeys(FIELDS, 2)))
    assert vars(total) == dict.fromkeys(FIELDS, 3)
