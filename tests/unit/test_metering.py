"""Metering: counters differenced per instance (from zero for a new or restarted container, never twice across a
daemon restart), amounts rolled up per hour and added to the database's rows, gone with their tenant."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from hosting.paas.cgroups import Counters
from hosting.paas.fake_runtime import FakeClock, FakeRuntime
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.runtime import InstanceSpec
from hosting.paas.tracked import Tracked
from hosting.paas.usage import MAX_GAP_SECONDS, Meter, Sample, UsageSampler
from tenants import apps, db, tenancy, volumes
from tenants.enums import InstanceState, Isolation
from tenants.models import UsageHour
from tenants.schemas import AppSpec, TenantCreate, VolumeMount
from tenants.usage import Amounts, UsageKey, record, report, usage_report

BEGAN = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
HOUR = BEGAN
MIB = 2**20


def at(seconds: float) -> datetime:
    return BEGAN + timedelta(seconds=seconds)


def sample(cpu_s: float, started: datetime | None = BEGAN, memory_mib: int = 64, instance: str = "i1") -> Sample:
    return Sample(instance, "acme", "web", Isolation.SHARED, started, Counters(int(cpu_s * 1e9), memory_mib * MIB))


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
    meter.observe([sample(1.5, started=at(15))], at(21), {"i1"})  # restarted: a new cgroup, from zero

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


def test_a_long_gap_between_samples_counts_at_most_a_few_intervals_of_time_but_all_of_the_cpu() -> None:
    meter = Meter(BEGAN)
    meter.observe([sample(1.0, started=at(1))], at(11), {"i1"})
    meter.observe([sample(60.0, started=at(1))], at(611), {"i1"})  # its node did not answer for 10 minutes

    assert metered(meter).cpu_seconds == pytest.approx(60.0)
    assert metered(meter).instance_hours == pytest.approx((10 + MAX_GAP_SECONDS) / 3600)


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
    kept = broken.meter.pending[UsageKey("acme", "web", HOUR, Isolation.SHARED)]
    assert (kept.cpu_seconds, kept.requests) == (2.5, 0)  # the traffic is kept apart, once
    assert broken._unwritten == {("acme", "web"): (4, 400, 4000)}
