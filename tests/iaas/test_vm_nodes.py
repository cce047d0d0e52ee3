"""VM nodes end to end, with real QEMU (TCG here): a node added, an app placed on it and reached through the
gateway, the VM killed and the app moved to the local node; a volume as a disk of a VM, moved with its app
between the VM and the host. Slow: only with STRATA_VM_TESTS=1."""

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import libvirt
import pytest

from hosting.iaas import detect_accel
from tenants.enums import InstanceState
from tenants.schemas import AppSpec, InstanceRead, NodeRead, TenantCreate
from tests.containers import platform_id, remove_everything_of, wait_for
from tests.harness import Daemon, start_daemon
from tests.libvirtd import libvirtd
from tests.paas.test_volumes import KEEPER

pytestmark = [
    pytest.mark.skipif(os.environ.get("STRATA_VM_TESTS") != "1", reason="VM tests: STRATA_VM_TESTS=1"),
    pytest.mark.timeout(900),  # TCG: the first node boots its flavor's template cold
]

IMAGES = os.environ.get("STRATA_TEST_IMAGES_DIR", "/var/tmp/strata-test-images")
HELLO = AppSpec(image="strata/hello", replicas=1, cpu_millicores=250, memory_mib=64, health_path="/healthz")


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    daemon: Daemon

    def restart(self) -> None:
        """Stop the daemon (its VMs and containers keep running) and start another one on the same home."""
        assert self.daemon.stop() == 0
        self.daemon = start_daemon(self.home, local_node=True, env=self.env)


@pytest.fixture(scope="module")
def platform_with_vms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform with the local node, the node image built (cached between runs in IMAGES), and both hypervisor
    drivers: QEMU, and libvirt through a libvirtd of the test's own."""
    root: Path = tmp_path_factory.mktemp("vms")
    home = root / "home"
    home.mkdir()
    with libvirtd(root / "libvirtd") as uri:
        env = {"STRATA_IMAGES_DIR": IMAGES, "STRATA_LIBVIRT_URI": uri}
        yield from _platform(home, env)


def _platform(home: Path, env: dict[str, str]) -> Iterator[Platform]:
    platform = Platform(home, env, start_daemon(home, local_node=True, env=env))
    try:
        built = platform.daemon.cli("images", "node-build", timeout=900)
        assert built.returncode == 0, built.stderr
        with platform.daemon.operator() as api:
            api.bootstrap_images()
        yield platform
    finally:
        with platform.daemon.operator() as api:
            for node in api.nodes():
                if node.driver != "local":
                    api.remove_node(node.name, force=True)
        wait_for(lambda: _qemu_pids(home, "vms") == [], timeout=60, what="the VMs to be destroyed")
        platform.daemon.stop()
        for pid in _qemu_pids(home, "vms") + _qemu_pids(home, "templates"):  # a template, or what a failure left
            os.kill(pid, signal.SIGKILL)
        remove_everything_of(platform_id(platform.daemon))


@pytest.fixture
def vm_platform(platform_with_vms: Platform) -> Daemon:
    return platform_with_vms.daemon


def test_an_app_runs_on_a_vm_node_and_moves_when_the_vm_dies(
    vm_platform: Daemon, unique: str, report: Callable[[str], None]
) -> None:
    started = time.monotonic()
    added = vm_platform.cli("nodes", "add", "vm1", "--flavor", "small", "--json", timeout=900)
    assert added.returncode == 0, added.stderr
    report(f"first node (its flavor's template booted cold, then it restored): {time.monotonic() - started:.1f} s")
    report(_boot(vm_platform, "vm1"))
    node = json.loads(added.stdout)
    assert (node["state"], node["driver"], node["flavor"]) == ("ready", "qemu", "small")
    assert node["accel"] == str(detect_accel())
    assert node["cpu_millicores"] == 1000 and 900 <= node["memory_mib"] <= 1024

    # Only vm1 takes new instances: the app lands there, its image shipped in (the guest has no network).
    assert vm_platform.cli("nodes", "drain", "local").returncode == 0
    with vm_platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO.model_copy(update={"env": {"GREETING": "from a VM"}}))
    (instance,) = wait_for(lambda: _ready_on(vm_platform, unique, "vm1"), timeout=240, what="an instance on vm1")
    assert _get(vm_platform, unique).text.startswith("from a VM")
    # its usage, read from its cgroup inside the guest (one command per node and sample)
    metered = wait_for(lambda: _metered(vm_platform, unique), timeout=60, what="the instance's usage from the guest")
    assert metered.memory_mib_used is not None and 0 < metered.memory_mib_used <= 64
    with vm_platform.operator() as api:
        [line] = api.usage(unique).lines
    assert line.app == "web" and line.instance_hours > 0 and line.memory_mib_hours > 0

    listed = json.loads(vm_platform.cli("nodes", "list", "--json").stdout)
    vm = next(n for n in listed if n["name"] == "vm1")
    assert vm["instances"] == 1 and vm["tenants"] == [unique]
    assert vm["vm"]["memory_bytes"] > 100 * 1024**2 and vm["vm"]["cpu_seconds"] > 0

    # The VM dies: once the grace period is over, the instance is placed on the local node again.
    assert vm_platform.cli("nodes", "resume", "local").returncode == 0
    qemu = int((vm_platform.home / "vms" / "vm1" / "qemu.pid").read_text())
    os.kill(qemu, signal.SIGKILL)
    (moved,) = wait_for(lambda: _ready_on(vm_platform, unique, "local"), timeout=120, what="the instance on local")
    assert moved.id != instance.id
    assert _get(vm_platform, unique).text.startswith("from a VM")

    # And the node comes back by itself, restored from its template: seconds, not a cold boot.
    assert wait_for(lambda: _node_state(vm_platform, "vm1") == "ready", timeout=120, what="vm1 ready again")


def _metered(daemon: Daemon, tenant: str) -> InstanceRead | None:
    """The app's instance once two samples of its counters gave its CPU and memory."""
    with daemon.operator() as api:
        [instance] = api.instances(tenant, "web")
    return instance if instance.memory_mib_used is not None else None


def test_a_restored_clone_is_its_own_machine(vm_platform: Daemon, report: Callable[[str], None]) -> None:
    """A node of another flavor: its CPUs, memory and disk; its own SSH host key (the platform logs in checking
    it) and name, though restored from a snapshot like every node of its flavor."""
    started = time.monotonic()
    added = vm_platform.cli("nodes", "add", "vm2", "--flavor", "medium", "--json", timeout=900)
    assert added.returncode == 0, added.stderr
    report(f"a medium node (its own template first): {time.monotonic() - started:.1f} s")
    report(_boot(vm_platform, "vm2"))
    node = json.loads(added.stdout)
    assert node["cpu_millicores"] == 2000 and 1900 <= node["memory_mib"] <= 2048
    assert 7.5 < int(_ssh(vm_platform.home, "vm2", "df -B1M --output=size / | tail -1")) / 1024 <= 8
    keys = {(vm_platform.home / "vms" / name / "host_key").read_text() for name in ("vm1", "vm2")}
    assert len(keys) == 2
    assert _ssh(vm_platform.home, "vm2", "hostname") == "vm2"  # OpenSSH, checking vm2's own host key
    assert _ssh(vm_platform.home, "vm1", "hostname") == "vm1"


def test_a_vm_node_refuses_bad_input(vm_platform: Daemon) -> None:
    bad_flavor = vm_platform.cli("nodes", "add", "vm9", "--flavor", "huge")
    assert bad_flavor.returncode == 2 and "huge" in bad_flavor.stderr
    taken = vm_platform.cli("nodes", "add", "local", "--no-wait")
    assert taken.returncode != 0 and "exists already" in taken.stderr
    local = vm_platform.cli("nodes", "remove", "local", "--yes")
    assert local.returncode != 0 and "local node" in local.stderr


def _attached(home: Path, vm: str) -> list[str]:
    """The images the qemu driver records as attached to `vm`."""
    return [disk["path"] for disk in json.loads((home / "vms" / vm / "disks.json").read_text())]


def _guest_docker(home: Path, vm: str, *args: str) -> str:
    """The docker CLI against VM `vm`'s engine, through the socket the platform forwards to it."""
    command = ["docker", "-H", f"unix://{home / 'sockets' / f'{vm}.sock'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return done.stdout + done.stderr


def _guest_df(home: Path, vm: str, path: str) -> bool:
    """Whether `path` is a mount point in the guest of `vm`."""
    return _ssh(home, vm, f"mountpoint -q {path} && echo yes || echo no") == "yes"


def _ready_on(daemon: Daemon, tenant: str, node: str) -> list[InstanceRead] | None:
    with daemon.operator() as api:
        found = api.instances(tenant, "web")
    placed = len(found) == 1 and found[0].node == node and found[0].state == InstanceState.READY
    return found if placed else None


def _ssh(home: Path, vm: str, command: str) -> str:
    """Run `command` in VM `vm` with the OpenSSH client, accepting only the host key the platform gave it."""
    directory = home / "vms" / vm
    port = json.loads((directory / "spec.json").read_text())["ssh_port"]
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(directory / "host_key")], capture_output=True, text=True, check=True
    ).stdout
    known_hosts = directory.parent.parent / f"known_hosts-{vm}"
    known_hosts.write_text(f"[127.0.0.1]:{port} {public}")
    result = subprocess.run(
        ["ssh", "-p", str(port), "-i", str(home / "vm_client_key"), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}", "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _boot(daemon: Daemon, name: str) -> str:
    """What the daemon recorded of the node's (last) boot."""
    with daemon.operator() as api:
        boot = next(e.detail for e in api.events() if e.action == "node.boot" and e.detail["node"] == name)
    how = "restored" if boot["restored"] else "cold boot"
    return f"{name} ({how}): SSH-ready {boot['ssh_seconds']} s, Docker-ready {boot['docker_seconds']} s"


def _node_state(daemon: Daemon, name: str) -> str:
    with daemon.operator() as api:
        return api.node(name).state


def _get(daemon: Daemon, tenant: str, path: str = "") -> httpx.Response:
    """The app's answer through the gateway, once it routes there (after a restart: once health is checked)."""

    def answer() -> httpx.Response | None:
        url = f"http://{daemon.gateway}/{path}"
        response = httpx.get(url, headers={"Host": f"web.{tenant}.localhost"}, timeout=10)
        return response if response.status_code == 200 else None

    return wait_for(answer, timeout=30, what=f"web.{tenant} to answer through the gateway")


def _qemu_pids(home: Path, kind: str) -> list[int]:
    pids = []
    for pid_file in home.glob(f"{kind}/*/qemu.pid"):
        pid = int(pid_file.read_text())
        if Path(f"/proc/{pid}").exists():
            pids.append(pid)
    return pids


def test_a_restarted_daemon_adopts_its_vms_and_their_containers(platform_with_vms: Platform, unique: str) -> None:
    daemon = platform_with_vms.daemon
    assert daemon.cli("nodes", "drain", "local").returncode == 0
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO)
        boots = sum(1 for e in api.events(limit=500) if e.action == "node.boot")
    (before,) = wait_for(
        lambda: _ready_on(daemon, unique, "vm1") or _ready_on(daemon, unique, "vm2"),
        timeout=240,
        what="an instance on a VM node",
    )

    platform_with_vms.restart()
    daemon = platform_with_vms.daemon
    (after,) = wait_for(lambda: _ready_on(daemon, unique, before.node), timeout=120, what="the instance adopted")
    assert (after.id, after.container_id, after.endpoint) == (before.id, before.container_id, before.endpoint)
    assert _get(daemon, unique).text  # through the new daemon's gateway, and the VM's same forward
    with daemon.operator() as api:
        assert sum(1 for e in api.events(limit=500) if e.action == "node.boot") == boots  # reconnected, not booted
        api.delete_app(unique, "web")
    assert daemon.cli("nodes", "resume", "local").returncode == 0


def test_a_volume_on_a_vm_node_is_a_disk_of_its_vm_and_moves_with_its_app(
    platform_with_vms: Platform, unique: str, report: Callable[[str], None]
) -> None:
    """A volume made on vm1 is a disk of the VM (its image unmounted on the host), mounted in the guest, full at
    its size there; its app runs on vm1 and writes to it. Moved to the host, the app runs there on the same data;
    moved back, the same again; vm1 killed, its disk comes back with the restored VM and is mounted again before
    the app starts. Draining vm1 names the volume and the app it keeps there. Backed up and restored, it stays
    in its guest."""
    daemon = platform_with_vms.daemon
    if "vm1" not in [n.name for n in _nodes(daemon)]:  # run alone: the first test's node is made here
        assert daemon.cli("nodes", "add", "vm1", timeout=900).returncode == 0
    wait_for(lambda: _node_state(daemon, "vm1") == "ready", timeout=120, what="vm1 ready")
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
    ref, image = f"{unique}/data", daemon.home / "volumes" / unique / "data.ext4"
    started = time.monotonic()
    created = daemon.cli("volumes", "create", ref, "--size", "64M", "--node", "vm1", "--json")
    assert created.returncode == 0, created.stderr
    report(f"a 64 MiB volume made on vm1 (image, unmounted here, attached, mounted in the guest): "
           f"{time.monotonic() - started:.1f} s")  # fmt: skip
    assert json.loads(created.stdout)["node"] == "vm1"
    assert _attached(daemon.home, "vm1") == [str(image)] and not image.with_suffix("").is_mount()
    with daemon.operator() as api:
        api.deploy(unique, "web", KEEPER)
    (first,) = wait_for(lambda: _ready_on(daemon, unique, "vm1"), timeout=240, what="the app on vm1")
    born = _get(daemon, unique, "first").text

    # The size holds in the guest: a write past it fails with ENOSPC in the container, within 1% (the volume
    # lets files use the size asked for and at most 0.4% more).
    fill = "dd if=/dev/zero of=/data/fill bs=64k 2>&1; ls -l /data/fill; rm /data/fill"
    filled = _guest_docker(daemon.home, "vm1", "exec", first.container_id, "sh", "-c", fill)
    assert "No space left on device" in filled, filled
    written = int(filled.split()[-5])
    assert 0.99 * 64 * 2**20 <= written + 64 * 1024 and written <= 1.004 * 64 * 2**20, written
    shown = json.loads(daemon.cli("volumes", "show", ref, "--json").stdout)  # its use, read in the guest
    assert shown["node"] == "vm1" and shown["used_mib"] is not None and shown["mounted_by"] == ["web"]

    drained = daemon.cli("nodes", "drain", "vm1")
    assert drained.returncode == 0 and f"{unique}/data (web)" in drained.stderr, drained.stderr
    assert daemon.cli("nodes", "resume", "vm1").returncode == 0

    for target in ("local", "vm1"):
        started = time.monotonic()
        moved = daemon.cli("volumes", "move", ref, "--to", target, timeout=300)
        assert moved.returncode == 0, moved.stderr
        (instance,) = wait_for(
            lambda target=target: _ready_on(daemon, unique, target),
            timeout=240, what=f"the app on {target}",
        )  # fmt: skip
        report(f"volume moved to {target}: {moved.stdout.strip()}; its app ready there after "
               f"{time.monotonic() - started:.1f} s")  # fmt: skip
        assert _get(daemon, unique, "first").text == born
        assert image.with_suffix("").is_mount() == (target == "local")  # on the host only while it lives there
        assert _attached(daemon.home, "vm1") == ([str(image)] if target == "vm1" else [])
    assert _get(daemon, unique, "starts").text.split()[-1] == instance.id

    # vm1 dies: once it is restored, its disk is plugged again and mounted before the app starts there.
    started = time.monotonic()
    os.kill(int((daemon.home / "vms" / "vm1" / "qemu.pid").read_text()), signal.SIGKILL)
    (again,) = wait_for(
        lambda: [i for i in _ready_on(daemon, unique, "vm1") or [] if i.id != instance.id] or None,
        timeout=240, what="the app on vm1 again",
    )  # fmt: skip
    report(f"vm1 killed: the app ready again on vm1, on its volume, after {time.monotonic() - started:.1f} s")
    assert _get(daemon, unique, "first").text == born
    assert _guest_df(daemon.home, "vm1", f"/var/lib/strata/volumes/{unique}/data")

    # Backed up where it lives (streamed from vm1's guest, the app paused there) and verified here; restored
    # there after a change: the app starts again on vm1 and serves what was backed up.
    note = f"/var/lib/strata/volumes/{unique}/data/note"
    _guest_docker(daemon.home, "vm1", "exec", again.container_id, "sh", "-c", "echo before > /data/note")
    started = time.monotonic()
    taken = daemon.cli("backups", "create", ref, "--json", timeout=300)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    backup = json.loads(taken.stdout)
    assert (backup["state"], backup["files"]) == ("verified", 3), backup  # first, starts, note
    report(f"a backup of the volume on vm1 (from its guest, verified here): {time.monotonic() - started:.1f} s")
    _ssh(daemon.home, "vm1", f"echo after > {note}")
    started = time.monotonic()
    restored = daemon.cli("backups", "restore", str(backup["id"]), "--yes", timeout=300)
    assert restored.returncode == 0, restored.stderr
    wait_for(
        lambda: [i for i in _ready_on(daemon, unique, "vm1") or [] if i.id != again.id] or None,
        timeout=240, what="the app on vm1 after the restore",
    )  # fmt: skip
    report(f"the backup restored into vm1's guest, the app ready there again after {time.monotonic() - started:.1f} s")
    assert _get(daemon, unique, "note").text == "before\n" and _ssh(daemon.home, "vm1", f"cat {note}") == "before"

    with daemon.operator() as api:
        api.delete_tenant(unique)
    assert _attached(daemon.home, "vm1") == [] and not image.exists()


def test_a_libvirt_node_boots_cold_serves_an_app_and_goes_with_its_domain(
    vm_platform: Daemon, unique: str, report: Callable[[str], None]
) -> None:
    """The same node image through the libvirt driver: defined in libvirtd, booted cold (no snapshots there),
    an app placed on it and served through the gateway; removed, its domain and files are gone."""
    added = vm_platform.cli("nodes", "add", "lv1", "--driver", "libvirt", "--json", timeout=900)
    assert added.returncode == 0, added.stderr
    report(_boot(vm_platform, "lv1"))
    node = json.loads(added.stdout)
    assert (node["state"], node["driver"], node["accel"]) == ("ready", "libvirt", str(detect_accel()))
    others = [n.name for n in _nodes(vm_platform) if n.name != "lv1"]
    for other in others:
        assert vm_platform.cli("nodes", "drain", other).returncode == 0
    with vm_platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO.model_copy(update={"env": {"GREETING": "from libvirt"}}))
    wait_for(lambda: _ready_on(vm_platform, unique, "lv1"), timeout=240, what="an instance on lv1")
    assert _get(vm_platform, unique).text.startswith("from libvirt")
    listed = json.loads(vm_platform.cli("nodes", "list", "--json").stdout)
    stats = next(n for n in listed if n["name"] == "lv1")["vm"]
    assert stats["memory_bytes"] > 100 * 1024**2 and stats["cpu_seconds"] > 0 and stats["disk_bytes"] > 0

    # A volume on lv1: a disk attached to the running domain and to its definition (LIVE|CONFIG), mounted in
    # the guest (its use read there); deleted, it is detached from both.
    created = vm_platform.cli("volumes", "create", f"{unique}/data", "--size", "32M", "--node", "lv1", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["used_mib"] is not None
    with closing(libvirt.open(vm_platform.env["STRATA_LIBVIRT_URI"])) as connection:
        domain = connection.lookupByName("lv1")
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            assert "<serial>sv-" in domain.XMLDesc(flags)
        assert vm_platform.cli("volumes", "delete", f"{unique}/data", "--yes").returncode == 0
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            assert "<serial>sv-" not in domain.XMLDesc(flags)

    assert vm_platform.cli("nodes", "resume", "local").returncode == 0
    removed = vm_platform.cli("nodes", "remove", "lv1", "--force", "--yes")
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: "lv1" not in [n.name for n in _nodes(vm_platform)], timeout=120, what="lv1 removed")
    uri = vm_platform.env["STRATA_LIBVIRT_URI"]
    with closing(libvirt.open(uri)) as connection:
        assert connection.listAllDomains() == []
    assert not (vm_platform.home / "libvirt" / "vms" / "lv1").exists()
    wait_for(lambda: _ready_on(vm_platform, unique, "local"), timeout=120, what="the instance back on local")
    assert _get(vm_platform, unique).text.startswith("from libvirt")
    for other in others:
        assert vm_platform.cli("nodes", "resume", other).returncode == 0
    with vm_platform.operator() as api:
        api.delete_app(unique, "web")


def _nodes(daemon: Daemon) -> list[NodeRead]:
    with daemon.operator() as api:
        return api.nodes()
