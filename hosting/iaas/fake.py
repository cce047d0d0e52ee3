"""The `fake` hypervisor driver: VMs in memory, for fast tests of what drives VMs and for benchmarks at scale.

A first-class driver beside `qemu.py` and `libvirt.py`, as Nova keeps `virt/fake.py`: it keeps the contract of
`driver.py` (the same `HypervisorError` for the same mistakes: an unknown VM, a VM that runs already, a restore
from a snapshot that is not there) and runs nothing. Deterministic: pids and forwarded ports follow from the
calls made, and time is the injected clock's. Its ports are made up and never listened on; the one file it
writes is a snapshot, at the path its caller gives (callers look for the file).

What a test does to it, as the world would: `die` (the VM's process ends by itself), `pause`, `fail` a verb once,
`write_console` (what the guest prints). `FakeVm.plugged` is what its guest sees of its disks now: the recorded
ones from each start on, as QEMU gives them.
"""

import itertools
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hosting.iaas.accel import Accel
from hosting.iaas.driver import (
    SERIAL_PATTERN,
    Capabilities,
    Disk,
    HypervisorDriver,
    HypervisorError,
    Identity,
    VmInfo,
    VmSpec,
    VmState,
    VmStats,
)

FIRST_PID = 40_000
FIRST_PORT = 30_000  # made-up forwarded ports of 127.0.0.1, handed out in turn
SSH_GUEST_PORT = 22
MIB = 1024 * 1024
DISK_BYTES = 64 * MIB  # what a VM's own disk layer takes
RESIDENT_SHARE = 0.5  # of its flavor's memory, what a running VM's process holds
BUSY_SHARE = 0.1  # of its vCPUs, what a running VM uses
SNAPSHOT_MAGIC = b"strata fake snapshot\n"
SNAPSHOTS = Capabilities(snapshots=True, disks=True)
KVM = Accel("kvm")
ROOT = Path("/nonexistent/fake-vms")  # where its VMs' disks would be: a path only, never created

Monotonic = Callable[[], float]


@dataclass
class FakeVm:
    """A VM as the fake hypervisor holds it; tests may read any of it."""

    spec: VmSpec
    identity: Identity
    state: VmState = VmState.DEFINED
    pid: int | None = None
    started_at: float | None = None
    cpu_seconds: float = 0.0  # of the runs before this one
    restored_from: Path | None = None  # the snapshot of its last start, if it was restored
    console: list[str] = field(default_factory=list)
    forwards: dict[int, int] = field(default_factory=dict)  # guest port -> host port, SSH's included
    boots: int = 0
    disks: list[Disk] = field(default_factory=list)  # recorded: kept across its restarts
    plugged: list[str] = field(default_factory=list)  # the serials its running guest sees now


class FakeDriver(HypervisorDriver):
    """`root` is where its VMs' disks would be (paths only: nothing is written there); `clock` is monotonic."""

    name = "fake"

    def __init__(
        self,
        *,
        capabilities: Capabilities = SNAPSHOTS,
        accel: Accel = KVM,
        clock: Monotonic = time.monotonic,
        root: Path = ROOT,
    ) -> None:
        self.capabilities = capabilities
        self.accel = accel
        self.clock = clock
        self.root = root
        self.vms: dict[str, FakeVm] = {}
        self.calls: Counter[str] = Counter()  # verb -> times called (answered or not)
        self._failures: dict[str, list[HypervisorError]] = {}
        self._pids = itertools.count(FIRST_PID)
        self._ports = itertools.count(FIRST_PORT)

    # what a test does to it

    def fail(self, verb: str, error: HypervisorError | None = None) -> None:
        """The next call of `verb` ("create", "start", "snapshot", ...) raises `error`."""
        self._failures.setdefault(verb, []).append(error or HypervisorError(f"{verb} failed (fake hypervisor)"))

    def die(self, name: str) -> None:
        """The VM's process ends by itself (a guest panic, the OOM killer): it is defined, not running."""
        self._halt(self._vm(name))

    def pause(self, name: str) -> None:
        vm = self._vm(name)
        if vm.state != VmState.RUNNING:
            raise HypervisorError(f"VM {name} is not running")
        vm.state = VmState.PAUSED

    def write_console(self, name: str, *lines: str) -> None:
        self._vm(name).console.extend(lines)

    # HypervisorDriver

    async def create(self, spec: VmSpec, identity: Identity) -> None:
        self._answer("create")
        if spec.name in self.vms:
            raise HypervisorError(f"VM {spec.name} exists already")
        if spec.template is not None and not self.capabilities.snapshots:
            raise HypervisorError(f"VM {spec.name}: the {self.name} driver cannot restore snapshots")
        self.vms[spec.name] = FakeVm(spec, identity)

    async def start(self, name: str, *, restore: Path | None = None) -> None:
        self._answer("start")
        vm = self._vm(name)
        if vm.state != VmState.DEFINED:
            raise HypervisorError(f"VM {name} is running already")
        if restore is not None:
            if not self.capabilities.snapshots:
                raise HypervisorError(f"VM {name}: the {self.name} driver cannot restore snapshots")
            if not restore.is_file() or not restore.read_bytes().startswith(SNAPSHOT_MAGIC):
                raise HypervisorError(f"VM {name}: no snapshot at {restore}")
        vm.state, vm.pid, vm.started_at, vm.restored_from = VmState.RUNNING, next(self._pids), self.clock(), restore
        vm.boots += 1
        vm.forwards = {SSH_GUEST_PORT: vm.spec.ssh_port}  # QEMU's command line forwards SSH, nothing else
        vm.plugged = [disk.serial for disk in vm.disks]
        vm.console = [f"{'restored' if restore else 'booted'} {name} (fake), boot {vm.boots}"]

    async def stop(self, name: str, *, timeout: float) -> None:
        self._answer("stop")
        self._halt(self._vm(name))

    async def destroy(self, name: str) -> None:
        self._answer("destroy")
        vm = self.vms.pop(name, None)
        if vm is not None:
            self._halt(vm)

    def names(self) -> list[str]:
        return sorted(self.vms)

    def spec(self, name: str) -> VmSpec:
        return self._vm(name).spec

    def identity(self, name: str) -> Identity:
        return self._vm(name).identity

    def disk(self, name: str) -> Path:
        self._vm(name)
        return self.root / name / "disk.qcow2"

    async def info(self, name: str) -> VmInfo:
        self._answer("info")
        vm = self._vm(name)
        return VmInfo(name=name, state=vm.state, pid=vm.pid, accel=str(self.accel), ssh_port=vm.spec.ssh_port)

    async def stats(self, name: str) -> VmStats:
        self._answer("stats")
        vm = self._vm(name)
        if vm.state == VmState.DEFINED:
            return VmStats(cpu_seconds=vm.cpu_seconds, memory_bytes=0, disk_bytes=DISK_BYTES)
        flavor = vm.spec.flavor
        return VmStats(
            cpu_seconds=vm.cpu_seconds + self._run_seconds(vm) * flavor.vcpus * BUSY_SHARE,
            memory_bytes=int(flavor.memory_mib * MIB * RESIDENT_SHARE),
            disk_bytes=DISK_BYTES,
        )

    def console_log(self, name: str, lines: int = 50) -> str:
        vm = self.vms.get(name)
        return "" if vm is None else "\n".join(vm.console[-lines:])

    async def forward(self, name: str, guest_port: int) -> int:
        self._answer("forward")
        vm = self._running(name)
        host_port = next(self._ports)
        vm.forwards[guest_port] = host_port
        return host_port

    async def forwards(self, name: str) -> dict[int, int]:
        self._answer("forwards")
        return dict(self._running(name).forwards)

    async def unforward(self, name: str, host_port: int) -> None:
        self._answer("unforward")
        vm = self._running(name)
        vm.forwards = {guest: host for guest, host in vm.forwards.items() if host != host_port}

    async def snapshot(self, name: str, path: Path) -> None:
        """Writes a small file at `path` standing for the VM's state; the VM is left stopped."""
        self._answer("snapshot")
        if not self.capabilities.snapshots:
            raise HypervisorError(f"VM {name}: the {self.name} driver cannot snapshot")
        if self._running(name).disks:
            raise HypervisorError(f"VM {name} has disks attached: a snapshot of it would need them at every restore")
        path.write_bytes(SNAPSHOT_MAGIC + name.encode() + b"\n")
        self._halt(self._vm(name))

    async def attach_disk(self, name: str, disk: Disk) -> None:
        """As the real drivers: checked as they check it (the image must be a file: tests give real paths)."""
        self._answer("attach_disk")
        vm = self._vm(name)
        if not self.capabilities.disks:
            raise HypervisorError(f"VM {name}: the {self.name} driver cannot attach disks")
        if not re.fullmatch(SERIAL_PATTERN, disk.serial):
            raise HypervisorError(f"VM {name}: a disk's serial is 1 to 20 of A-Z a-z 0-9 -, not {disk.serial!r}")
        if not disk.path.is_file():
            raise HypervisorError(f"VM {name}: no disk image at {disk.path}")
        for other in self.vms.values():
            for attached in other.disks:
                same_serial = other is vm and attached.serial == disk.serial
                if not (attached == disk and other is vm) and (attached.path == disk.path or same_serial):
                    raise HypervisorError(
                        f"VM {name}: disk {attached.serial} ({attached.path}) is attached to VM {other.spec.name} "
                        "already"
                    )
        if disk not in vm.disks:
            vm.disks.append(disk)
        if vm.state != VmState.DEFINED and disk.serial not in vm.plugged:
            vm.plugged.append(disk.serial)

    async def detach_disk(self, name: str, serial: str) -> None:
        self._answer("detach_disk")
        vm = self._vm(name)
        vm.disks = [disk for disk in vm.disks if disk.serial != serial]
        vm.plugged = [plugged for plugged in vm.plugged if plugged != serial]

    def disks(self, name: str) -> list[Disk]:
        return list(self._vm(name).disks)

    # helpers

    def _answer(self, verb: str) -> None:
        self.calls[verb] += 1
        failures = self._failures.get(verb)
        if failures:
            raise failures.pop(0)

    def _vm(self, name: str) -> FakeVm:
        try:
            return self.vms[name]
        except KeyError:
            raise HypervisorError(f"no VM {name}") from None

    def _running(self, name: str) -> FakeVm:
        vm = self._vm(name)
        if vm.state == VmState.DEFINED:
            raise HypervisorError(f"VM {name} is not running")
        return vm

    def _run_seconds(self, vm: FakeVm) -> float:
        return 0.0 if vm.started_at is None else max(0.0, self.clock() - vm.started_at)

    def _halt(self, vm: FakeVm) -> None:
        if vm.state != VmState.DEFINED:
            vm.cpu_seconds += self._run_seconds(vm) * vm.spec.flavor.vcpus * BUSY_SHARE
        vm.state, vm.pid, vm.started_at, vm.forwards, vm.plugged = VmState.DEFINED, None, None, {}, []
