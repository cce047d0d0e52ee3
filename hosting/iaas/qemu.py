"""The `qemu` hypervisor driver: QEMU processes the platform starts itself, controlled over QMP.

Each VM lives in `VMS_DIR/NAME/`: `spec.json`, a qcow2 disk (a copy-on-write overlay of the guest image, or
of a template's disk for a restored clone), its identity files (passed to the guest by fw_cfg), the QMP
socket, the pid file and the serial console log. QEMU runs daemonized, so VMs outlive a restart of the
platform. Networking is user-mode only (`restrict=on`: the guest reaches nothing outside), and every forward
listens on 127.0.0.1.
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
from dataclasses import asdict
from pathlib import Path

from hosting.iaas.accel import Accel
from hosting.iaas.driver import (
    Capabilities,
    GuestImage,
    HypervisorDriver,
    HypervisorError,
    Identity,
    VmInfo,
    VmSpec,
    VmState,
    VmStats,
)
from hosting.iaas.flavors import Flavor
from hosting.iaas.guest_image import KERNEL_ARGS, fw_cfg_args
from hosting.iaas.net import LOOPBACK, free_port
from hosting.iaas.qmp import Qmp, qmp_session

QEMU = "qemu-system-x86_64"
NETDEV = "n0"
RUNNING_TIMEOUT_SECONDS = 60
MIGRATION_BANDWIDTH = 8 * 1024**3  # bytes/s: QEMU's default (32 MiB/s) would make a snapshot take ~10 s


class QemuDriver(HypervisorDriver):
    name = "qemu"
    capabilities = Capabilities(snapshots=True)

    def __init__(self, vms_dir: Path, accel: Accel, binary: str = QEMU) -> None:
        self.vms_dir = vms_dir
        self.accel = accel
        self.binary = binary
        self._locks: dict[str, asyncio.Lock] = {}  # one QMP client at a time per VM

    # lifecycle

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
            await _new_disk(spec, directory / "disk.qcow2")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    async def start(self, name: str, *, restore: Path | None = None) -> None:
        directory = self._directory(name)
        if self._pid(name) is not None:
            raise HypervisorError(f"VM {name} is running already")
        for stale in ("qmp.sock", "qemu.pid", "console.log"):
            (directory / stale).unlink(missing_ok=True)
        spec = self.spec(name)
        if restore is not None:
            await _new_disk(spec, directory / "disk.qcow2")
        await _daemonize(
            command_line(self.binary, spec, directory, self.accel, restore=restore), directory / "qemu.log"
        )
        await self._until_running(name, RUNNING_TIMEOUT_SECONDS)

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
        disk = (self._directory(name) / "disk.qcow2").stat().st_blocks * 512
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

    def console_log(self, name: str, lines: int = 50) -> str:
        try:
            text = (self._directory(name) / "console.log").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # forwards

    async def forward(self, name: str, guest_port: int) -> int:
        for _ in range(3):  # a free port may be taken between finding and binding it
            host_port = free_port()
            async with self._qmp(name) as qmp:
                answer = await qmp.hmp(f"hostfwd_add {NETDEV} tcp:{LOOPBACK}:{host_port}-:{guest_port}")
            if not answer.strip():
                return host_port
        raise HypervisorError(f"VM {name}: cannot forward a port to guest port {guest_port}: {answer.strip()}")

    async def forwards(self, name: str) -> dict[int, int]:
        async with self._qmp(name) as qmp:
            return parse_usernet(await qmp.hmp("info usernet"))

    async def unforward(self, name: str, host_port: int) -> None:
        async with self._qmp(name) as qmp:
            await qmp.hmp(f"hostfwd_remove {NETDEV} tcp:{LOOPBACK}:{host_port}")

    # snapshots

    async def snapshot(self, name: str, path: Path) -> None:
        """Pause, stream the VM's state to `path` through QEMU's migration, and quit the VM."""
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

    # helpers

    def _directory(self, name: str) -> Path:
        directory = self.vms_dir / name
        if not (directory / "spec.json").exists():
            raise HypervisorError(f"no VM {name}")
        return directory

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


def command_line(binary: str, spec: VmSpec, directory: Path, accel: Accel, *, restore: Path | None) -> list[str]:
    """QEMU's arguments for `spec`: q35, virtio disk/net/rng, vmgenid (a restored clone reseeds its random
    generator), identity by fw_cfg, the serial console to a file, QMP on a unix socket, SSH on 127.0.0.1."""
    flavor = spec.flavor
    identity = fw_cfg_args(
        authorized_keys=directory / "authorized_keys", host_key=directory / "host_key", hostname=directory / "hostname"
    )
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
        "-netdev", f"user,id={NETDEV},restrict=on,hostfwd=tcp:{LOOPBACK}:{spec.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev={NETDEV}",
        "-device", "virtio-rng-pci",
        "-device", "vmgenid,guid=auto",
        *identity,
        "-qmp", f"unix:{directory / 'qmp.sock'},server=on,wait=off",
        "-pidfile", str(directory / "qemu.pid"),
        "-daemonize",
        *(["-incoming", f"exec:cat {shlex.quote(str(restore))}"] if restore else []),
    ]  # fmt: skip


def parse_usernet(text: str) -> dict[int, int]:
    """Guest port → host port of the TCP host forwards in `info usernet`'s table."""
    forwards = {}
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "TCP[HOST_FORWARD]" and len(fields) >= 6:
            forwards[int(fields[5])] = int(fields[3])
    return forwards


@asynccontextmanager
async def _locked(lock: asyncio.Lock, socket_path: Path, name: str) -> AsyncIterator[Qmp]:
    async with lock, qmp_session(socket_path, name) as qmp:
        yield qmp


async def _new_disk(spec: VmSpec, path: Path) -> None:
    """An empty copy-on-write overlay of the spec's image (a template's disk, for a clone)."""
    path.unlink(missing_ok=True)
    backing = spec.image.disk
    await _run(
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2" if backing.suffix == ".qcow2" else "raw",
        "-b", str(backing), str(path), f"{spec.flavor.disk_gib}G",
    )  # fmt: skip


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


async def _run(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise HypervisorError(f"{args[0]} failed: {stderr.decode(errors='replace').strip()}")


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
        image=GuestImage(**{key: Path(value) for key, value in data["image"].items()}),
        ssh_port=data["ssh_port"],
        template=data.get("template"),
    )
