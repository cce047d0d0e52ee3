"""The node VM guest image: a kernel, an initramfs and an ext4 root disk running sshd and dockerd, built here.

`guest/build.sh` builds it (debootstrap, as root) into `<images_dir>/node-<digest12>/`; the digest covers all that
the image is made from, so it is rebuilt only when its recipe changes. The image holds no key. The contract a
hypervisor driver keeps with it:
- boot `kernel` + `initrd` with `KERNEL_ARGS`; the root disk (`disk`, raw ext4, best as the backing file of a
  qcow2 overlay per VM) is the first virtio-blk disk, /dev/vda; one virtio-net NIC on QEMU's user network
  (the guest takes 10.0.2.15/24, gateway 10.0.2.2); a virtio-rng device;
- the VM's identity as fw_cfg files (`fw_cfg_args`): root's authorized_keys, sshd's ed25519 host key, hostname;
- attached disks as SCSI disks on a virtio-scsi controller, hot-plugged or not: the guest names each `sdX`
  (no udev: no /dev/disk/by-id) and knows it by its serial, in `/sys/block/sdX/device/vpd_pg80` after 4 bytes;
- sshd on port 22 (root, keys only), pid in `SSHD_PID_FILE`: write a new host key over `SSHD_HOST_KEY` and
  `kill -HUP $(cat /run/sshd.pid)` to rotate it; Docker on /run/docker.sock;
- console lines `strata-guest: sshd up <uptime>` and `strata-guest: docker ready <uptime>`.
"""

import hashlib
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hosting.iaas.build_script import build_lock, run_script
from hosting.iaas.driver import GuestImage

GUEST_DIR = Path(__file__).parent / "guest"
KERNEL_FLAVOUR = "cloud-amd64"
DEBIAN_SUITE = "bookworm"
PACKAGES = ("docker.io", "openssh-server", "iproute2", "kmod", "procps", "netbase", "busybox-static")

KERNEL_ARGS = "console=ttyS0 quiet panic=-1"
FW_CFG_AUTHORIZED_KEYS = "opt/strata/authorized_keys"
FW_CFG_HOST_KEY = "opt/strata/ssh_host_ed25519_key"
FW_CFG_HOSTNAME = "opt/strata/hostname"
SSHD_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSHD_PID_FILE = "/run/sshd.pid"

KERNEL, INITRD, DISK = "vmlinuz", "initrd.img", "base.ext4"
RECIPE_FILE = "recipe.sha256"  # written last: an image directory without it is not complete
BUILD_ID_FILE = "build-id"  # new on every build, even of the same recipe (`--force`)
WORK_DIR = ".work"  # in images_dir, the build's cache (debs, the debootstrapped rootfs)


class ImageBuildError(Exception):
    """The guest image could not be built; the message ends with the tail of the build log."""


@dataclass(frozen=True)
class NodeImage:
    directory: Path
    digest: str

    @property
    def kernel(self) -> Path:
        return self.directory / KERNEL

    @property
    def initrd(self) -> Path:
        return self.directory / INITRD

    @property
    def disk(self) -> Path:
        return self.directory / DISK

    def is_complete(self) -> bool:
        stamp = self.directory / RECIPE_FILE
        parts = (self.kernel, self.initrd, self.disk)
        return stamp.is_file() and stamp.read_text().strip() == self.digest and all(p.is_file() for p in parts)

    @property
    def guest(self) -> GuestImage:
        """The image as a hypervisor driver boots it, named by its build: snapshots of VMs booted from one build
        never serve another (a forced rebuild of the same recipe replaces the disk under the same path)."""
        build = self.directory / BUILD_ID_FILE
        build_id = build.read_text().strip() if build.exists() else self.digest[:8]
        return GuestImage(f"{self.directory.name}-{build_id}", self.kernel, self.initrd, self.disk)

    def allocated_bytes(self) -> int:
        """What the image takes on disk (`disk` is sparse: far less than its apparent size)."""
        return sum(path.stat().st_blocks * 512 for path in self.directory.iterdir())


def recipe_digest(
    guest_dir: Path = GUEST_DIR,
    *,
    kernel_flavour: str = KERNEL_FLAVOUR,
    suite: str = DEBIAN_SUITE,
    packages: tuple[str, ...] = PACKAGES,
) -> str:
    """sha256 of everything an image is made from: the files of `guest_dir`, the kernel, the suite, the packages."""
    digest = hashlib.sha256()
    for path in sorted(p for p in guest_dir.iterdir() if p.is_file()):
        digest.update(f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    digest.update(f"{kernel_flavour}\n{suite}\n{','.join(sorted(packages))}\n".encode())
    return digest.hexdigest()


def find_node_image(images_dir: Path) -> NodeImage | None:
    """The complete image of the current recipe in `images_dir`, if it is built."""
    digest = recipe_digest()
    image = NodeImage(images_dir / f"node-{digest[:12]}", digest)
    return image if image.is_complete() else None


def build_node_image(
    images_dir: Path, *, force: bool = False, log: Callable[[str], None] = lambda step: None
) -> NodeImage:
    """The image of the current recipe, built unless it is (or `force`). Needs root, apt and debootstrap.

    The build goes to a temporary directory renamed when complete, so a failure leaves no half image; its log
    stays in `images_dir`, and downloads and the debootstrapped rootfs are cached in `images_dir/.work`. A lock
    makes a concurrent build wait and then reuse this one's image. `force` replaces the disk that existing qcow2
    overlays are based on: VMs made from it must be recreated. `log` gets one line per step.
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(images_dir, log):
        image = find_node_image(images_dir)
        if image and not force:
            return image
        digest = recipe_digest()
        final = images_dir / f"node-{digest[:12]}"
        partial, stale = images_dir / f".{final.name}.partial", images_dir / f".{final.name}.stale"
        for leftover in (partial, stale):
            shutil.rmtree(leftover, ignore_errors=True)
        partial.mkdir()
        try:
            _run_build(partial, images_dir / WORK_DIR, images_dir / f"{final.name}.log", log)
            (partial / BUILD_ID_FILE).write_text(secrets.token_hex(4) + "\n")
            (partial / RECIPE_FILE).write_text(digest + "\n")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if final.exists():
            final.rename(stale)
        partial.rename(final)
        shutil.rmtree(stale, ignore_errors=True)
        return NodeImage(final, digest)


def fw_cfg_entries(*, authorized_keys: Path, host_key: Path, hostname: Path) -> dict[str, Path]:
    """The fw_cfg entries that give a VM its identity, each read from a file (kept until QEMU has started)."""
    return {FW_CFG_AUTHORIZED_KEYS: authorized_keys, FW_CFG_HOST_KEY: host_key, FW_CFG_HOSTNAME: hostname}


def fw_cfg_args(*, authorized_keys: Path, host_key: Path, hostname: Path) -> list[str]:
    """The QEMU arguments for `fw_cfg_entries`."""
    entries = fw_cfg_entries(authorized_keys=authorized_keys, host_key=host_key, hostname=hostname)
    return [arg for name, path in entries.items() for arg in ("-fw_cfg", f"name={name},file={path}")]


def _run_build(out: Path, work: Path, log_path: Path, log: Callable[[str], None]) -> None:
    """Run build.sh into `out`, its whole output into `log_path`, its steps to `log`."""
    env = {"OUT": str(out), "WORK": str(work), "KFLAVOUR": KERNEL_FLAVOUR, "SUITE": DEBIAN_SUITE,
           "PACKAGES": ",".join(PACKAGES)}  # fmt: skip
    status, tail = run_script(GUEST_DIR / "build.sh", env, log_path, log)
    missing = [name for name in (KERNEL, INITRD, DISK) if not (out / name).is_file()]
    if status != 0 or missing:
        failure = f"exit status {status}" if status else f"no {', '.join(missing)}"
        raise ImageBuildError(f"node image build failed ({failure}); log {log_path}, ending:\n{tail}")
