"""Helpers for tests with real containers: inspect them with the docker CLI, wait for instances, clean up."""

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tenants.enums import InstanceState
from tenants.schemas import InstanceRead
from tests.harness import Daemon, start_daemon

LOAD_SECONDS = 150  # a load's bound, whatever happens

T = TypeVar("T")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container))[0]


def containers_of(platform: str, *filters: str) -> list[str]:
    labels = [f"--filter=label=strata.platform={platform}", *(f"--filter=label={f}" for f in filters)]
    return docker("ps", "-aq", "--no-trunc", *labels).split()


def wait_for(probe: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ready(daemon: Daemon, tenant: str, app: str, count: int, revision: int | None = None) -> list[InstanceRead]:
    """Wait until the app has exactly `count` instances, all ready (and of `revision`, if given)."""

    seen: list[InstanceRead] = []

    def probe() -> list[InstanceRead] | None:
        with daemon.operator() as api:
            seen[:] = api.instances(tenant, app)
        good = all(i.state == InstanceState.READY and (revision is None or i.revision == revision) for i in seen)
        return list(seen) if len(seen) == count and good else None

    try:
        return wait_for(probe, what=f"{count} ready instance(s) of {tenant}/{app}")
    except AssertionError as exc:  # say what there was instead, and what the platform said of it
        with daemon.operator() as api:
            said = [f"{e.action} {e.detail}" for e in api.events(tenant, limit=10)]
        found = [f"{i.id} {i.state.value} restarts={i.restarts} health={i.last_health} {i.message}" for i in seen]
        raise AssertionError(f"{exc}; the last seen: {found}; the newest events: {said}") from None


def platform_id(daemon: Daemon) -> str:
    return (daemon.home / "platform-id").read_text().strip()


def remove_everything_of(platform: str) -> None:
    ids = containers_of(platform)
    if ids:
        docker("rm", "-f", *ids)
    networks = docker("network", "ls", "-q", f"--filter=label=strata.platform={platform}").split()
    if networks:
        docker("network", "rm", *networks)


def unmount_volumes(home: Path) -> None:
    """Unmount what a test left mounted under `home`'s volumes (they outlive the daemon, by design)."""
    root = str(home / "volumes") + "/"
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point = line.split()[1]
        if mount_point.startswith(root):
            subprocess.run(["umount", "--lazy", mount_point], check=False)


@contextmanager
def running_platform(home: Path, env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """A platform with the local node and the sample images built (`env`: settings, as `start_daemon` takes);
    every container it made is removed after."""
    daemon = start_daemon(home, local_node=True, env=env)
    try:
        with daemon.operator() as api:
            assert set(api.bootstrap_images()) == {"strata/hello:latest", "strata/static:latest"}
        yield daemon
    finally:
        daemon.stop()
        remove_everything_of(platform_id(daemon))
        unmount_volumes(home)


@dataclass
class Load:
    """What `steady_requests` counted: each answer's status (or the error's name), and each 200's text."""

    statuses: Counter[int | str] = field(default_factory=Counter)
    texts: Counter[str] = field(default_factory=Counter)


@contextmanager
def steady_requests(daemon: Daemon, host: str, path: str = "/", workers: int = 2) -> Iterator[Load]:
    """GET `path` of `host` through the front door, back to back from `workers` threads, while the block runs
    (`LOAD_SECONDS` at most, whatever happens)."""
    load, stop = Load(), threading.Event()

    def run() -> None:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + LOAD_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    answer = client.get(f"http://{daemon.gateway}{path}", headers={"Host": host})
                except httpx.HTTPError as exc:
                    load.statuses[type(exc).__name__] += 1
                    continue
                load.statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    load.texts[answer.text.strip()] += 1

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        yield load
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
