"""The filesystems of a VM node's attached disks, as its guest mounts them: each disk found by its serial (the
guest has no udev, so no /dev/disk/by-id: the serial is read where the kernel shows it), mounted at a path of the
guest that the node's containers bind-mount.

`GuestDisks` is the contract; `SshGuestDisks` keeps it over the node's SSH connection, with the guest's own
mount, umount, stat, tar, find and sha256sum; `hosting.paas.fake_guest.FakeGuestDisks` keeps it on directories of
the host for tests. A backup's archive streams between the host's file and the guest's tar over the connection:
neither side holds it in memory.
"""

import asyncio
import shlex
from abc import ABC, abstractmethod
from typing import IO

import asyncssh
from asyncssh import DEVNULL, PIPE, SSHClientConnection

from hosting.paas.volumes import VolumeError, VolumeUsage

MOUNT_OPTIONS = "nodev,nosuid,noatime"  # as on the host; never `discard`: the image stays allocated
APPEAR_TENTHS = 300  # a disk just hot-plugged shows in the guest within ~1 s here (TCG); 30 s at most
COMMAND_SECONDS = 60.0
COPY_SECONDS = 3600.0  # a volume's archive streamed out or in (a dead connection ends it sooner: keepalives)

# Print the device of the disk of serial $1 (/sys/block/sdX/device/vpd_pg80: 4 bytes of header, then it).
_FIND = r"""
find_disk() {
  for d in /sys/block/sd*; do
    [ -r "$d/device/vpd_pg80" ] || continue
    if [ "$(tail -c +5 "$d/device/vpd_pg80" | tr -d '\000')" = "$1" ]; then echo "/dev/${d##*/}"; return 0; fi
  done
  return 1
}
mounted_at() { awk -v t="$1" '$2 == t { d = $1 } END { print d }' /proc/mounts; }
"""

MOUNT = (
    _FIND
    + r"""
serial=$1 target=$2 tenths=$3
i=0
until dev=$(find_disk "$serial"); do
  if [ "$i" -ge "$tenths" ]; then echo "the guest has no disk of serial $serial" >&2; exit 3; fi
  sleep 0.1; i=$((i + 1))
done
now=$(mounted_at "$target")
[ "$now" = "$dev" ] && exit 0
[ -z "$now" ] || umount -l "$target"  # what a disk taken away left behind
mkdir -p "$target"
mount -t ext4 -o "$4" "$dev" "$target"
"""
)

UNMOUNT = (
    _FIND
    + r"""
target=$1 force=$2
dev=$(mounted_at "$target")
[ -n "$dev" ] || exit 0
if [ "$force" = 1 ]; then umount -l "$target"; exit 0; fi
device=$(cat "/sys/class/block/${dev#/dev/}/dev")
# one process of each other mount namespace (a container's): does it mount the device? (few processes: TCG
# makes each one cost some 20 ms)
others=$(ls -l /proc/[0-9]*/ns/mnt 2>/dev/null | awk -v ours="$(readlink /proc/self/ns/mnt)" \
  '$NF != ours && !seen[$NF]++ { split($(NF - 2), p, "/"); print "/proc/" p[3] "/mountinfo" }')
if [ -n "$others" ] && cat $others 2>/dev/null | awk -v d="$device" '$3 == d { f = 1 } END { exit !f }'; then
  echo "its filesystem is still mounted in a container of the guest" >&2; exit 5
fi
umount "$target"
"""
)

MOUNTED = r"""mountpoint -q "$1" || { echo "$1 is not mounted" >&2; exit 3; }
"""
USAGE = r"""stat -f -c '%S %b %f %a' "$1"
"""
# A volume's files as a backup holds them: ext4's lost+found is the filesystem's, never archived nor replaced.
ARCHIVE = r"""exec tar --sparse -cf - -C "$1" --exclude=./lost+found .
"""
EXTRACT = r"""cd "$1" && find . -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} + &&
exec tar --numeric-owner -xpf - -C "$1"
"""
SUMS = r"""cd "$1" && find . -path ./lost+found -prune -o -type f -exec sha256sum {} +
"""


class GuestDisks(ABC):
    """Mounts of a VM node's guest. Each method raises `VolumeError` with what went wrong."""

    @abstractmethod
    async def mount(self, serial: str, path: str) -> None:
        """Mount the ext4 filesystem of the disk `serial` at `path` (nodev, nosuid, noatime), once the disk shows
        (one just attached takes a moment); nothing if it is mounted there already."""

    @abstractmethod
    async def unmount(self, path: str, *, force: bool = False) -> None:
        """Unmount `path`; nothing if nothing is mounted there. Refused while anything of the guest still holds
        the filesystem (a container's mount namespace): the disk may be detached only after. `force` unmounts
        lazily whatever holds it, for a volume being deleted."""

    @abstractmethod
    async def usage(self, path: str) -> VolumeUsage:
        """What the filesystem mounted at `path` holds, as the host's volumes count it."""

    @abstractmethod
    async def archive(self, path: str, into: IO[bytes]) -> None:
        """Write a tar archive of the files of the filesystem mounted at `path` (not its lost+found) into `into`,
        as it comes (GNU tar, `--sparse`: a file with holes as it is stored). A failure leaves `into` part-written."""

    @abstractmethod
    async def extract(self, path: str, archive: IO[bytes]) -> None:
        """Replace the files of the filesystem mounted at `path` (not its lost+found) with the members of the tar
        archive read from `archive` where it stands, with their numeric owners and modes. Nothing is removed if
        `path` is not a mount point; a failure after the removal leaves what was extracted until then."""

    @abstractmethod
    async def sums(self, path: str) -> bytes:
        """`sha256sum`'s lines (`HASH  ./NAME`) for every regular file of the filesystem mounted at `path` (not its
        lost+found; symlinks not followed), names as its bytes have them."""


class SshGuestDisks(GuestDisks):
    """The guest of VM node `node`, reached over its SSH connection (as root)."""

    def __init__(self, node: str, connection: SSHClientConnection) -> None:
        self.node = node
        self.connection = connection

    async def mount(self, serial: str, path: str) -> None:
        await self._run(MOUNT, serial, path, str(APPEAR_TENTHS), MOUNT_OPTIONS)

    async def unmount(self, path: str, *, force: bool = False) -> None:
        await self._run(UNMOUNT, path, "1" if force else "0")

    async def usage(self, path: str) -> VolumeUsage:
        fields = (await self._run(MOUNTED + USAGE, path)).split()
        block, blocks, free, available = (int(field) for field in fields)
        used = (blocks - free) * block
        return VolumeUsage(size_bytes=used + available * block, used_bytes=used)

    async def archive(self, path: str, into: IO[bytes]) -> None:
        await self._run(MOUNTED + ARCHIVE, path, stdout=into, seconds=COPY_SECONDS)

    async def extract(self, path: str, archive: IO[bytes]) -> None:
        await self._run(MOUNTED + EXTRACT, path, stdin=archive, seconds=COPY_SECONDS)

    async def sums(self, path: str) -> bytes:
        return await self._run(MOUNTED + SUMS, path, seconds=COPY_SECONDS)

    async def _run(
        self, script: str, *arguments: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
        seconds: float = COMMAND_SECONDS,
    ) -> bytes:  # fmt: skip
        """`script`'s output (none if it goes to `stdout`), its input read from `stdin` (none by default); the
        process closed whatever happens (the guest's tar does not outlive a copy given up)."""
        command = shlex.join(["sh", "-c", script, "strata", *arguments])
        try:
            async with asyncio.timeout(seconds):
                process = await self.connection.create_process(
                    command, encoding=None, stdin=DEVNULL if stdin is None else stdin,
                    stdout=PIPE if stdout is None else stdout,
                )  # fmt: skip
                async with process:
                    result = await process.wait()
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise VolumeError(f"the guest of node {self.node} does not answer: {exc or type(exc).__name__}") from None
        if result.exit_status != 0:
            message = _text(result.stderr).strip() or f"exit status {result.exit_status}"
            raise VolumeError(f"on node {self.node}: {message}")
        return result.stdout if isinstance(result.stdout, bytes) else b""


def _text(output: object) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else str(output or "")
