"""VM nodes on other hosts' hypervisors: `strata nodes add vm9 --driver libvirt --uri qemu+ssh://HOST/system`.

Each hypervisor host the registry's VM nodes name (their `docker_url`, the canonical qemu+ssh URI) is logged in to
as a remote host is (`host_login`: the platform's key for hosts, the host key recorded for it), once for all its
VMs; over that connection a `RemoteLibvirtDriver` reaches its libvirtd, and a `VmNodes` of that host brings its
VM nodes up as this host's are (defined, booted cold, their engine's socket forwarded, handed to the reconciler).

Level-triggered as the others: each pass logs in to the hosts that are not connected, and lets go of those that
have no VM node left. A host that does not answer has its VM nodes `unreachable` (tried again every pass), one that
shows another host key `failed`; a node removed while its host does not answer is forgotten, and the log says its
VM may be left there.
"""

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh
from asyncssh import SSHClientConnection, SSHKey
from sqlalchemy import Engine

from hosting.iaas.accel import Accel
from hosting.iaas.driver import HypervisorDriver, HypervisorError
from hosting.iaas.provision import Provisioner
from hosting.paas.host_login import HostKeyMismatch, HostUnreachable, login, shown_key
from hosting.paas.nodes import NodePool
from hosting.paas.pause import Passes
from hosting.paas.vm_nodes import VmNodes
from tenants import db
from tenants import nodes as registry
from tenants.enums import NodeState
from tenants.libvirt_uris import LibvirtHost, is_remote, parse_libvirt_uri
from tenants.models import Node
from tenants.schemas import NodeCreate
from tenants.ssh_targets import LIBVIRT_DRIVER

if TYPE_CHECKING:
    from hosting.iaas.libvirt_remote import RemoteLibvirtDriver

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 5  # also how often a host that does not answer is tried again


@dataclass
class _Host:
    driver: "RemoteLibvirtDriver"
    connection: SSHClientConnection
    vm_nodes: VmNodes


class LibvirtHosts(Passes):
    """`probe` checks a hypervisor host before a VM node on it is recorded; `run` keeps each host that has VM
    nodes connected, and drives them."""

    what = "hypervisor hosts pass"
    interval = PASS_INTERVAL_SECONDS

    def __init__(
        self,
        engine: Engine,
        client: SSHKey,
        accel: Accel,
        root: Path,
        sockets: Path,
        pool: NodePool,
        provisioner: Callable[[HypervisorDriver], Provisioner | None],
    ) -> None:
        """`root`: this host's directory for them (each host's VM records, the images made to ship)."""
        self.engine = engine
        self.client = client
        self.accel = accel
        self.root = root
        self.sockets = sockets
        self.pool = pool
        self.provisioner = provisioner
        self.hosts: dict[str, _Host] = {}  # by URI
        super().__init__()

    async def probe(self, spec: NodeCreate) -> str:
        """Log in to the host `spec.uri` names and see that its libvirtd answers, leaving nothing behind; the host
        key to record (`spec.host_key`, which it must show, or else the one it shows). Raises `HostUnreachable` or
        `HypervisorError` saying what to do."""
        assert spec.uri is not None
        host = parse_libvirt_uri(spec.uri)
        host_key = spec.host_key or await shown_key(host.target)
        connection = await login(host.target, self.client, host_key)
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            driver = self._driver(host, connection, f".probe-{secrets.token_hex(4)}")
            await driver.open()
            await driver.close()
        finally:
            connection.close()
        return host_key

    def driver_of(self, name: str) -> HypervisorDriver | None:
        """The driver of VM node `name`, while its host is connected."""
        return next((host.driver for host in self.hosts.values() if name in host.driver.names()), None)

    async def run(self, stopping: asyncio.Event) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await self.passes(stopping)
        finally:
            for host in self.hosts.values():
                host.vm_nodes.cancel()

    async def close(self) -> None:
        """Let the hosts go (once the reconciler has stopped using them); their VMs keep running."""
        for uri in list(self.hosts):
            await self._disconnect(uri)

    async def sync(self) -> None:
        """One pass: connect each host with VM nodes that is not, drive its VM nodes, let go of hosts without."""
        rows = await asyncio.to_thread(self._rows)
        by_host: dict[str, list[Node]] = {}
        for row in rows:
            by_host.setdefault(row.docker_url, []).append(row)
        for uri, on_host in by_host.items():
            host = self.hosts.get(uri)
            if host is None or host.connection.is_closed():
                try:
                    await self._connect(uri, on_host)
                except (HostUnreachable, HypervisorError, asyncssh.Error, OSError) as exc:
                    log.warning("hypervisor host %s: %s", uri, exc)
                    await asyncio.to_thread(self._unreachable, on_host, exc)
                    continue
            await self.hosts[uri].vm_nodes.sync()
        for uri in [uri for uri, host in self.hosts.items() if uri not in by_host and host.vm_nodes.idle]:
            await self._disconnect(uri)

    async def _connect(self, uri: str, rows: list[Node]) -> None:
        """Log in and open its libvirtd; its `VmNodes` is kept across connections (its nodes' handles with it),
        given the new driver."""
        host = parse_libvirt_uri(uri)
        host_key = next((row.host_key for row in rows if row.host_key), None)
        if host_key is None:
            raise HostUnreachable(f"{host.target}: no host key is recorded for it")
        connection = await login(host.target, self.client, host_key)
        known = self.hosts.get(uri)
        if known is not None:  # the dropped connection's driver first: its socket's path is the new one's
            await known.driver.close()
            known.connection.close()
        driver = self._driver(host, connection, f"libvirt-{_digest(uri)}")
        try:
            await driver.open()
        except BaseException:
            connection.close()
            raise
        if known is not None:
            known.driver, known.connection = driver, connection
        else:
            vm_nodes = VmNodes(
                self.engine, driver, lambda: None, self.sockets, self.pool.attach, self.pool.detach, uri=uri
            )
            known = self.hosts[uri] = _Host(driver, connection, vm_nodes)
        known.vm_nodes.use(driver, lambda: self.provisioner(driver))
        log.info("hypervisor host %s is connected", host.target)

    def _driver(self, host: LibvirtHost, connection: SSHClientConnection, socket: str) -> "RemoteLibvirtDriver":
        try:
            from hosting.iaas.libvirt_remote import RemoteLibvirtDriver  # libvirt-python only where libvirt is used
        except ImportError:
            raise HypervisorError("libvirt-python is not installed here: pip install 'strata[libvirt]'") from None
        return RemoteLibvirtDriver(
            self.root / "hosts" / str(host.target) / "vms",
            self.accel,
            connection,
            self.sockets / f"{socket}.sock",
            host.socket,
            self.root / "images",
            str(host.target),
        )

    async def _disconnect(self, uri: str) -> None:
        host = self.hosts.pop(uri, None)
        if host is None:
            return
        await host.vm_nodes.close()
        await host.driver.close()
        host.connection.close()

    def _rows(self) -> list[Node]:
        with db.session(self.engine) as session:
            return [row for row in registry.of_driver(session, LIBVIRT_DRIVER) if is_remote(row.docker_url)]

    def _unreachable(self, rows: list[Node], exc: Exception) -> None:
        """The host's VM nodes cannot be reached now, and why; those being removed are forgotten."""
        state = NodeState.FAILED if isinstance(exc, HostKeyMismatch) else NodeState.UNREACHABLE
        message = str(exc) if state == NodeState.FAILED else f"{exc}; trying again every {PASS_INTERVAL_SECONDS} s"
        with db.session(self.engine) as session:
            for row in rows:
                if row.state == NodeState.REMOVING:
                    log.warning("VM node %s is removed without its host answering: its VM may be left there", row.name)
                    registry.forget(session, row.name)
                    continue
                registry.register(
                    session,
                    "daemon",
                    Node(
                        name=row.name, driver=row.driver, docker_url=row.docker_url, state=state, message=message,
                        cpu_millicores=row.cpu_millicores, memory_mib=row.memory_mib,
                    ),
                )  # fmt: skip


def _digest(uri: str) -> str:
    """A short name for the host's forwarded socket (a socket's path is limited)."""
    return hashlib.sha256(uri.encode()).hexdigest()[:12]
