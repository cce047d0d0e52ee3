"""Helpers for tests with real containers: inspect them with the docker CLI, wait for instances, clean up."""

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tenants.enums import InstanceState
from tenants.schemas import InstanceRead
from tests.harness import Daemon, start_daemon

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

    def probe() -> list[InstanceRead] | None:
        with daemon.operator() as api:
            found = api.instances(tenant, app)
        good = all(i.state == InstanceState.READY and (revision is None or i.revision == revision) for i in found)
        return found if len(found) == count and good else None

    return wait_for(probe, what=f"{count} ready instance(s) of {tenant}/{app}")


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
