"""The `qemu` hypervisor driver: QEMU processes the platform starts itself, controlled over QMP.

A VM's files are those of `vm_dir`, plus its QMP socket and pid file. QEMU runs daemonized, so VMs outlive a
restart of the platform.

Attached disks hang on a virtio-scsi controller every VM (that can take disks) gets at start, each a `scsi-hd`
hot-plugged onto it: one controller takes any number of them, and QEMU takes one off at once, whatever the guest
does (a PCIe root port per disk would cap the disks at the ports given at start, and a hot-unplug there waits for
the guest to eject the device). The controller is on the command line of templates and clones alike, so a
clone's devices at restore are its template's; its disks are plugged once the snapshot has been restored.
"""

import asyncio
import json
import os
import shlex
import shutil
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from hosting.iaas.accel import Accel
from hosting.iaas.driver import Capabilities, Disk, HypervisorError, VmInfo, VmSpec, VmState, VmStats
from hosting.iaas.guest_image import KERNEL_ARGS
from hosting.iaas.qmp import Qmp, qmp_session
from hosting.iaas.vm_dir import DISKS_FILE, NETDEV, VmDirectoryDriver, identity_entries, netdev, new_disk

QEMU = "qemu-system-x86_64"
RUNNING_TIMEOUT_SECONDS = 60
MIGRATION_BANDWIDTH = 8 * 1024**3  # bytes/s: QEMU's default (32 MiB/s) would make a snapshot take ~10 s
SCSI_CONTROLLER = "scsi0"  # the virtio-scsi controller attached disks hang on
UNPLUG_TIMEOUT_SECONDS = 10  # for QEMU to take a disk's device off (scsi-hd: some 50 ms here)


class QemuDriver(VmDirectoryDriver):
    name = "qemu"
    capabilities = Capabilities(snapshots=True, disks=True)

    def __init__(self, vms_dir: Path, accel: Accel, binary: str = QEMU) -> None:
        self.vms_dir = vms_dir
        self.accel = accel
        self.binary = binary
        self._locks: dict[str, asyncio.Lock] = {}  # one QMP client at a time per VM
        self._disk_locks: dict[str, asyncio.Lock] = {}  # one change of a VM's disks at a time

    # lifecycle

    async def start(self, name: str, *, restore: Path | None = None) -> None:
        directory = self._directory(name)
        if self._pid(name) is not None:
            raise HypervisorError(f"VM {name} is running already")
        for stale in ("qmp.sock", "qemu.pid", "console.log"):
            (directory / stale).unlink(missing_ok=True)
        spec = self.spec(name)
        if restore is not None:
            await new_disk(spec, directory / "disk.qcow2")
        disks = self.disks(name) if (directory / DISKS_FILE).exists() else None
        await _daemonize(
            command_line(self.binary, spec, directory, self.accel, restore=restore, disks=disks),
            directory / "qemu.log",
        )
        await self._until_running(name, RUNNING_TIMEOUT_SECONDS)
        if restore is not None and disks:  # the snapshot's devices are its template's: the disks come after
            async with self._disk_lock(name):
                for disk in disks:
                    await self._plug(name, disk)

    async def stop(self, name: str, *, timeout: float) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        if timeout > 0:
            try:
                async with self._qmp(name) as qmp:
                    await qmp.execute("system_powerdown")
            except HypervisorError:
                pass  # no QMP: it is killed below
            if await _exited(pid, timeout):
                return
        try:
            async with self._qmp(name) as qmp:
                await qmp.execute("quit")
        except HypervisorError:
            pass
        if not await _exited(pid, 5):
            os.kill(pid, signal.SIGKILL)
            await _exited(pid, 5)

    async def destroy(self, name: str) -> None:
        if not (self.vms_dir / name).is_dir():
            return
        await self.stop(name, timeout=0)
        shutil.rmtree(self.vms_dir / name)
        self._locks.pop(name, None)

    # what it is and costs

    async def info(self, name: str) -> VmInfo:
        spec = self.spec(name)
        pid = self._pid(name)
        state = VmState.DEFINED
        if pid is not None:
            async with self._qmp(name) as qmp:
                status = await qmp.execute("query-status")
            state = VmState.RUNNING if status["running"] else VmState.PAUSED
        return VmInfo(name=name, state=state, pid=pid, accel=str(self.accel), ssh_port=spec.ssh_port)

    async def stats(self, name: str) -> VmStats:
        """vCPU time from the vCPU threads QMP names; memory from the QEMU process; disk from the overlay."""
        disk = self.disk_bytes(name)
        pid = self._pid(name)
        if pid is None:
            return VmStats(cpu_seconds=0.0, memory_bytes=0, disk_bytes=disk)
        async with self._qmp(name) as qmp:
            cpus = await qmp.execute("query-cpus-fast")
        ticks = sum(_thread_ticks(pid, cpu["thread-id"]) for cpu in cpus)
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return VmStats(
            cpu_seconds=ticks / os.sysconf("SC_CLK_TCK"),
            memory_bytes=resident_pages * os.sysconf("SC_PAGE_SIZE"),
            disk_bytes=disk,
        )

    async def _monitor(self, name: str, command: str) -> str:
        async with self._qmp(name) as qmp:
            return await qmp.hmp(command)

    # snapshots

    async def snapshot(self, name: str, path: Path) -> None:
        """Pause, stream the VM's state to `path` through QEMU's migration, and quit the VM."""
        if self.disks(name):
            raise HypervisorError(f"VM {name} has disks attached: a snapshot of it would need them at every restore")
        partial = path.with_suffix(".partial")
        async with self._qmp(name) as qmp:
            await qmp.execute("stop")
            await qmp.execute("migrate-set-parameters", {"max-bandwidth": MIGRATION_BANDWIDTH})
            await qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(partial))}"})
            while (status := (await qmp.execute("query-migrate")).get("status")) not in ("completed", "failed"):
                await asyncio.sleep(0.05)
            if status == "failed":
                raise HypervisorError(f"VM {name}: snapshot failed")
        await self.stop(name, timeout=0)
        partial.replace(path)

    # attached disks

    async def attach_disk(self, name: str, disk: Disk) -> None:
        async with self._disk_lock(name):
            new = self._attaching(name, disk)
            if self._pid(name) is not None:
                await self._plug(name, disk)
            if new:
                self._record_disks(name, [*self.disks(name), disk])

    async def detach_disk(self, name: str, serial: str) -> None:
        async with self._disk_lock(name):
            if self._pid(name) is not None:
                await self._unplug(name, serial)
            self._record_disks(name, [disk for disk in self.disks(name) if disk.serial != serial])

    async def _plug(self, name: str, disk: Disk) -> None:
        """Hot-plug the disk unless it is plugged (a step of an attach cut off before is finished)."""
        node, device = _disk_ids(disk.serial)
        async with self._qmp(name) as qmp:
            if node not in await _block_nodes(qmp):
                await qmp.execute("blockdev-add", blockdev(disk))
            if device not in await _devices(qmp):
                await qmp.execute("device_add", scsi_disk(disk))

    async def _unplug(self, name: str, serial: str) -> None:
        """Take the disk's device off, then its block node once the device lets go of it."""
        node, device = _disk_ids(serial)
        deadline = time.monotonic() + UNPLUG_TIMEOUT_SECONDS
        async with self._qmp(name) as qmp:
            if device in await _devices(qmp):
                await qmp.execute("device_del", {"id": device})
            while node in await _block_nodes(qmp):
                try:
                    await qmp.execute("blockdev-del", {"node-name": node})
                except HypervisorError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.02)  # the device is going: it holds its node until it is gone

    def _disk_lock(self, name: str) -> asyncio.Lock:
        return self._disk_locks.setdefault(name, asyncio.Lock())

    # helpers

    def _pid(self, name: str) -> int | None:
        """The QEMU process of the VM, if it runs (a pid file may outlive its process, or name another)."""
        try:
            pid = int((self.vms_dir / name / "qemu.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid if b"-name" in cmdline and name.encode() in cmdline else None

    def _qmp(self, name: str) -> AbstractAsyncContextManager[Qmp]:
        return _locked(self._locks.setdefault(name, asyncio.Lock()), self.vms_dir / name / "qmp.sock", name)

    async def _until_running(self, name: str, timeout: float) -> None:
        """Wait until the guest runs; a restore is resumed once QEMU has read the whole snapshot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pid(name) is None:
                raise HypervisorError(f"VM {name}: QEMU exited; console: {self.console_log(name, 5)!r}")
            async with self._qmp(name) as qmp:
                status = await qmp.execute("query-status")
            if status["running"]:
                return
            if status["status"] == "paused":  # restored: the snapshot was taken of a paused VM
                async with self._qmp(name) as qmp:
                    await qmp.execute("cont")
                continue
            if status["status"] not in ("inmigrate", "prelaunch"):
                raise HypervisorError(f"VM {name}: QEMU is {status['status']}, not running")
            await asyncio.sleep(0.02)
        raise HypervisorError(f"VM {name}: not running after {timeout:.0f} s")


def command_line(
    binary: str, spec: VmSpec, directory: Path, accel: Accel, *, restore: Path | None, disks: list[Disk] | None = None
) -> list[str]:
    """QEMU's arguments for `spec`: q35, virtio disk/net/rng, vmgenid (a restored clone reseeds its random
    generator), identity by fw_cfg, the serial console to a file, QMP on a unix socket, SSH on 127.0.0.1.
    `disks` (None for a VM defined before VMs could take disks): a virtio-scsi controller, and on a cold boot
    those disks on it (a restore gets them after the snapshot's devices: its template had none)."""
    flavor = spec.flavor
    entries = identity_entries(directory).items()
    identity = [arg for name, path in entries for arg in ("-fw_cfg", f"name={name},file={path}")]
    attached = [] if disks is None else ["-device", f"virtio-scsi-pci,id={SCSI_CONTROLLER}"]
    for disk in disks if disks is not None and restore is None else []:
        attached += ["-blockdev", json.dumps(blockdev(disk)), "-device", json.dumps(scsi_disk(disk))]
    return [
        binary,
        "-name", spec.name,
        "-machine", "q35",
        *accel.qemu_args,
        "-smp", str(flavor.vcpus),
        "-m", str(flavor.memory_mib),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{directory / 'console.log'}",
        "-kernel", str(spec.image.kernel),
        "-initrd", str(spec.image.initrd),
        "-append", KERNEL_ARGS,
        "-drive", f"file={directory / 'disk.qcow2'},if=none,id=d0,format=qcow2,discard=unmap",
        "-device", "virtio-blk-pci,drive=d0",
        "-netdev", netdev(spec.ssh_port),
        "-device", f"virtio-net-pci,netdev={NETDEV}",
        "-device", "virtio-rng-pci",
        "-device", "vmgenid,guid=auto",
        *attached,
        *identity,
        "-qmp", f"unix:{directory / 'qmp.sock'},server=on,wait=off",
        "-pidfile", str(directory / "qemu.pid"),
        "-daemonize",
        *(["-incoming", f"exec:cat {shlex.quote(str(restore))}"] if restore else []),
    ]  # fmt: skip


def blockdev(disk: Disk) -> dict[str, object]:
    """The block node of an attached disk: its raw image read and written directly (the guest caches; the
    host's page cache would hold its pages a second time), never trimmed (a volume's image stays allocated)."""
    node, _ = _disk_ids(disk.serial)
    return {
        "driver": "raw", "node-name": node, "discard": "ignore",
        "file": {"driver": "file", "filename": str(disk.path), "aio": "threads", "cache": {"direct": True},
                 "discard": "ignore"},
    }  # fmt: skip


def scsi_disk(disk: Disk) -> dict[str, object]:
    node, device = _disk_ids(disk.serial)
    return {"driver": "scsi-hd", "id": device, "drive": node, "bus": f"{SCSI_CONTROLLER}.0", "serial": disk.serial}


def _disk_ids(serial: str) -> tuple[str, str]:
    """The QEMU block node and device of the disk `serial`."""
    return f"vol-{serial}", f"disk-{serial}"


async def _block_nodes(qmp: Qmp) -> set[str]:
    return {node["node-name"] for node in await qmp.execute("query-named-block-nodes", {"flat": True})}


async def _devices(qmp: Qmp) -> set[str]:
    """The ids of the devices given one (on the command line or by device_add)."""
    return {child["name"] for child in await qmp.execute("qom-list", {"path": "/machine/peripheral"})}


@asynccontextmanager
async def _locked(lock: asyncio.Lock, socket_path: Path, name: str) -> AsyncIterator[Qmp]:
    async with lock, qmp_session(socket_path, name) as qmp:
        yield qmp


async def _daemonize(args: list[str], log: Path) -> None:
    """Run QEMU until it has daemonized. Its errors go to `log`, not to a pipe: the daemon would hold a pipe
    open for its whole life (uvloop leaves it inherited), and waiting for its end would never end."""
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=errors, stderr=errors
        )
        await process.wait()
    if process.returncode != 0:
        raise HypervisorError(f"{args[0]} failed: {log.read_text(errors='replace').strip()}")


async def _exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        await asyncio.sleep(0.05)
    return not Path(f"/proc/{pid}").exists()


def _thread_ticks(pid: int, thread: int) -> int:
    fields = Path(f"/proc/{pid}/task/{thread}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
