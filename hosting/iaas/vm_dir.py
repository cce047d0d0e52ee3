"""What a VM of this host keeps in its directory, whichever driver runs it, and its forwards.

Each VM lives in `VMS_DIR/NAME/`: `spec.json`, a qcow2 disk (a copy-on-write overlay of the guest image, or
of a template's disk for a restored clone), its identity files (passed to the guest by fw_cfg), the serial
console log, and `disks.json`, the disks attached to it (raw images of the host, each with the serial the
guest knows it by; a VM defined before VMs could take disks has no such file, and no bus for them).
Networking is QEMU's user mode (`restrict=on`: the guest reaches nothing outside) with every forward on
127.0.0.1, added and listed through QEMU's human monitor, however a driver reaches it.
"""

import asyncio
import json
import os
import re
import shutil
from abc import abstractmethod
from dataclasses import asdict
from pathlib import Path

from hosting.iaas.driver import SERIAL_PATTERN, Disk, GuestImage, HypervisorDriver, HypervisorError, Identity, VmSpec
from hosting.iaas.flavors import Flavor
from hosting.iaas.guest_image import fw_cfg_entries
from hosting.iaas.net import LOOPBACK, free_port

NETDEV = "n0"
DISKS_FILE = "disks.json"


class VmDirectoryDriver(HypervisorDriver):
    """A driver whose VMs run on this host from files under `vms_dir`."""

    vms_dir: Path

    async def create(self, spec: VmSpec, identity: Identity) -> None:
        directory = self.vms_dir / spec.name
        if directory.exists():
            raise HypervisorError(f"VM {spec.name} exists already")
        directory.mkdir(parents=True, mode=0o700)
        try:
            for name, content in (
                ("hostname", identity.hostname + "\n"),
                ("host_key", identity.host_key),
                ("authorized_keys", identity.authorized_key + "\n"),
            ):
                _write_private(directory / name, content)
            _write_private(directory / "spec.json", json.dumps(_spec_to_json(spec), indent=2))
            _write_private(directory / DISKS_FILE, "[]\n")
            await new_disk(spec, directory / "disk.qcow2")
            await self._define(spec, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    async def _define(self, spec: VmSpec, directory: Path) -> None:
        """Make the VM known to the hypervisor, once its files are there (nothing to do by default)."""

    @abstractmethod
    async def _monitor(self, name: str, command: str) -> str:
        """Run a command of QEMU's human monitor in the VM's QEMU; returns its output."""

    def names(self) -> list[str]:
        return sorted(path.parent.name for path in self.vms_dir.glob("*/spec.json"))

    def spec(self, name: str) -> VmSpec:
        return _spec_from_json(json.loads((self._directory(name) / "spec.json").read_text()))

    def identity(self, name: str) -> Identity:
        directory = self._directory(name)
        return Identity(
            hostname=(directory / "hostname").read_text().strip(),
            host_key=(directory / "host_key").read_text(),
            authorized_key=(directory / "authorized_keys").read_text().strip(),
        )

    def disk(self, name: str) -> Path:
        return self._directory(name) / "disk.qcow2"

    def disks(self, name: str) -> list[Disk]:
        try:
            recorded = json.loads((self._directory(name) / DISKS_FILE).read_text())
        except FileNotFoundError:
            return []
        return [Disk(entry["serial"], Path(entry["path"])) for entry in recorded]

    def _attaching(self, name: str, disk: Disk) -> bool:
        """Whether `disk` may be attached to VM `name`: False if it is already; `HypervisorError` if it may not
        be (a bad serial, no image, a VM without a bus for disks, the serial or image taken on this host)."""
        if not re.fullmatch(SERIAL_PATTERN, disk.serial):
            raise HypervisorError(f"VM {name}: a disk's serial is 1 to 20 of A-Z a-z 0-9 -, not {disk.serial!r}")
        if not disk.path.is_absolute() or not disk.path.is_file():
            raise HypervisorError(f"VM {name}: no disk image at {disk.path}")
        if not (self._directory(name) / DISKS_FILE).exists():
            raise HypervisorError(
                f"VM {name} was defined before VMs could take disks (it has no bus for them): remove the node "
                "and add it again"
            )
        for other in self.names():
            for attached in self.disks(other):
                if attached == disk and other == name:
                    return False
                if attached.path == disk.path or (other == name and attached.serial == disk.serial):
                    raise HypervisorError(
                        f"VM {name}: disk {attached.serial} ({attached.path}) is attached to VM {other} already"
                    )
        return True

    def _record_disks(self, name: str, disks: list[Disk]) -> None:
        """Write the VM's record of its disks (replaced whole: a crash leaves the old record or the new)."""
        path = self._directory(name) / DISKS_FILE
        partial = path.with_suffix(".partial")
        _write_private(partial, json.dumps([{"serial": d.serial, "path": str(d.path)} for d in disks], indent=2))
        partial.replace(path)

    def disk_bytes(self, name: str) -> int:
        """The space the VM's own disk layer takes."""
        return self.disk(name).stat().st_blocks * 512

    def console_log(self, name: str, lines: int = 50) -> str:
        try:
            text = (self._directory(name) / "console.log").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def forward(self, name: str, guest_port: int) -> int:
        for _ in range(3):  # a free port may be taken between finding and binding it
            host_port = free_port()
            answer = await self._monitor(name, f"hostfwd_add {NETDEV} tcp:{LOOPBACK}:{host_port}-:{guest_port}")
            if not answer.strip():
                return host_port
        raise HypervisorError(f"VM {name}: cannot forward a port to guest port {guest_port}: {answer.strip()}")

    async def forwards(self, name: str) -> dict[int, int]:
        return parse_usernet(await self._monitor(name, "info usernet"))

    async def unforward(self, name: str, host_port: int) -> None:
        await self._monitor(name, f"hostfwd_remove {NETDEV} tcp:{LOOPBACK}:{host_port}")

    def _directory(self, name: str) -> Path:
        directory = self.vms_dir / name
        if not (directory / "spec.json").exists():
            raise HypervisorError(f"no VM {name}")
        return directory


def identity_entries(directory: Path) -> dict[str, Path]:
    """The fw_cfg entries of the VM in `directory`: its identity files."""
    return fw_cfg_entries(
        authorized_keys=directory / "authorized_keys", host_key=directory / "host_key", hostname=directory / "hostname"
    )


def netdev(ssh_port: int) -> str:
    """QEMU's user network of a VM: restricted, SSH forwarded from 127.0.0.1."""
    return f"user,id={NETDEV},restrict=on,hostfwd=tcp:{LOOPBACK}:{ssh_port}-:22"


def parse_usernet(text: str) -> dict[int, int]:
    """Guest port → host port of the TCP host forwards in `info usernet`'s table."""
    forwards = {}
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "TCP[HOST_FORWARD]" and len(fields) >= 6:
            forwards[int(fields[5])] = int(fields[3])
    return forwards


async def new_disk(spec: VmSpec, path: Path) -> None:
    """An empty copy-on-write overlay of the spec's image (a template's disk, for a clone)."""
    path.unlink(missing_ok=True)
    backing = spec.image.disk
    await run(
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2" if backing.suffix == ".qcow2" else "raw",
        "-b", str(backing), str(path), f"{spec.flavor.disk_gib}G",
    )  # fmt: skip


async def run(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise HypervisorError(f"{args[0]} failed: {stderr.decode(errors='replace').strip()}")


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(content)


def _spec_to_json(spec: VmSpec) -> dict:
    return {
        "name": spec.name,
        "flavor": asdict(spec.flavor),
        "image": {key: str(value) for key, value in asdict(spec.image).items()},
        "ssh_port": spec.ssh_port,
        "template": spec.template,
    }


def _spec_from_json(data: dict) -> VmSpec:
    return VmSpec(
        name=data["name"],
        flavor=Flavor(**data["flavor"]),
        image=GuestImage(
            name=data["image"]["name"],
            kernel=Path(data["image"]["kernel"]),
            initrd=Path(data["image"]["initrd"]),
            disk=Path(data["image"]["disk"]),
        ),
        ssh_port=data["ssh_port"],
        template=data.get("template"),
    )
