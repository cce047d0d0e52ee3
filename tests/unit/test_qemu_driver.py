"""The qemu driver's command line, and its QMP exchange with a real QEMU (a machine with no CPU, or one whose CPUs
never start: instant)."""

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hosting.iaas.accel import Accel
from hosting.iaas.driver import Disk, GuestImage, HypervisorError, Identity, VmSpec, VmState
from hosting.iaas.flavors import flavor
from hosting.iaas.net import free_port
from hosting.iaas.qemu import QemuDriver, command_line
from hosting.iaas.qmp import qmp_session
from hosting.iaas.vm_dir import parse_usernet

IMAGE = GuestImage("node-test", Path("/img/vmlinuz"), Path("/img/initrd.img"), Path("/img/base.ext4"))
SPEC = VmSpec("n1", flavor("medium"), IMAGE, ssh_port=40022)
IDENTITY = Identity("n1", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n", "ssh-ed25519 AAAA strata")


def option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == name]


def test_kvm_gets_the_host_cpu_and_tcg_the_emulated_one() -> None:
    kvm = command_line("qemu", SPEC, Path("/vms/n1"), Accel("kvm"), restore=None)
    tcg = command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg", "pvm"), restore=None)
    assert (option(kvm, "-accel"), option(kvm, "-cpu")) == (["kvm"], ["host"])
    assert (option(tcg, "-accel"), option(tcg, "-cpu")) == (["tcg,thread=multi,tb-size=256"], ["max"])
    assert (option(kvm, "-smp"), option(kvm, "-m")) == (["2"], ["2048"])


def test_networking_is_user_mode_restricted_and_forwards_listen_on_loopback_only() -> None:
    args = command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg"), restore=None)
    (netdev,) = option(args, "-netdev")
    assert netdev == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"


def test_identity_goes_by_fw_cfg_and_a_restore_reads_the_snapshot() -> None:
    args = command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg"), restore=Path("/snaps/small.snap"))
    assert sorted(option(args, "-fw_cfg")) == [
        "name=opt/strata/authorized_keys,file=/vms/n1/authorized_keys",
        "name=opt/strata/hostname,file=/vms/n1/hostname",
        "name=opt/strata/ssh_host_ed25519_key,file=/vms/n1/host_key",
    ]
    assert option(args, "-incoming") == ["exec:cat /snaps/small.snap"]
    assert "vmgenid,guid=auto" in option(args, "-device")
    assert "-incoming" not in command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg"), restore=None)


def test_usernet_table_gives_guest_to_host_ports() -> None:
    table = """Hub -1 (n0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]  11       127.0.0.1 34567       10.0.2.15    22     0     0
  TCP[HOST_FORWARD]  12       127.0.0.1 34999       10.0.2.15  8080     0     0
  TCP[ESTABLISHED]   13        10.0.2.2 52512       10.0.2.15    22     0     0
"""
    assert parse_usernet(table) == {22: 34567, 8080: 34999}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[QemuDriver, str]]:
    """A VM defined by the driver, run by a real QEMU without a CPU (nothing to boot, QMP all the same)."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 4096)
    driver = QemuDriver(tmp_path / "vms", Accel("tcg", "test"))
    spec = VmSpec("n1", flavor("small"), GuestImage("t", base, base, base), ssh_port=free_port())
    asyncio.run(driver.create(spec, IDENTITY))
    directory = tmp_path / "vms" / "n1"
    subprocess.run(
        ["qemu-system-x86_64", "-name", "n1", "-M", "none", "-nodefaults", "-display", "none",
         "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
         "-qmp", f"unix:{directory / 'qmp.sock'},server=on,wait=off",
         "-pidfile", str(directory / "qemu.pid"), "-daemonize"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield driver, "n1"
    asyncio.run(driver.destroy("n1"))


def test_forwards_are_added_listed_and_removed_over_qmp(running: tuple[QemuDriver, str]) -> None:
    driver, name = running

    async def exchange() -> tuple[int, dict[int, int], dict[int, int]]:
        host_port = await driver.forward(name, 8080)
        during = await driver.forwards(name)
        await driver.unforward(name, host_port)
        return host_port, during, await driver.forwards(name)

    host_port, during, after = asyncio.run(exchange())
    spec = driver.spec(name)
    assert during == {22: spec.ssh_port, 8080: host_port}
    assert after == {22: spec.ssh_port}


def test_info_stats_and_stop(running: tuple[QemuDriver, str]) -> None:
    driver, name = running
    info = asyncio.run(driver.info(name))
    assert (info.state, info.accel) == (VmState.RUNNING, "tcg (kvm unusable: test)")
    stats = asyncio.run(driver.stats(name))
    assert stats.memory_bytes > 1024 * 1024  # QEMU's own resident memory
    assert stats.disk_bytes > 0
    asyncio.run(driver.stop(name, timeout=0.2))  # no guest to power down: it is made to quit
    assert not Path(f"/proc/{info.pid}").exists()
    assert asyncio.run(driver.info(name)).state == VmState.DEFINED


def test_a_vm_exists_once(running: tuple[QemuDriver, str]) -> None:
    driver, name = running
    with pytest.raises(Exception, match="exists already"):
        asyncio.run(driver.create(driver.spec(name), IDENTITY))


# attached disks


def test_a_vm_that_takes_disks_gets_a_scsi_bus_and_a_cold_boot_its_disks_by_serial() -> None:
    disk = Disk("sv-0123", Path("/volumes/acme/data.ext4"))
    old = command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg"), restore=None)  # defined before disks: as it was
    assert not any(arg.startswith("virtio-scsi-pci") for arg in option(old, "-device"))
    cold = command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg"), restore=None, disks=[disk])
    assert "virtio-scsi-pci,id=scsi0" in option(cold, "-device")
    (node,) = [json.loads(arg) for arg in option(cold, "-blockdev")]
    assert node["file"]["filename"] == "/volumes/acme/data.ext4" and node["file"]["cache"] == {"direct": True}
    assert node["discard"] == node["file"]["discard"] == "ignore"  # the guest never punches holes in a volume
    scsi = json.loads(option(cold, "-device")[-1])
    assert (scsi["driver"], scsi["serial"], scsi["bus"], scsi["drive"]) == (
        "scsi-hd",
        "sv-0123",
        "scsi0.0",
        "vol-sv-0123",
    )
    # a restore has its template's devices (the bus, no disk): the disks are plugged once it runs
    restored = command_line("qemu", SPEC, Path("/vms/n1"), Accel("tcg"), restore=Path("/s.snap"), disks=[disk])
    assert "virtio-scsi-pci,id=scsi0" in option(restored, "-device") and option(restored, "-blockdev") == []


@pytest.fixture
def with_bus(tmp_path: Path) -> Iterator[tuple[QemuDriver, str, Path]]:
    """A VM defined by the driver and run by a real QEMU: a q35 machine held before its CPUs start (nothing
    boots), with the virtio-scsi bus the driver's VMs get."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 4096)
    driver = QemuDriver(tmp_path / "vms", Accel("tcg", "test"))
    spec = VmSpec("n1", flavor("small"), GuestImage("t", base, base, base), ssh_port=free_port())
    asyncio.run(driver.create(spec, IDENTITY))
    directory = tmp_path / "vms" / "n1"
    subprocess.run(
        ["qemu-system-x86_64", "-name", "n1", "-M", "q35", "-S", "-nodefaults", "-display", "none",
         "-device", "virtio-scsi-pci,id=scsi0",
         "-qmp", f"unix:{directory / 'qmp.sock'},server=on,wait=off",
         "-pidfile", str(directory / "qemu.pid"), "-daemonize"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield driver, "n1", tmp_path
    asyncio.run(driver.destroy("n1"))


def test_a_disk_is_hot_plugged_recorded_and_taken_off_by_serial(with_bus: tuple[QemuDriver, str, Path]) -> None:
    driver, name, tmp_path = with_bus
    image, other = tmp_path / "data.ext4", tmp_path / "other.ext4"
    for path in (image, other):
        path.write_bytes(b"\0" * 1024 * 1024)
    disk = Disk("sv-0123", image)

    async def devices() -> set[str]:
        async with driver._qmp(name) as qmp:
            return {child["name"] for child in await qmp.execute("qom-list", {"path": "/machine/peripheral"})}

    async def scenario() -> None:
        await driver.attach_disk(name, disk)
        await driver.attach_disk(name, disk)  # again: fine, nothing more
        assert driver.disks(name) == [disk] and "disk-sv-0123" in await devices()
        with pytest.raises(HypervisorError, match="is attached to VM n1 already"):
            await driver.attach_disk(name, Disk("sv-0123", other))  # one serial, one disk
        with pytest.raises(HypervisorError, match="is attached to VM n1 already"):
            await driver.attach_disk(name, Disk("sv-9", image))  # one image, one disk
        with pytest.raises(HypervisorError, match="serial is 1 to 20"):
            await driver.attach_disk(name, Disk("a serial, with spaces", other))
        with pytest.raises(HypervisorError, match="has disks attached"):
            await driver.snapshot(name, tmp_path / "n1.snap")
        await driver.detach_disk(name, "sv-0123")
        assert driver.disks(name) == [] and "disk-sv-0123" not in await devices()
        await driver.detach_disk(name, "sv-0123")  # gone already: fine
        async with driver._qmp(name) as qmp:  # its block node went with it: the image may be attached again
            nodes = await qmp.execute("query-named-block-nodes", {"flat": True})
        assert [n["node-name"] for n in nodes if n["node-name"].startswith("vol-")] == []

    asyncio.run(scenario())


def test_a_disk_attached_to_a_stopped_vm_is_only_recorded_and_kept_for_its_next_start(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 4096)
    image = tmp_path / "data.ext4"
    image.write_bytes(b"\0" * 4096)
    driver = QemuDriver(tmp_path / "vms", Accel("tcg", "test"))
    spec = VmSpec("n1", flavor("small"), GuestImage("t", base, base, base), ssh_port=free_port())
    asyncio.run(driver.create(spec, IDENTITY))
    asyncio.run(driver.attach_disk("n1", Disk("sv-1", image)))
    again = QemuDriver(tmp_path / "vms", Accel("tcg", "test"))  # a restarted platform reads it back
    assert again.disks("n1") == [Disk("sv-1", image)]
    (tmp_path / "vms" / "n1" / "disks.json").unlink()  # as a VM defined before VMs could take disks
    with pytest.raises(HypervisorError, match="defined before VMs could take disks"):
        asyncio.run(again.attach_disk("n1", Disk("sv-2", image)))


def test_qemu_takes_a_cold_boots_disks_as_the_command_line_gives_them(tmp_path: Path) -> None:
    image = tmp_path / "data.ext4"
    image.write_bytes(b"\0" * 1024 * 1024)
    args = command_line("qemu", SPEC, tmp_path, Accel("tcg"), restore=None, disks=[Disk("sv-1", image)])
    start = args.index("virtio-scsi-pci,id=scsi0") - 1
    attached = args[start : args.index("-fw_cfg")]  # the bus, then each disk's block node and device
    socket = tmp_path / "qmp.sock"
    subprocess.run(
        ["qemu-system-x86_64", "-name", "cold", "-M", "q35", "-S", "-nodefaults", "-display", "none", *attached,
         "-qmp", f"unix:{socket},server=on,wait=off", "-pidfile", str(tmp_path / "qemu.pid"), "-daemonize"],
        check=True, capture_output=True,
    )  # fmt: skip

    async def devices() -> set[str]:
        async with qmp_session(socket, "cold") as qmp:
            found = {child["name"] for child in await qmp.execute("qom-list", {"path": "/machine/peripheral"})}
            await qmp.execute("quit")
        return found

    assert {"scsi0", "disk-sv-1"} <= asyncio.run(devices())
