"""`FakeGuestDisks`: a VM node's guest mounts in memory, for tests of what moves volumes between nodes.

A first-class implementation of `guest_disks.GuestDisks` beside `SshGuestDisks`: it mounts only a disk its VM
has plugged now (as the fake hypervisor holds it: `FakeDriver.vms[vm].plugged`), refuses to unmount a
filesystem a test marked `busy` (a container's mount namespace holds it), and forgets its mounts when the VM
stops, as a guest's kernel does.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from hosting.iaas.driver import VmState
from hosting.iaas.fake import FakeDriver
from hosting.paas.guest_disks import GuestDisks
from hosting.paas.volumes import VolumeError, VolumeUsage

SIZE_BYTES = 64 << 20
USED_BYTES = 4096


@dataclass
class FakeGuestDisks(GuestDisks):
    driver: FakeDriver
    vm: str
    mounted: dict[str, str] = field(default_factory=dict)  # path -> serial, as of `boot`
    busy: set[str] = field(default_factory=set)  # paths whose filesystem a container still holds
    calls: list[str] = field(default_factory=list)  # "mount PATH", "unmount PATH", in order
    boot: int | None = None  # the VM's boot the mounts are of

    @property
    def mounts(self) -> dict[str, str]:
        """Path -> serial of what the guest has mounted now."""
        self._forget_if_rebooted()
        return dict(self.mounted)

    async def mount(self, serial: str, path: str) -> None:
        self._forget_if_rebooted()
        self.calls.append(f"mount {path}")
        if serial not in self._plugged():
            raise VolumeError(f"on node {self.vm}: the guest has no disk of serial {serial}")
        self.mounted[path] = serial

    async def unmount(self, path: str, *, force: bool = False) -> None:
        self._forget_if_rebooted()
        self.calls.append(f"unmount {path}")
        if path in self.busy and not force:
            raise VolumeError(f"on node {self.vm}: its filesystem is still mounted by a container")
        self.mounted.pop(path, None)

    async def usage(self, path: str) -> VolumeUsage:
        self._forget_if_rebooted()
        if path not in self.mounted:
            raise VolumeError(f"on node {self.vm}: {path} is not mounted")
        return VolumeUsage(size_bytes=SIZE_BYTES, used_bytes=USED_BYTES)

    def _plugged(self) -> list[str]:
        vm = self.driver.vms.get(self.vm)
        return list(vm.plugged) if vm is not None else []

    def _forget_if_rebooted(self) -> None:
        """A VM that stopped or started again since lost its guest's mounts."""
        vm = self.driver.vms.get(self.vm)
        boot = vm.boots if vm is not None and vm.state != VmState.DEFINED else None
        if boot != self.boot:
            self.mounted, self.boot = {}, boot


def fake_guests(driver: FakeDriver) -> tuple[dict[str, FakeGuestDisks], Callable[[str], GuestDisks | None]]:
    """Guests of the fake driver's running VMs, made on first use; and the lookup a node's volumes use (None
    for a VM that does not run: no connection to its guest)."""
    guests: dict[str, FakeGuestDisks] = {}

    def guest(node: str) -> GuestDisks | None:
        try:
            running = driver.vms[node].state == VmState.RUNNING
        except KeyError:
            return None
        if not running:
            return None
        return guests.setdefault(node, FakeGuestDisks(driver, node))

    return guests, guest
