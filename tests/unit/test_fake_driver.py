"""`FakeDriver` keeps the hypervisor driver's contract, and what drives VMs decides right on it: the provisioner's
choice between a template's clone and a cold boot, the VM nodes' removal and failure paths, a VM node's port
forwards. No QEMU, no SSH: whatever needs a guest to log in to stays with the tests that boot one
(`tests/iaas/`)."""

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import asyncssh
import pytest
from asyncssh import SSHClientConnection
from sqlalchemy import Engine

from hosting.iaas.driver import Capabilities, Disk, GuestImage, HypervisorError, Identity, VmSpec, VmState
from hosting.iaas.fake import SNAPSHOT_MAGIC, FakeDriver
from hosting.iaas.flavors import flavor
from hosting.iaas.provision import Provisioner
from hosting.paas.fake_runtime import FakeClock
from hosting.paas.vm_nodes import GuestHost, VmNodes
from tenants import db
from tenants import nodes as registry
from tenants.enums import NodeState
from tenants.models import Node

IMAGE = GuestImage("node-abc", Path("/images/vmlinuz"), Path("/images/initrd"), Path("/images/disk.qcow2"))
IDENTITY = Identity(hostname="vm1", host_key="(a private key)", authorized_key="ssh-ed25519 AAAA platform")
SMALL = flavor("small")


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def spec(name: str = "vm1", ssh_port: int = 2201, template: str | None = None) -> VmSpec:
    return VmSpec(name, SMALL, IMAGE, ssh_port, template)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for `condition`, polling, failing after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


# the driver's contract


def test_a_vm_is_defined_then_runs_then_stops_and_its_forwards_go_with_it() -> None:
    clock = FakeClock()
    driver = FakeDriver(clock=clock.monotonic)

    async def scenario() -> None:
        await driver.create(spec(), IDENTITY)
        assert driver.names() == ["vm1"] and (await driver.info("vm1")).state == VmState.DEFINED
        assert driver.identity("vm1") == IDENTITY and driver.spec("vm1") == spec()
        await driver.start("vm1")
        info = await driver.info("vm1")
        assert (info.state, info.pid, info.ssh_port, info.accel) == (VmState.RUNNING, 40_000, 2201, "kvm")
        with pytest.raises(HypervisorError, match="running already"):
            await driver.start("vm1")
        assert await driver.forwards("vm1") == {22: 2201}
        port = await driver.forward("vm1", 8080)
        assert await driver.forwards("vm1") == {22: 2201, 8080: port}
        await driver.unforward("vm1", port)
        assert await driver.forwards("vm1") == {22: 2201}
        clock.advance(10)
        stats = await driver.stats("vm1")
        assert stats.cpu_seconds == pytest.approx(1.0) and stats.memory_bytes == 512 * 1024 * 1024
        await driver.stop("vm1", timeout=5)
        assert (await driver.info("vm1")).state == VmState.DEFINED
        assert (await driver.stats("vm1")).memory_bytes == 0
        with pytest.raises(HypervisorError, match="not running"):
            await driver.forwards("vm1")

    run(scenario)


def test_mistakes_are_hypervisor_errors_as_with_the_real_drivers() -> None:
    driver = FakeDriver()

    async def scenario() -> None:
        with pytest.raises(HypervisorError, match="no VM vm9"):
            await driver.info("vm9")
        with pytest.raises(HypervisorError, match="no VM vm9"):
            driver.spec("vm9")
        await driver.destroy("vm9")  # a VM gone already is fine
        await driver.create(spec(), IDENTITY)
        with pytest.raises(HypervisorError, match="exists already"):
            await driver.create(spec(), IDENTITY)
        driver.fail("start")
        with pytest.raises(HypervisorError, match="start failed"):
            await driver.start("vm1")
        await driver.start("vm1")  # the failure was for one call
        driver.die("vm1")
        assert (await driver.info("vm1")).state == VmState.DEFINED and driver.calls["start"] == 2

    run(scenario)


def test_a_snapshot_stops_its_vm_and_a_clone_is_restored_from_it(tmp_path: Path) -> None:
    driver = FakeDriver()
    snapshot = tmp_path / "small.snap"

    async def scenario() -> None:
        await driver.create(spec("tpl"), IDENTITY)
        await driver.start("tpl")
        await driver.snapshot("tpl", snapshot)
        assert snapshot.read_bytes().startswith(SNAPSHOT_MAGIC)
        assert (await driver.info("tpl")).state == VmState.DEFINED
        await driver.create(spec("vm1", 2202, template="tpl"), IDENTITY)
        with pytest.raises(HypervisorError, match="no snapshot"):
            await driver.start("vm1", restore=tmp_path / "missing.snap")
        await driver.start("vm1", restore=snapshot)
        assert driver.vms["vm1"].restored_from == snapshot
        assert "restored vm1" in driver.console_log("vm1")

    run(scenario)


def test_a_driver_that_cannot_snapshot_says_so() -> None:
    driver = FakeDriver(capabilities=Capabilities(snapshots=False))

    async def scenario() -> None:
        await driver.create(spec(), IDENTITY)
        await driver.start("vm1")
        with pytest.raises(HypervisorError, match="cannot snapshot"):
            await driver.snapshot("vm1", Path("/nonexistent/x.snap"))

    run(scenario)


def test_a_disk_is_recorded_plugged_while_the_vm_runs_and_kept_across_its_restarts(tmp_path: Path) -> None:
    driver = FakeDriver()
    image, other = tmp_path / "data.ext4", tmp_path / "other.ext4"
    for path in (image, other):
        path.write_bytes(b"\0")
    disk = Disk("sv-1", image)

    async def scenario() -> None:
        await driver.create(spec(), IDENTITY)
        await driver.create(spec("vm2", 2202), IDENTITY)
        await driver.attach_disk("vm1", disk)  # not running: recorded for its next start
        assert driver.disks("vm1") == [disk] and driver.vms["vm1"].plugged == []
        await driver.start("vm1")
        assert driver.vms["vm1"].plugged == ["sv-1"]
        await driver.attach_disk("vm1", disk)  # again: fine, nothing more
        with pytest.raises(HypervisorError, match="is attached to VM vm1 already"):
            await driver.attach_disk("vm2", Disk("sv-2", image))  # one image, one VM
        with pytest.raises(HypervisorError, match="is attached to VM vm1 already"):
            await driver.attach_disk("vm1", Disk("sv-1", other))  # one serial, one disk
        with pytest.raises(HypervisorError, match="no disk image"):
            await driver.attach_disk("vm1", Disk("sv-3", tmp_path / "missing.ext4"))
        with pytest.raises(HypervisorError, match="has disks attached"):
            await driver.snapshot("vm1", tmp_path / "vm1.snap")
        driver.die("vm1")
        await driver.start("vm1")
        assert driver.vms["vm1"].plugged == ["sv-1"]  # its disks come back with it
        await driver.detach_disk("vm1", "sv-1")
        await driver.detach_disk("vm1", "sv-1")  # gone already: fine
        assert driver.disks("vm1") == [] and driver.vms["vm1"].plugged == []
        await driver.attach_disk("vm2", Disk("sv-2", image))  # free again
        cannot = FakeDriver(capabilities=Capabilities(snapshots=False))
        await cannot.create(spec(), IDENTITY)
        with pytest.raises(HypervisorError, match="cannot attach disks"):
            await cannot.attach_disk("vm1", disk)

    run(scenario)


# the provisioner on it


def provisioner(driver: FakeDriver, templates: FakeDriver, snapshots: Path) -> Provisioner:
    async def ready(connection: SSHClientConnection) -> None:
        raise AssertionError("nothing is booted in these tests")

    client = asyncssh.generate_private_key("ssh-ed25519")
    return Provisioner(driver, templates, IMAGE, client, ready, snapshots)


def test_a_vm_is_a_clone_of_its_flavors_template_once_the_template_is_saved(tmp_path: Path) -> None:
    driver, templates = FakeDriver(), FakeDriver()
    provision = provisioner(driver, templates, tmp_path)
    template = f"small-{IMAGE.name}"

    async def scenario() -> None:
        await templates.create(spec(template, 2200), IDENTITY)  # saved by an earlier run
        await templates.start(template)
        await templates.snapshot(template, tmp_path / f"{template}.snap")
        await provision.create("vm1", SMALL)

    run(scenario)
    made = driver.spec("vm1")
    assert made.template == template
    assert made.image.disk == templates.disk(template) and made.image.kernel == IMAGE.kernel
    assert made.flavor == SMALL and driver.identity("vm1").hostname == "vm1"
    assert templates.calls["start"] == 1  # the template was not booted again


def test_a_vm_boots_cold_where_the_driver_cannot_snapshot(tmp_path: Path) -> None:
    driver = FakeDriver(capabilities=Capabilities(snapshots=False))
    templates = FakeDriver()
    provision = provisioner(driver, templates, tmp_path)

    async def scenario() -> None:
        await provision.create("vm1", SMALL)

    run(scenario)
    assert driver.spec("vm1").template is None and driver.spec("vm1").image == IMAGE
    assert templates.calls == {}  # no template was even tried


def test_a_template_that_cannot_be_made_leaves_nothing_and_the_vm_boots_cold(tmp_path: Path) -> None:
    driver, templates = FakeDriver(), FakeDriver()
    templates.fail("start", HypervisorError("QEMU exited (fake)"))
    provision = provisioner(driver, templates, tmp_path)

    async def scenario() -> None:
        await provision.create("vm1", SMALL)

    run(scenario)
    assert templates.names() == [] and list(tmp_path.iterdir()) == []
    assert driver.spec("vm1").template is None and driver.spec("vm1").image == IMAGE


# the VM nodes on it


def vm_nodes(engine: Engine, driver: FakeDriver, sockets: Path, detached: list[str]) -> VmNodes:
    return VmNodes(engine, driver, lambda: None, sockets, lambda handle: None, detached.append)


def add_row(engine: Engine, name: str, state: NodeState) -> None:
    with db.session(engine) as session:
        registry.register(session, "op", Node(name=name, driver="fake", docker_url="", state=state, flavor="small"))


def row(engine: Engine, name: str) -> Node | None:
    with db.session(engine) as session:
        return session.get(Node, name)


def test_a_vm_node_being_removed_is_detached_destroyed_and_forgotten(engine: Engine, tmp_path: Path) -> None:
    driver, detached = FakeDriver(), []
    nodes = vm_nodes(engine, driver, tmp_path, detached)
    add_row(engine, "vm1", NodeState.REMOVING)

    async def scenario() -> None:
        await driver.create(spec(), IDENTITY)
        await driver.start("vm1")
        await nodes.sync()
        await until(lambda: row(engine, "vm1") is None)

    run(scenario)
    assert detached == ["vm1"] and driver.names() == [] and driver.calls["destroy"] == 1


def test_a_vm_node_without_a_node_image_fails_with_what_to_do(engine: Engine, tmp_path: Path) -> None:
    driver = FakeDriver()
    nodes = vm_nodes(engine, driver, tmp_path, [])
    add_row(engine, "vm1", NodeState.PROVISIONING)

    async def scenario() -> None:
        await nodes.sync()
        await until(lambda: getattr(row(engine, "vm1"), "state", None) == NodeState.FAILED)

    run(scenario)
    failed = row(engine, "vm1")
    assert failed is not None and failed.message is not None
    assert failed.message.startswith("no node image is built; build it (strata images node-build)")
    assert driver.names() == []  # nothing was defined


def test_a_vm_nodes_published_ports_are_forwarded_on_first_use_and_unforwarded_when_unused() -> None:
    driver = FakeDriver()

    async def scenario() -> None:
        await driver.create(spec(), IDENTITY)
        await driver.start("vm1")
        host = GuestHost(driver, "vm1", cast(SSHClientConnection, None), 2201)  # no SSH: nothing is killed here
        first = await host.endpoint(32768)
        assert await host.endpoint(32768) == first  # one forward per published port
        second = await host.endpoint(32769)
        assert await driver.forwards("vm1") == {22: 2201, 32768: int(first.split(":")[1]), 32769: 30_001}
        await host.retain({32769})
        assert await driver.forwards("vm1") == {22: 2201, 32769: int(second.split(":")[1])}  # SSH's is kept
        assert first.startswith("127.0.0.1:")

    run(scenario)
