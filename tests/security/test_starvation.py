"""Tenant A's load does not starve tenant B: while A burns all the CPU its plan allows, forks to its pids
limit, or allocates past its memory limit again and again, B's requests through the gateway all succeed,
and B's median latency stays within MAX_SLOWDOWN times what it was without A's load, measured in the same
test. A's fork bomb stops at its container's pids limit; A's memory hog is OOM-killed inside its
container's limit."""

import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hosting.paas.reconciler import PIDS_LIMIT
from tenants.schemas import AppSpec, TenantCreate
from tests.containers import docker, inspect, ready, running_platform, wait_for
from tests.harness import Daemon

# A asks for everything its plan (small: 2,000 millicores) allows, which on this 2-core machine is all of it.
A_SPEC = AppSpec(image="strata/hello", replicas=2, cpu_millicores=1_000, memory_mib=64, health_path="/healthz")
B_SPEC = AppSpec(image="strata/hello", replicas=1, memory_mib=64, health_path="/healthz")
SPINNERS_PER_INSTANCE = 2  # busy loops in each of A's containers: enough to use its whole CPU limit
MIN_A_CORES = 1.0  # what A's busy loops must take for the test to mean anything: half the machine, at least
# (not all of it: other work on a shared machine takes its fair share too)
REQUESTS = 60  # B's requests per measurement, one every REQUEST_INTERVAL_SECONDS (under B's rate limit)
REQUEST_INTERVAL_SECONDS = 0.05
# B's median latency under A's load may be this many times its median without: B's handler forks a shell per
# request, and each fork and exec waits for a CPU that A's busy loops keep taken; several times slower is
# contention, starvation is timeouts. Generous, as CI machines run other work besides.
MAX_SLOWDOWN = 5.0
HOG_MIB = 256  # what A's memory hog allocates, four times A's limit
CGROUP = Path("/sys/fs/cgroup")
CGROUP_V1 = (CGROUP / "memory").is_dir()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A platform of these tests' own: A asks for all of the local node's CPU its plan allows, and the session's
    platform holds every other test's apps besides."""
    with running_platform(tmp_path_factory.mktemp("starvation") / "home") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def b_host(platform: Daemon) -> str:
    """Tenant B's app, ready and routed; its Host."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name="starve-b", plan="small"))
        api.deploy("starve-b", "web", B_SPEC)
    ready(platform, "starve-b", "web", 1)
    host = "web.starve-b.localhost"
    wait_for(lambda: _get(platform, host).status_code == 200, what="B's route")
    return host


@pytest.fixture
def a_containers(platform: Daemon, unique: str) -> Iterator[list[str]]:
    """Tenant A's app at its plan's whole CPU quota; its containers' ids. The app goes afterwards, and its
    containers with whatever load was started in them."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="small"))
        api.deploy(unique, "burn", A_SPEC)
    try:
        yield [instance.container_id for instance in ready(platform, unique, "burn", 2)]
    finally:
        with platform.operator() as api:
            api.delete_app(unique, "burn")


def test_a_burning_all_its_cpu_does_not_starve_b(platform: Daemon, b_host: str, a_containers: list[str]) -> None:
    baseline = _latencies(platform, b_host)
    for container in a_containers:
        for _ in range(SPINNERS_PER_INSTANCE):
            docker("exec", "-d", container, "/bin/sh", "-c", "while :; do :; done")
    loaded = _latencies(platform, b_host)
    cores = _cpu_cores(a_containers)
    print(f"A's busy loops took {cores:.2f} cores", flush=True)

    assert cores >= MIN_A_CORES, f"A's load used {cores:.2f} cores only: the test would prove nothing"
    _assert_not_starved(baseline, loaded)


def test_a_fork_bomb_stops_at_its_pids_limit_and_does_not_starve_b(
    platform: Daemon, b_host: str, a_containers: list[str]
) -> None:
    baseline = _latencies(platform, b_host)
    bomb = a_containers[0]
    docker("exec", "-d", bomb, "/bin/sh", "-c", "while :; do sleep 600 & done")  # forks until refused
    wait_for(lambda: _cgroup(bomb, "pids", "pids.events")["max"], what="a fork refused by A's pids limit")
    loaded = _latencies(platform, b_host)  # while A's container holds all the processes it may

    assert int(_cgroup_file(bomb, "pids", "pids.peak").read_text()) == PIDS_LIMIT
    _assert_not_starved(baseline, loaded)


def test_a_memory_hog_is_oom_killed_inside_its_limit_and_does_not_starve_b(
    platform: Daemon, b_host: str, a_containers: list[str]
) -> None:
    baseline = _latencies(platform, b_host)
    hog = a_containers[0]
    [b_container] = [instance.container_id for instance in ready(platform, "starve-b", "web", 1)]
    measured = threading.Event()
    exits: list[int] = []

    def hog_until_measured() -> None:
        while not measured.is_set():
            exits.append(_hog(hog).returncode)

    hogging = threading.Thread(target=hog_until_measured)
    hogging.start()
    try:
        loaded = _latencies(platform, b_host)
    finally:
        measured.set()
        hogging.join(timeout=60)

    print(f"A's memory hog OOM-killed {len(exits)} times", flush=True)
    assert exits and set(exits) == {137}, exits  # every hog SIGKILLed ...
    assert _oom_kills(hog) == len(exits)  # ... by the OOM killer of A's container, once for each
    assert inspect(hog)["State"]["Running"]  # which took the hog, never the container's server
    assert _oom_kills(b_container) == 0 and inspect(b_container)["State"]["Running"]
    _assert_not_starved(baseline, loaded)


def _get(daemon: Daemon, host: str) -> httpx.Response:
    return httpx.get(f"http://{daemon.gateway}/", headers={"Host": host}, timeout=10)


def _latencies(daemon: Daemon, host: str) -> list[float]:
    """B's requests, paced, each on a new connection; their latencies in seconds. Each must succeed."""
    latencies = []
    with httpx.Client(timeout=10) as client:
        for _ in range(REQUESTS):
            started = time.monotonic()
            answer = client.get(f"http://{daemon.gateway}/", headers={"Host": host, "Connection": "close"})
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200, answer.text
            time.sleep(REQUEST_INTERVAL_SECONDS)
    return latencies


def _assert_not_starved(baseline: list[float], loaded: list[float]) -> None:
    before, during = statistics.median(baseline), statistics.median(loaded)
    figures = f"B's median {before * 1000:.1f} ms alone, {during * 1000:.1f} ms under A's load"
    print(figures, f"(max {max(baseline) * 1000:.0f} / {max(loaded) * 1000:.0f} ms)", flush=True)
    assert during <= MAX_SLOWDOWN * before, figures


def _cpu_cores(containers: list[str]) -> float:
    """The CPUs the containers use together now (Docker's sample over a second or so)."""
    percents = docker("stats", "--no-stream", "--format", "{{.CPUPerc}}", *containers).split()
    return sum(float(percent.rstrip("%")) for percent in percents) / 100


def _hog(container: str) -> subprocess.CompletedProcess[bytes]:
    """Allocate and touch HOG_MIB in one process of `container` (dd's block buffer)."""
    command = ["dd", "if=/dev/zero", "of=/dev/null", f"bs={HOG_MIB}M", "count=1"]
    return subprocess.run(["docker", "exec", container, *command], capture_output=True, timeout=60, check=False)


def _oom_kills(container: str) -> int:
    """How many processes the kernel's OOM killer took in the container's memory cgroup."""
    return _cgroup(container, "memory", "memory.oom_control" if CGROUP_V1 else "memory.events")["oom_kill"]


def _cgroup(container: str, controller: str, name: str) -> dict[str, int]:
    """The `key value` counters of a file of the container's cgroup."""
    lines = _cgroup_file(container, controller, name).read_text().splitlines()
    return {key: int(value) for key, value in (line.split() for line in lines)}


def _cgroup_file(container: str, controller: str, name: str) -> Path:
    """A file of the container's cgroup, where Docker puts it: cgroupfs driver on v1, systemd driver on v2."""
    if CGROUP_V1:
        return CGROUP / controller / "docker" / container / name
    return CGROUP / "system.slice" / f"docker-{container}.scope" / name
