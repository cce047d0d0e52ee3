"""The Docker engine restarts under the platform: it notices, reconnects, and brings every app back.

The engine restarted is one the test starts for itself (its own data root, socket, pid file and default
bridge; no iptables rules), so it does not disturb the engine the rest of the suite runs on: the platform
reaches it through DOCKER_HOST, as the docker CLI would. Its bridge is one the test makes: a dockerd started
with `--bridge=none` deletes the host's `docker0`, the other engine's default bridge, as stale."""

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hosting.paas.subnets import free_subnet, host_routes
from tenants.enums import InstanceState
from tenants.schemas import InstanceRead
from tests.containers import wait_for
from tests.harness import Daemon, start_daemon
from tests.paas.test_reconciler import HELLO, deploy


class Engine:
    """A dockerd of the test's own, started and stopped by its PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"unix://{root / 'docker.sock'}"
        self.bridge = f"strata-t{os.getpid() % 100000}"  # an interface name: 15 characters at most
        self.process: subprocess.Popen[bytes] | None = None

    def make_bridge(self) -> None:
        """The engine's default bridge, on a /24 no route of this host uses."""
        gateway = free_subnet(host_routes()).replace(".0/", ".1/")
        for command in (["add", self.bridge, "type", "bridge"], ["set", self.bridge, "up"]):
            subprocess.run(["ip", "link", *command], check=True)
        subprocess.run(["ip", "addr", "add", gateway, "dev", self.bridge], check=True)

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "-H", self.url, f"--bridge={self.bridge}",
             "--iptables=false", "--ip-masq=false"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "dockerd.log", "ab"),  # noqa: SIM115
        )  # fmt: skip
        wait_for(self.answers, timeout=60, what="the test's dockerd to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def answers(self) -> bool:
        env = {"DOCKER_HOST": self.url, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0

    def remove_all(self) -> None:
        env = {"DOCKER_HOST": self.url, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        ids = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], env=env, capture_output=True)
        # Its networks' bridges are this host's interfaces: they would outlive the engine and its data root.
        subprocess.run(["docker", "network", "prune", "-f"], env=env, capture_output=True)


@pytest.fixture
def engine() -> Iterator[Engine]:
    root = Path(tempfile.mkdtemp(prefix="strata-engine-", dir="/tmp"))  # short: a socket path's length is limited
    engine = Engine(root)
    engine.make_bridge()
    try:
        engine.start()
        yield engine
    finally:
        if engine.answers():
            engine.remove_all()
        engine.stop()
        engine.remove_bridge()
        for mount in _mounts_under(root):  # what a container stopped with its engine may leave mounted
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True)


@pytest.mark.timeout(300)
def test_the_engine_restarting_brings_every_app_back(engine: Engine, tmp_path: Path, unique: str) -> None:
    daemon = start_daemon(tmp_path / "home", local_node=True, env={"DOCKER_HOST": engine.url})
    try:
        with daemon.operator() as api:
            api.bootstrap_images()
        deploy(daemon, unique, HELLO.model_copy(update={"replicas": 2}))
        before = wait_for(lambda: _ready(daemon, unique), timeout=60, what="2 ready instances")

        engine.stop()  # its containers stop with it (no live restore)
        engine.start()
        after = wait_for(lambda: _ready(daemon, unique), timeout=90, what="the app back after the restart")
        assert {i.id for i in after} == {i.id for i in before}  # the same instances, restarted, not new ones
        assert all(i.restarts >= 1 for i in after)
        answer = httpx.get(f"http://{daemon.gateway}/", headers={"Host": f"web.{unique}.localhost"}, timeout=10)
        assert answer.status_code == 200
    finally:
        daemon.stop()


def _ready(daemon: Daemon, tenant: str) -> list[InstanceRead] | None:
    with daemon.operator() as api:
        found = api.instances(tenant, "web")
    return found if len(found) == 2 and all(i.state == InstanceState.READY for i in found) else None
