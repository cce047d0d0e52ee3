"""The hypervisor driver interface: the lifecycle verbs of a VM, named once, and what a driver can do.

A driver owns the VMs it started: their processes, disks and state under one directory per VM. It knows
nothing of containers; a VM here is CPU, memory, a disk, a console and SSH forwarded to 127.0.0.1, and the
disks attached to it besides (raw image files of the host, as OpenStack's Cinder attaches volumes).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hosting.iaas.accel import Accel
from hosting.iaas.flavors import Flavor


class HypervisorError(Exception):
    """The hypervisor refused or failed; the message is fit for an event or the API."""


class VmState(StrEnum):
    DEFINED = "defined"  # created, not running
    RUNNING = "running"
    PAUSED = "paused"


@dataclass(frozen=True)
class Capabilities:
    snapshots: bool  # save a running VM to a file and restore clones of it
    disks: bool = False  # attach and detach disks while the VM runs (and keep them across its restarts)


SERIAL_PATTERN = r"[A-Za-z0-9-]{1,20}"  # what every bus carries of a disk's serial (virtio-blk: 20 bytes)


@dataclass(frozen=True)
class Disk:
    """A disk attached to a VM: a raw image file of the host, known to the guest by `serial` (on the image's
    virtio-scsi bus: `/sys/block/sdX/device/vpd_pg80`, the unit serial number page)."""

    serial: str
    path: Path


@dataclass(frozen=True)
class Identity:
    """Who a VM is to its guest: its hostname, its SSH host key (private, OpenSSH format) and the one
    public key it lets in. Per VM, never baked into the shared base image."""

    hostname: str
    host_key: str
    authorized_key: str


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: kernel, initramfs and a root disk image that VM disks are overlays of."""

    name: str
    kernel: Path
    initrd: Path
    disk: Path


@dataclass(frozen=True)
class VmSpec:
    name: str
    flavor: Flavor
    image: GuestImage
    ssh_port: int  # on 127.0.0.1
    template: str | None = None  # a clone's template: the VM whose snapshot it is restored from


@dataclass(frozen=True)
class VmInfo:
    name: str
    state: VmState
    pid: int | None
    accel: str
    ssh_port: int


@dataclass(frozen=True)
class VmStats:
    """What the VM costs its host now (CPU as cumulative seconds, to be differenced)."""

    cpu_seconds: float
    memory_bytes: int  # resident memory of the VM process
    disk_bytes: int  # space the VM's own disk layer takes


class HypervisorDriver(ABC):
    """One kind of hypervisor. Every method may raise `HypervisorError`."""

    name: str
    capabilities: Capabilities
    accel: Accel  # what its VMs run with (kvm, or tcg and why)

    @abstractmethod
    async def create(self, spec: VmSpec, identity: Identity) -> None:
        """Define the VM: its state directory and its copy-on-write disk; it does not run yet."""

    @abstractmethod
    async def start(self, name: str, *, restore: Path | None = None) -> None:
        """Boot the VM, or resume it from `restore`, a snapshot of its template: its disk then starts again
        from the template's disk as it was at the snapshot (memory and disk must agree)."""

    @abstractmethod
    async def stop(self, name: str, *, timeout: float) -> None:
        """Power the VM off: gracefully within `timeout` seconds, then at once."""

    @abstractmethod
    async def destroy(self, name: str) -> None:
        """Stop the VM if it runs and delete everything it had; a VM already gone is fine."""

    @abstractmethod
    def names(self) -> list[str]:
        """The VMs defined."""

    @abstractmethod
    def spec(self, name: str) -> VmSpec: ...

    @abstractmethod
    def identity(self, name: str) -> Identity: ...

    @abstractmethod
    def disk(self, name: str) -> Path:
        """The VM's own disk (a clone's disk is an overlay of its template's)."""

    @abstractmethod
    async def info(self, name: str) -> VmInfo: ...

    @abstractmethod
    async def stats(self, name: str) -> VmStats: ...

    @abstractmethod
    def console_log(self, name: str, lines: int = 50) -> str:
        """The last lines the guest wrote to its serial console."""

    @abstractmethod
    async def forward(self, name: str, guest_port: int) -> int:
        """Forward a free port of 127.0.0.1 to `guest_port` of the guest; returns the host port."""

    @abstractmethod
    async def forwards(self, name: str) -> dict[int, int]:
        """The VM's forwards now: guest port → host port (SSH's included)."""

    @abstractmethod
    async def unforward(self, name: str, host_port: int) -> None: ...

    @abstractmethod
    async def snapshot(self, name: str, path: Path) -> None:
        """Save the running VM's memory and devices to `path`; the VM is left stopped, its disk unchanged.
        Refused while disks are attached: every restore of the snapshot would need them."""

    # attached disks (where `capabilities.disks`)

    @abstractmethod
    async def attach_disk(self, name: str, disk: Disk) -> None:
        """Attach `disk` to the VM: at once if it runs (hot-plugged), and recorded, so that every later start has
        it too (a cold boot on its command line, a restore hot-plugged after the snapshot's devices). Attaching
        the same disk again is fine; another disk of the same serial or image is refused, as is a driver or a VM
        that cannot take disks (one defined before it could). The image must be used by nothing else."""

    @abstractmethod
    async def detach_disk(self, name: str, serial: str) -> None:
        """Detach the disk `serial` from the VM, at once if it runs, and from its record. To the guest it is
        pulled out: whatever the guest had of it must be unmounted first. A disk not attached is fine."""

    @abstractmethod
    def disks(self, name: str) -> list[Disk]:
        """The disks recorded as attached to the VM, in the order they were attached."""
