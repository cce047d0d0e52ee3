"""Persistent volumes with a hard size limit: each one an ext4 filesystem in an image file of its own, loop-mounted
on the host, which the caller bind-mounts into the tenant's containers. The image of a volume on a VM node is
here too, unmounted on the host, attached to the VM as a disk (`hosting.paas.node_volumes`).

Docker's local driver limits a volume's size only on XFS with project quotas, not on this host's ext4. A
filesystem of its own is a limit nothing can pass: a write past it fails with ENOSPC in the container, and the
rest of the host never notices.

The image is fully allocated, never sparse: its space is the volume's from the start, so volumes can never
together fill the host. Three things would punch holes in it, and are kept off: mke2fs's discard of the device
(`nodiscard`), the `discard` mount option (not given), and fstrim (Debian's weekly fstrim.timer trims every
mounted filesystem): the loop device's discard is switched off after each mount.

Everything here blocks (subprocesses, file system calls): callers run it in a thread.
"""

import math
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tenants.names import NAME_PATTERN

MiB = 1024 * 1024
MIN_SIZE_MIB = 16  # ext4 has no journal below 8 MiB; the sizing is measured from 16 MiB to 10 GiB
BLOCK = 4096
# -T default: not mke2fs's "small" type under 512 MiB (1 KiB blocks, four times the inodes).
# -m 0: no root reserve; a container as root would write into it, one as a user would not.
# nodiscard: mke2fs would punch the image's allocation away. Zeroing the inode tables and the journal costs
# nothing on a fallocated image (mke2fs zeroes ranges with fallocate) and spares the kernel's background pass.
MKFS = ("mkfs.ext4", "-q", "-T", "default", "-m", "0", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0")
# A data dir needs no device files, setuid binaries or access times.
MOUNT_OPTIONS = "nodev,nosuid,noatime"
TOLERANCE = 0.004  # files may use the size asked for and at most this much more
GROW = 1.05  # a bigger image adds overhead of its own (inode tables, reserved clusters): a little over 3%
ROUNDS = 8
RELEASE_SECONDS = 2.0  # for the kernel to free a loop device its last mount let go of


class VolumeError(Exception):
    """Creating, mounting or removing a volume failed; the message says why in words fit for the API."""


@dataclass(frozen=True)
class VolumeUsage:
    size_bytes: int  # what files may use in all: used + available (ext4's overhead and reserve excluded)
    used_bytes: int


class LocalVolumes:
    """Volumes on this host: `root/<tenant>/<name>.ext4` (the image) mounted at `root/<tenant>/<name>/` (what
    containers bind-mount). The root directory is 0700 root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, tenant: str, name: str) -> Path:
        """The volume's mount point; `ValueError` unless both names are DNS labels (no path escapes the root)."""
        for value in (tenant, name):
            if not re.fullmatch(NAME_PATTERN, value):
                raise ValueError(f"{value!r} is not a DNS label ([a-z0-9-])")
        return self.root / tenant / name

    def create(self, tenant: str, name: str, size_mib: int) -> Path:
        """Make the volume, mounted, letting files use `size_mib` MiB (at most 0.4% more), and return its mount
        point. `VolumeError` if it exists or the host lacks the space; a failure leaves nothing behind."""
        if size_mib < MIN_SIZE_MIB:
            raise ValueError(f"a volume has at least {MIN_SIZE_MIB} MiB")
        mount = self.path(tenant, name)
        _need_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        mount.parent.mkdir(exist_ok=True)
        try:
            fd = os.open(_image(mount), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise VolumeError(f"volume {name} of tenant {tenant} exists") from None
        try:
            mount.mkdir(exist_ok=True)
            _make(fd, mount, size_mib * MiB)
            # The filesystem's root, writable whatever user a container runs as: only this tenant's containers
            # ever mount it.
            mount.chmod(0o777)
        except BaseException:
            self.remove(tenant, name)
            raise
        finally:
            os.close(fd)
        return mount

    def ensure_mounted(self, tenant: str, name: str) -> Path:
        """The volume's mount point, mounting its image again if need be (after a reboot); `VolumeError` if the
        volume has no image."""
        mount = self.path(tenant, name)
        _need_root()
        if not os.path.ismount(mount):
            if not _image(mount).is_file():
                raise VolumeError(f"volume {name} of tenant {tenant} does not exist")
            _until_free(_image(mount), f"volume {name} of tenant {tenant} is still held on the host (a container's "
                        "mounts keep its loop device): it is not mounted a second time")  # fmt: skip
            mount.mkdir(exist_ok=True)
            _mount(mount)
        return mount

    def image(self, tenant: str, name: str) -> Path:
        """The volume's image file: what a VM node gets attached as a disk."""
        return _image(self.path(tenant, name))

    def held(self, tenant: str, name: str) -> bool:
        """Whether the host holds the volume's filesystem: mounted, or its loop device kept by a mount elsewhere
        (a container's mount namespace)."""
        mount = self.path(tenant, name)
        return os.path.ismount(mount) or bool(_loops(_image(mount)))

    def unmount(self, tenant: str, name: str) -> None:
        """Unmount the volume from the host, its image kept, so that another kernel may mount it (a VM node's, the
        image attached to the VM); nothing if it is not mounted. `VolumeError` while anything of the host still
        holds the filesystem (a process in it, or a container's bind mount keeping its loop device): one
        filesystem is never mounted by two kernels at once."""
        mount = self.path(tenant, name)
        _need_root()
        if os.path.ismount(mount):
            try:
                _run("umount", str(mount))
            except VolumeError as exc:
                raise VolumeError(f"volume {name} of tenant {tenant} is in use on the host: {exc}") from None
        _until_free(_image(mount), f"volume {name} of tenant {tenant} is still held on the host (a container's "
                    "mounts keep its loop device): it is not released")  # fmt: skip

    def usage(self, tenant: str, name: str) -> VolumeUsage:
        """What the mounted volume holds; `VolumeError` if it is not mounted (the numbers would be the host's)."""
        mount = self.path(tenant, name)
        if not os.path.ismount(mount):
            raise VolumeError(f"volume {name} of tenant {tenant} is not mounted")
        return _usage(mount)

    def remove(self, tenant: str, name: str) -> None:
        """Unmount the volume and delete its image: its data is gone. A volume gone already is fine.

        A process holding a file in it makes the unmount busy: it is then lazy. A container's bind mount (in its
        own mount namespace) keeps the filesystem, loop device and deleted image alive until the container ends."""
        mount = self.path(tenant, name)
        _need_root()
        if os.path.ismount(mount):
            try:
                _run("umount", str(mount))
            except VolumeError:
                _run("umount", "--lazy", str(mount))
        _image(mount).unlink(missing_ok=True)
        if mount.is_dir():
            mount.rmdir()


def _make(fd: int, mount: Path, size: int) -> None:
    """Size the image so that its filesystem lets files use `size` bytes up to `TOLERANCE` more, and leave it
    mounted at `mount`.

    ext4's overhead (journal, inode tables, bitmaps, the clusters it holds back: 6% of 1 GiB, 30% of 16 MiB)
    changes in steps with the size (the journal's size, a last block group too small to keep), so it is measured,
    not predicted: make the filesystem, mount it, and make it again bigger (or smaller) by what it missed. Two to
    four rounds, some 50 ms in all."""
    image = _image(mount)
    image_bytes = size
    for _ in range(ROUNDS):
        _allocate(fd, image_bytes)
        _run(*MKFS, str(image))
        _mount(mount)
        capacity = _usage(mount).size_bytes
        if size <= capacity <= size * (1 + TOLERANCE):
            return
        _run("umount", str(mount))
        image_bytes += math.ceil((size - capacity) * GROW / BLOCK) * BLOCK
    raise VolumeError(f"no filesystem of {size // MiB} MiB came out within {TOLERANCE:.1%} in {ROUNDS} tries")


def _allocate(fd: int, size: int) -> None:
    """Make the image `size` bytes, all allocated on the host; `VolumeError` if the host lacks the space (its
    root reserve not counted: the host keeps it)."""
    host = os.fstatvfs(fd)
    free = host.f_bavail * host.f_frsize
    have = os.fstat(fd).st_blocks * 512
    if size - have > free:
        raise VolumeError(f"the host has {(free + have) // MiB} MiB free, the volume needs {math.ceil(size / MiB)} MiB")
    os.ftruncate(fd, size)  # smaller, when the last round came out too big
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        raise VolumeError(f"could not allocate the volume's {math.ceil(size / MiB)} MiB: {exc.strerror}") from exc


def _mount(mount: Path) -> None:
    """Mount the image on a loop device of its own, with direct I/O. Not `mount -o loop`: it reuses a device
    still attached to the same image (one just unmounted, not yet cleared) with the size the image had then."""
    # Direct I/O: the image's pages are not cached a second time under the volume's own, and a flush is
    # the image's own writes, not a writeback of both (bench/volumes.py: 0.73-0.85x of a Docker volume's write
    # throughput without it, 0.90-1.30x with it). The kernel leaves it off where the host's block size forbids.
    loop = _run("losetup", "--find", "--show", "--direct-io=on", str(_image(mount))).strip()
    try:
        _run("mount", "-o", MOUNT_OPTIONS, loop, str(mount))
    finally:
        _run("losetup", "--detach", loop)  # while mounted: autoclear, freed by the unmount
    device = os.stat(mount).st_dev  # the loop device: fstrim through it would punch holes in the image
    try:
        Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}/queue/discard_max_bytes").write_text("0")
    except OSError as exc:
        _run("umount", str(mount))
        raise VolumeError(f"could not switch discard off on the volume's loop device: {exc.strerror}") from exc


def _usage(mount: Path) -> VolumeUsage:
    fs = os.statvfs(mount)
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    return VolumeUsage(size_bytes=used + fs.f_bavail * fs.f_frsize, used_bytes=used)


def _image(mount: Path) -> Path:
    return mount.with_name(f"{mount.name}.ext4")


def _until_free(image: Path, held: str) -> None:
    """Wait until no loop device is backed by `image` (one just unmounted is cleared a moment later); `VolumeError`
    saying `held` if one still is after `RELEASE_SECONDS`: a filesystem is never mounted twice at once, on one
    kernel or two."""
    deadline = time.monotonic() + RELEASE_SECONDS
    while _loops(image):
        if time.monotonic() > deadline:
            raise VolumeError(held)
        time.sleep(0.05)


def _loops(image: Path) -> list[str]:
    """The loop devices backed by `image` (one per mount of it, freed once nothing holds that mount)."""
    if not image.exists():
        return []
    return [line.split(":", 1)[0] for line in _run("losetup", "--associated", str(image)).splitlines() if line]


def _need_root() -> None:
    if os.geteuid() != 0:
        raise VolumeError("volumes need the daemon to run as root: they are loop-mounted filesystems")


def _run(*command: str) -> str:
    """The command's output; `VolumeError` with its message if it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise VolumeError(f"{command[0]} is not installed (util-linux, e2fsprogs)") from None
    if done.returncode != 0:
        raise VolumeError(f"{command[0]} failed: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout
