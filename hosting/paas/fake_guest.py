"""`FakeGuestDisks`: a VM node's guest mounts in memory, for tests of what moves volumes between nodes and
backs them up.

A first-class implementation of `guest_disks.GuestDisks` beside `SshGuestDisks`: it mounts only a disk its VM
has plugged now (as the fake hypervisor holds it: `FakeDriver.vms[vm].plugged`), refuses to unmount a
filesystem a test marked `busy` (a container's mount namespace holds it), forgets its mounts when the VM
stops, as a guest's kernel does, and answers nothing while a test says it does not (`answering`). A disk's
files are a directory of the host per serial (`files`), shared by the driver's guests as the disk's image
would be; its archives, extractions and checksums are the real guest's scripts, run on that directory.
"""

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hosting.iaas.driver import VmState
from hosting.iaas.fake import FakeDriver
from hosting.paas.guest_disks import ARCHIVE, EXTRACT, SUMS, GuestDisks
from hosting.paas.volumes import VolumeError, VolumeUsage

SIZE_BYTES = 64 << 20
USED_BYTES = 4096


@dataclass
class FakeGuestDisks(GuestDisks):
    driver: FakeDriver
    vm: str
    disks: Path  # a directory per serial: each disk's files
    mounted: dict[str, str] = field(default_factory=dict)  # path -> serial, as of `boot`
    busy: set[str] = field(default_factory=set)  # paths whose filesystem a container still holds
    calls: list[str] = field(default_factory=list)  # "mount PATH", "unmount PATH", "archive PATH"..., in order
    boot: int | None = None  # the VM's boot the mounts are of
    answering: bool = True  # False: every call fails as one over a connection that is gone

    @property
    def mounts(self) -> dict[str, str]:
        """Path -> serial of what the guest has mounted now."""
        self._forget_if_rebooted()
        return dict(self.mounted)

    def files(self, path: str) -> Path:
        """The directory of the files of the disk mounted at `path`."""
        self._forget_if_rebooted()
        if path not in self.mounted:
            raise VolumeError(f"on node {self.vm}: {path} is not mounted")
        return self.disks / self.mounted[path]

    async def mount(self, serial: str, path: str) -> None:
        self._call("mount", path)
        if serial not in self._plugged():
            raise VolumeError(f"on node {self.vm}: the guest has no disk of serial {serial}")
        (self.disks / serial).mkdir(parents=True, exist_ok=True)
        self.mounted[path] = serial

    async def unmount(self, path: str, *, force: bool = False) -> None:
        self._call("unmount", path)
        if path in self.busy and not force:
            raise VolumeError(f"on node {self.vm}: its filesystem is still mounted by a container")
        self.mounted.pop(path, None)

    async def usage(self, path: str) -> VolumeUsage:
        self._answer()
        self.files(path)
        return VolumeUsage(size_bytes=SIZE_BYTES, used_bytes=USED_BYTES)

    async def archive(self, path: str, into: IO[bytes]) -> None:
        self._call("archive", path)
        await asyncio.to_thread(self._sh, ARCHIVE, self.files(path), stdout=into)

    async def extract(self, path: str, archive: IO[bytes]) -> None:
        self._call("extract", path)
        await asyncio.to_thread(self._sh, EXTRACT, self.files(path), stdin=archive)

    async def sums(self, path: str) -> bytes:
        self._call("sums", path)
        return await asyncio.to_thread(self._sh, SUMS, self.files(path))

    def _call(self, verb: str, path: str) -> None:
        self._forget_if_rebooted()
        self.calls.append(f"{verb} {path}")
        self._answer()

    def _answer(self) -> None:
        if not self.answering:
            raise VolumeError(f"the guest of node {self.vm} does not answer: connection lost")

    def _sh(
        self, script: str, directory: Path, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
    ) -> bytes:
        """The guest's `script` on `directory` (its $1), as `SshGuestDisks` runs it on a mount point."""
        done = subprocess.run(
            ["sh", "-c", script, "strata", str(directory)], check=False, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=subprocess.PIPE if stdout is None else stdout,
        )  # fmt: skip
        if done.returncode != 0:
            raise VolumeError(f"on node {self.vm}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout or b""

    def _plugged(self) -> list[str]:
        vm = self.driver.vms.get(self.vm)
        return list(vm.plugged) if vm is not None else []

    def _forget_if_rebooted(self) -> None:
        """A VM that stopped or started again since lost its guest's mounts."""
        vm = self.driver.vms.get(self.vm)
        boot = vm.boots if vm is not None and vm.state != VmState.DEFINED else None
        if boot != self.boot:
            self.mounted, self.boot = {}, boot


def fake_guests(
    driver: FakeDriver, disks: Path
) -> tuple[dict[str, FakeGuestDisks], Callable[[str], GuestDisks | None]]:
    """Guests of the fake driver's running VMs, made on first use, their disks' files under `disks`; and the
    lookup a node's volumes use (None for a VM that does not run: no connection to its guest)."""
    guests: dict[str, FakeGuestDisks] = {}

    def guest(node: str) -> GuestDisks | None:
        try:
            running = driver.vms[node].state == VmState.RUNNING
        except KeyError:
            return None
        if not running:
            return None
        return guests.setdefault(node, FakeGuestDisks(driver, node, disks))

    return guests, guest
