"""VM nodes on another host's hypervisor: `strata nodes add vm9 --driver libvirt --uri qemu+ssh://HOST/system`.

The other host is the test's own (`tests.remote_host`: a network namespace with its own OpenSSH sshd, joined to
this host by a bridge the test makes), with a libvirtd of the test's own running in that namespace
(`tests.libvirtd`): its VMs' forwards are on the namespace's loopback, which the daemon reaches only through its SSH
login there. Namespaces share the filesystem, so the socket path the URI gives is valid on both sides; the files
the VM needs are copied there all the same, under the host's SFTP directory. The boot is real (TCG here) and slow:
only with STRATA_VM_TESTS=1, one boot."""

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import libvirt
import pytest

from tenants.enums import InstanceState, NodeState
from tenants.schemas import AppSpec, InstanceRead, NodeRead, TenantCreate
from tenants.ssh_targets import fingerprint
from tests.containers import platform_id, remove_everything_of, wait_for
from tests.harness import Daemon, start_daemon
from tests.libvirtd import libvirtd
from tests.remote_host import RemoteHost, remote_host


def _netns() -> bool:
    if shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.skipif(not _netns(), reason="`ip netns` is unavailable here: the test makes its other host with it"),
    pytest.mark.timeout(900),
]

IMAGES = os.environ.get("STRATA_TEST_IMAGES_DIR", "/var/tmp/strata-test-images")
HELLO = AppSpec(
    image="strata/hello", replicas=1, cpu_millicores=250, memory_mib=64, health_path="/healthz",
    env={"GREETING": "from vm9"},
)  # fmt: skip


@pytest.fixture
def host() -> Iterator[RemoteHost]:
    with remote_host() as made:
        made.start_sshd()
        yield made


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("libvirt-hosts") / "home"
    home.mkdir()
    running = start_daemon(home, local_node=True, env={"STRATA_IMAGES_DIR": IMAGES})
    try:
        yield running
    finally:
        with running.operator() as api:
            for node in api.nodes():
                if node.driver != "local":
                    api.remove_node(node.name, force=True)
        running.stop()
        remove_everything_of(platform_id(running))


def test_a_bad_hypervisor_host_is_refused_saying_why_and_leaves_no_node(host: RemoteHost, daemon: Daemon) -> None:
    uri = f"qemu+ssh://root@{host.address}/system?socket={host.root / 'no-libvirt-sock'}"

    refused = daemon.cli("nodes", "add", "vm9", "--driver", "libvirt", "--uri", uri.replace("/system", ":2/system"))
    assert refused.returncode != 0 and f"cannot reach root@{host.address}:2: connection refused" in refused.stderr

    refused = daemon.cli("nodes", "add", "vm9", "--driver", "libvirt", "--uri", uri)  # not authorized yet
    assert refused.returncode != 0 and "refused the platform's key" in refused.stderr

    host.authorize(daemon.cli("nodes", "ssh-key").stdout)
    other = host.host_key("another_host_key")
    refused = daemon.cli("nodes", "add", "vm9", "--driver", "libvirt", "--uri", uri, "--host-key", other)
    assert f"shows host key {fingerprint(host.host_key())}, not the {fingerprint(other)}" in refused.stderr

    refused = daemon.cli("nodes", "add", "vm9", "--driver", "libvirt", "--uri", uri)
    assert refused.returncode != 0 and f"no libvirtd answers on {host.root / 'no-libvirt-sock'}" in refused.stderr

    refused = daemon.cli("nodes", "add", "vm9", "--driver", "libvirt", "--uri", f"qemu+tcp://{host.address}/system")
    assert refused.returncode == 2 and "is not qemu+ssh://[USER@]HOST[:PORT]/system" in refused.stderr
    transport = httpx.HTTPTransport(uds=str(daemon.home / "api.sock"))
    headers = {"Authorization": f"Bearer {daemon.operator_token}"}
    with httpx.Client(transport=transport, base_url="http://strata", headers=headers) as raw:
        for body in (
            {"name": "vm9", "driver": "libvirt", "uri": f"qemu+ssh://{host.address}/system?keyfile=/root/.ssh/id"},
            {"name": "vm9", "uri": f"qemu+ssh://{host.address}/system"},  # the qemu driver's default
        ):
            answer = raw.post("/nodes", json=body)
            assert answer.status_code == 422, answer.text

    with daemon.operator() as api:
        assert [node.name for node in api.nodes()] == ["local"]
        assert not any(event.detail.get("node") == "vm9" for event in api.events())
    assert not (host.root / ".local").exists()  # nothing was copied there


@pytest.mark.skipif(os.environ.get("STRATA_VM_TESTS") != "1", reason="VM tests: STRATA_VM_TESTS=1")
def test_a_vm_on_another_host_serves_an_app_and_leaves_nothing_when_removed(
    host: RemoteHost, daemon: Daemon, unique: str, tmp_path: Path, report: Callable[[str], None]
) -> None:
    built = daemon.cli("images", "node-build", timeout=900)  # cached between runs in IMAGES
    assert built.returncode == 0, built.stderr
    with daemon.operator() as api:
        api.bootstrap_images()
    host.authorize(daemon.cli("nodes", "ssh-key").stdout)
    with libvirtd(tmp_path / "libvirtd", netns=host.namespace) as local_uri:
        socket = local_uri.partition("?socket=")[2]
        uri = f"qemu+ssh://{host.address}/system?socket={socket}"
        added = daemon.cli("nodes", "add", "vm9", "--driver", "libvirt", "--uri", uri, "--json", timeout=900)
        assert added.returncode == 0, added.stderr
        node = json.loads(added.stdout)
        assert (node["state"], node["driver"]) == ("ready", "libvirt")
        assert node["uri"] == f"qemu+ssh://root@{host.address}:22/system?socket={socket}"
        assert node["host_key"] == fingerprint(host.host_key())  # trusted on first use, and recorded
        report(_boot(daemon, "vm9"))
        with closing(libvirt.open(local_uri)) as connection:
            assert [domain.name() for domain in connection.listAllDomains() if domain.isActive()] == ["vm9"]
        files = host.root / ".local" / "share" / "strata"
        assert (files / "vms" / "vm9" / "disk.qcow2").is_file()

        # The app lands on vm9 (the local node drained) and is served through the front door here.
        assert daemon.cli("nodes", "drain", "local").returncode == 0
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name=unique, plan="medium"))
            api.deploy(unique, "web", HELLO)
        wait_for(lambda: _ready_on(daemon, unique, "vm9"), timeout=300, what="an instance on vm9")
        assert _get(daemon, unique).text.startswith("from vm9")
        stats = _node(daemon, "vm9").vm  # what the VM costs its host, as its libvirtd reads it
        assert stats is not None and stats.memory_bytes > 100 * 1024**2 and stats.disk_bytes > 0
        listening = _listening(host)  # the VM's forwards are on the host's loopback only
        assert listening and all(address.startswith("127.0.0.1:") for address in listening), listening

        # The host lost (its sshd killed, and every session with it): vm9 is unreachable and its instance moves to
        # the local node, as a lost VM node's does; the host back, vm9 (whose VM ran on) is ready again.
        assert daemon.cli("nodes", "resume", "local").returncode == 0
        host.kill_sshd()
        wait_for(lambda: _ready_on(daemon, unique, "local"), timeout=120, what="the instance moved to local")
        assert _node(daemon, "vm9").state == NodeState.UNREACHABLE
        host.start_sshd()
        wait_for(lambda: _node(daemon, "vm9").state == NodeState.READY, timeout=120, what="vm9 ready again")

        # Removed: its domain, its files on the host (and the image shipped there with it) and here are gone.
        removed = daemon.cli("nodes", "remove", "vm9", "--force", "--yes")
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: "vm9" not in _names(daemon), timeout=120, what="vm9 removed")
        with closing(libvirt.open(local_uri)) as connection:
            assert connection.listAllDomains() == []
        assert not files.exists()
        assert list((daemon.home / "libvirt" / "hosts").glob("*/vms/vm9")) == []
        assert _listening(host) == []
        assert _get(daemon, unique).text.startswith("from vm9")  # from local
        with daemon.operator() as api:
            api.delete_app(unique, "web")
            assert api.node("local").state == NodeState.READY


def _listening(host: RemoteHost) -> list[str]:
    """What listens for TCP in the host's namespace besides its sshd."""
    command = ["nsenter", f"--net=/run/netns/{host.namespace}", "ss", "-Hltn"]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    return [line.split()[3] for line in lines if line.split()[3] != f"{host.address}:22"]


def _boot(daemon: Daemon, name: str) -> str:
    with daemon.operator() as api:
        boot = next(e.detail for e in api.events() if e.action == "node.boot" and e.detail["node"] == name)
    return (
        f"{name} (another host, cold boot): SSH-ready {boot['ssh_seconds']} s, Docker-ready {boot['docker_seconds']} s"
    )


def _node(daemon: Daemon, name: str) -> NodeRead:
    with daemon.operator() as api:
        return api.node(name)


def _names(daemon: Daemon) -> list[str]:
    with daemon.operator() as api:
        return [node.name for node in api.nodes()]


def _ready_on(daemon: Daemon, tenant: str, node: str) -> list[InstanceRead] | None:
    with daemon.operator() as api:
        found = api.instances(tenant, "web")
    placed = len(found) == 1 and found[0].node == node and found[0].state == InstanceState.READY
    return found if placed else None


def _get(daemon: Daemon, tenant: str) -> httpx.Response:
    def answer() -> httpx.Response | None:
        response = httpx.get(f"http://{daemon.gateway}/", headers={"Host": f"web.{tenant}.localhost"}, timeout=10)
        return response if response.status_code == 200 else None

    return wait_for(answer, timeout=30, what=f"web.{tenant} to answer through the front door")
