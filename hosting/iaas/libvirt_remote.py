"""The `libvirt` driver for a libvirtd on another host, reached through one SSH connection the caller logged in
(the platform's own login, with its pinned host key), not through libvirt's ssh transport.

Over that one connection: the libvirtd's unix socket is forwarded to a local one, which libvirt opens as
`qemu:///system?socket=LOCAL`; the files QEMU reads there (the node image, each VM's disk overlay and identity
files) are copied by SFTP under `~/.local/share/strata/` of the login; and each forward of a VM (its SSH, an
app's published port: QEMU's hostfwd, on the host's loopback) is reached through a local forward of the same
port number on this host's 127.0.0.1. So a VM's ports are where a local VM's are, and the provisioner, the VM
nodes and the front door need not know the VM is elsewhere; nothing of the VM listens on the host's network.

The VM's record (spec, identity, disks) stays here, under `vms_dir`, as a local VM's. Its disk overlay is made
here, pointed at the image's copy on the host, and copied there; the image (raw, mostly empty) is shipped once per
host as a qcow2 made here (only its data crosses the network), and removed with the host's last VM. No disks can
be attached (a volume is a raw image of this host), and the console log stays on the host.
"""

import asyncio
import contextlib
import posixpath
from dataclasses import replace
from pathlib import Path

import asyncssh
import libvirt
from asyncssh import SSHClientConnection, SSHListener

from hosting.iaas.accel import Accel
from hosting.iaas.driver import Capabilities, Disk, GuestImage, HypervisorError, VmInfo, VmSpec, VmState
from hosting.iaas.libvirt import LibvirtDriver
from hosting.iaas.net import LOOPBACK
from hosting.iaas.vm_dir import run

REMOTE_ROOT = ".local/share/strata"  # under the login's home directory (SFTP's starting directory)
IDENTITY_FILES = ("hostname", "host_key", "authorized_keys")


class RemoteLibvirtDriver(LibvirtDriver):
    capabilities = Capabilities(snapshots=False, disks=False)

    def __init__(
        self,
        vms_dir: Path,
        accel: Accel,
        connection: SSHClientConnection,
        socket: Path,
        remote_socket: str,
        images: Path,
        where: str,
    ) -> None:
        """`socket`: the local path the host's libvirtd socket (`remote_socket`) is forwarded to; `images`: where
        the qcow2 copies of node images are made here; `where`: the host, as messages name it."""
        super().__init__(vms_dir, accel, f"qemu:///system?socket={socket}")
        self.connection = connection
        self.socket = socket
        self.remote_socket = remote_socket
        self.images = images
        self.where = where
        self.root = ""  # the files' directory on the host, once `open`
        self._socket_listener: SSHListener | None = None
        self._listeners: dict[str, dict[int, SSHListener]] = {}  # VM -> its ports forwarded here
        self._shipping = asyncio.Lock()

    async def open(self) -> None:
        """Forward the libvirtd's socket, find the files' directory, and see that libvirtd answers; raises
        `HypervisorError` saying what does not."""
        self.socket.unlink(missing_ok=True)
        try:
            self._socket_listener = await self.connection.forward_local_path(str(self.socket), self.remote_socket)
            async with self.connection.start_sftp_client() as sftp:
                self.root = posixpath.join(await sftp.realpath("."), REMOTE_ROOT)
        except (asyncssh.Error, OSError) as exc:
            await self.close()
            raise HypervisorError(f"{self.where}: no SFTP or socket forwarding over SSH ({exc})") from None
        try:
            await asyncio.to_thread(lambda: self._connect().getLibVersion())
        except libvirt.libvirtError as exc:
            await self.close()
            raise HypervisorError(
                f"no libvirtd answers on {self.remote_socket} at {self.where} ({exc.get_error_message()}): install "
                "and start libvirt there, or give the path of its socket (?socket=PATH)"
            ) from None

    async def close(self) -> None:
        """Let the host go (its VMs keep running); the SSH connection is the caller's."""
        for listeners in self._listeners.values():
            for listener in listeners.values():
                listener.close()
        self._listeners.clear()
        if self._connection is not None:
            with contextlib.suppress(libvirt.libvirtError):
                await asyncio.to_thread(self._connection.close)
            self._connection = None
        if self._socket_listener is not None:
            self._socket_listener.close()
            self._socket_listener = None
        self.socket.unlink(missing_ok=True)

    # the files QEMU reads, on the host

    async def _define(self, spec: VmSpec, directory: Path) -> None:
        remote = self._remote_dir(spec.name)
        try:
            async with self.connection.start_sftp_client() as sftp:
                taken = await sftp.exists(remote)
        except (asyncssh.Error, OSError) as exc:
            raise HypervisorError(f"VM {spec.name}: looking at {self.where} failed: {exc}") from None
        if taken:  # another home's VM of that name (a daemon that led before): never written over, nor removed
            raise HypervisorError(
                f"VM {spec.name} has files on {self.where} ({remote}) that this daemon did not make: a VM on another "
                "host's libvirtd is driven by the home that made it; left as it is"
            )
        image = await self._ship(spec.image)
        overlay = directory / "disk.qcow2"
        await run("qemu-img", "rebase", "-u", "-F", "qcow2", "-b", str(image.disk), str(overlay))
        try:
            async with self.connection.start_sftp_client() as sftp:
                await sftp.makedirs(remote, exist_ok=True)
                await sftp.chmod(remote, 0o700)
                for name in (*IDENTITY_FILES, "disk.qcow2"):
                    await sftp.put(str(directory / name), posixpath.join(remote, name), preserve=True)
        except (asyncssh.Error, OSError) as exc:
            await self._remove_remote(spec.name)
            raise HypervisorError(f"VM {spec.name}: copying its files to {self.where} failed: {exc}") from None
        overlay.unlink()  # the host's copy is the disk
        try:
            await super()._define(replace(spec, image=image), Path(remote))  # the host's paths
        except BaseException:
            await self._remove_remote(spec.name)
            raise

    async def _ship(self, image: GuestImage) -> GuestImage:
        """The image's copy on the host, made now if it is not there: its disk as qcow2 (made here once)."""
        async with self._shipping:
            local = self.images / image.name
            disk = local / "disk.qcow2"
            if not disk.exists():
                local.mkdir(parents=True, exist_ok=True, mode=0o700)
                partial = disk.with_suffix(".partial")
                await run("qemu-img", "convert", "-O", "qcow2", str(image.disk), str(partial))
                partial.replace(disk)
            remote = posixpath.join(self.root, "images", image.name)
            files = {"kernel": image.kernel, "initrd": image.initrd, "disk.qcow2": disk}
            try:
                async with self.connection.start_sftp_client() as sftp:
                    await sftp.makedirs(remote, exist_ok=True)
                    for name, path in files.items():
                        target = posixpath.join(remote, name)
                        if await sftp.exists(target) and (await sftp.stat(target)).size == path.stat().st_size:
                            continue
                        await sftp.put(str(path), target + ".partial")
                        await sftp.posix_rename(target + ".partial", target)
            except (asyncssh.Error, OSError) as exc:
                raise HypervisorError(f"copying node image {image.name} to {self.where} failed: {exc}") from None
        return GuestImage(
            image.name,
            Path(remote, "kernel"),
            Path(remote, "initrd"),
            Path(remote, "disk.qcow2"),
        )

    async def destroy(self, name: str) -> None:
        await super().destroy(name)
        for listener in self._listeners.pop(name, {}).values():
            listener.close()
        await self._remove_remote(name)

    async def _remove_remote(self, name: str) -> None:
        """The VM's files on the host; with the host's last VM, the images shipped there too."""
        try:
            async with self.connection.start_sftp_client() as sftp:
                await sftp.rmtree(self._remote_dir(name), ignore_errors=True)
                if not self.names():
                    async with self._shipping:  # not under a create's shipping
                        await sftp.rmtree(posixpath.join(self.root, "images"), ignore_errors=True)
                    for empty in (posixpath.join(self.root, "vms"), self.root):  # kept if another's files are there
                        with contextlib.suppress(asyncssh.SFTPError):
                            await sftp.rmdir(empty)
        except (asyncssh.Error, OSError) as exc:
            raise HypervisorError(f"VM {name}: removing its files from {self.where} failed: {exc}") from None

    def _remote_dir(self, name: str) -> str:
        assert self.root, "open() first"
        return posixpath.join(self.root, "vms", name)

    async def _disk_bytes(self, name: str) -> int:
        try:
            async with self.connection.start_sftp_client() as sftp:
                return (await sftp.stat(posixpath.join(self._remote_dir(name), "disk.qcow2"))).size or 0
        except (asyncssh.Error, OSError) as exc:
            raise HypervisorError(f"VM {name}: its disk on {self.where}: {exc}") from None

    def console_log(self, name: str, lines: int = 50) -> str:
        return f"(VM {name}'s console is {posixpath.join(self._remote_dir(name), 'console.log')} on {self.where})"

    # its ports, forwarded here

    async def start(self, name: str, *, restore: Path | None = None) -> None:
        await super().start(name, restore=restore)
        await self._listen(name, self.spec(name).ssh_port)

    async def info(self, name: str) -> VmInfo:
        """As the base's; a running VM's forwards are made here again (a daemon started again adopts it)."""
        info = await super().info(name)
        if info.state == VmState.RUNNING:
            await self.forwards(name)
        return info

    async def forward(self, name: str, guest_port: int) -> int:
        host_port = await super().forward(name, guest_port)
        try:
            await self._listen(name, host_port)
        except HypervisorError:
            await super().unforward(name, host_port)
            raise
        return host_port

    async def forwards(self, name: str) -> dict[int, int]:
        found = await super().forwards(name)
        for host_port in found.values():
            await self._listen(name, host_port)
        return found

    async def unforward(self, name: str, host_port: int) -> None:
        await super().unforward(name, host_port)
        listener = self._listeners.get(name, {}).pop(host_port, None)
        if listener is not None:
            listener.close()

    async def _listen(self, name: str, port: int) -> None:
        """127.0.0.1:`port` here forwarded to the same port of the host's loopback (once)."""
        listeners = self._listeners.setdefault(name, {})
        if port in listeners:
            return
        try:
            listeners[port] = await self.connection.forward_local_port(LOOPBACK, port, LOOPBACK, port)
        except (asyncssh.Error, OSError) as exc:
            raise HypervisorError(f"VM {name}: cannot forward port {port} from {self.where}: {exc}") from None

    async def attach_disk(self, name: str, disk: Disk) -> None:
        raise HypervisorError(f"VM {name} runs on {self.where}: it cannot take a disk of this host")

    async def detach_disk(self, name: str, serial: str) -> None:
        """Nothing is ever attached."""
