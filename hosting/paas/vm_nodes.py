"""VM nodes: the daemon's side of them. Brings each VM node the registry lists to life (defined, booted or
restored, connected), reaches its Docker engine over SSH, and hands it to the reconciler as a node.

Level-triggered like the reconciler: every pass compares the registry's VM nodes with what runs and acts on
the difference, so a daemon restart adopts the VMs still running, and a VM that died is booted again once
the reconciler has given its instances up (`NodeHandle.lost`).
"""

import asyncio
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh
from asyncssh import SSHClientConnection, SSHListener
from sqlalchemy import Engine

from hosting.iaas.driver import HypervisorDriver, HypervisorError, VmState
from hosting.iaas.flavors import flavor
from hosting.iaas.guest_ssh import connect
from hosting.iaas.net import GUEST_ADDRESS, LOOPBACK
from hosting.iaas.provision import Booted, Provisioner
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.nodes import NodeHandle
from hosting.paas.pause import Passes
from hosting.paas.runtime import EngineError, EngineUnavailable
from hosting.paas.ssh_machine import SshMachine
from tenants import audit, db
from tenants import nodes as registry
from tenants.enums import NodeState
from tenants.libvirt_uris import is_remote
from tenants.models import Node

log = logging.getLogger(__name__)
T = TypeVar("T")

GUEST_DOCKER_SOCKET = "/var/run/docker.sock"
PASS_INTERVAL_SECONDS = 5
RECONNECT_TIMEOUT_SECONDS = 20
ENGINE_READY_TIMEOUT_SECONDS = 120


class GuestHost(SshMachine):
    """A VM node's machine: containers publish on the guest's user-network address, each published port is
    reached through a QEMU forward on 127.0.0.1 (added on first use, removed when no container uses it),
    and an exec's process is killed inside the guest."""

    publish_ip = GUEST_ADDRESS

    def __init__(self, driver: HypervisorDriver, vm: str, connection: SSHClientConnection, ssh_port: int) -> None:
        super().__init__(f"the guest of node {vm}", connection)
        self.driver = driver
        self.vm = vm
        self.ssh_port = ssh_port
        self._forwards: dict[int, int] | None = None  # guest port -> host port
        self._lock = asyncio.Lock()

    async def endpoint(self, port: int) -> str:
        async with self._lock:
            forwards = await self._known()
            if port not in forwards:
                forwards[port] = await _engine_call(self.driver.forward(self.vm, port))
            return f"{LOOPBACK}:{forwards[port]}"

    async def retain(self, ports: set[int]) -> None:
        async with self._lock:
            forwards = await self._known()
            for guest_port in [p for p in forwards if p not in ports and forwards[p] != self.ssh_port]:
                await _engine_call(self.driver.unforward(self.vm, forwards.pop(guest_port)))

    async def _known(self) -> dict[int, int]:
        if self._forwards is None:  # what QEMU has: forwards outlive a restart of the platform
            self._forwards = await _engine_call(self.driver.forwards(self.vm))
        return self._forwards


async def _engine_call(call: Awaitable[T]) -> T:
    """A hypervisor call made for the engine: its failure is the engine's (the VM is gone, so is its engine)."""
    try:
        return await call
    except HypervisorError as exc:
        raise EngineUnavailable(str(exc)) from None


async def engine_ready(connection: SSHClientConnection) -> None:
    """Return once the guest's Docker engine answers."""
    probe = "until docker info >/dev/null 2>&1; do sleep 0.1; done"
    command = f"timeout {ENGINE_READY_TIMEOUT_SECONDS} sh -c {shlex.quote(probe)}"
    result = await connection.run(command, check=False)
    if result.exit_status != 0:
        raise HypervisorError(f"the guest's Docker engine did not answer within {ENGINE_READY_TIMEOUT_SECONDS} s")


@dataclass
class _Connected:
    handle: NodeHandle
    connection: SSHClientConnection
    listener: SSHListener


class VmNodes(Passes):
    """`attach`/`detach` give a connected node to the reconciler, or take it back."""

    what = "VM nodes pass"
    interval = PASS_INTERVAL_SECONDS

    def __init__(
        self,
        engine: Engine,
        driver: HypervisorDriver,
        provisioner: Callable[[], Provisioner | None],  # None while no node image is built
        sockets: Path,
        attach: Callable[[NodeHandle], None],
        detach: Callable[[str], None],
        uri: str | None = None,
    ) -> None:
        """`uri`: the hypervisor on another host whose VM nodes these are (their rows' `docker_url`); None for
        this host's VM nodes of `driver`."""
        self.engine = engine
        self.uri = uri
        self.driver = driver
        self._make_provisioner = provisioner
        self.provisioner: Provisioner | None = None
        self.sockets = sockets
        self.attach = attach
        self.detach = detach
        self.connected: dict[str, _Connected] = {}
        self._busy: dict[str, asyncio.Task[None]] = {}
        super().__init__()

    def use(self, driver: HypervisorDriver, provisioner: Callable[[], Provisioner | None]) -> None:
        """Drive the VMs with `driver` from now on (a remote host's, over its new connection)."""
        self.driver = driver
        self._make_provisioner = provisioner
        self.provisioner = None

    @property
    def idle(self) -> bool:
        """Whether no work on a VM node is under way."""
        return not self._busy

    def cancel(self) -> None:
        """Stop the work under way (the daemon stops)."""
        for task in self._busy.values():
            task.cancel()

    def guest(self, name: str) -> SSHClientConnection | None:
        """The SSH connection to VM node `name`'s guest, while the node is connected (its volumes are mounted
        there through it)."""
        connected = self.connected.get(name)
        if connected is None or connected.connection.is_closed():
            return None
        return connected.connection

    async def run(self, stopping: asyncio.Event) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await self.passes(stopping)
        finally:
            self.cancel()

    async def close(self) -> None:
        """Let the VM nodes go (once the reconciler has stopped using them): the VMs keep running, and the
        next start adopts them."""
        for name in list(self.connected):
            await self._disconnect(name)

    async def sync(self) -> None:
        """One pass: act on each VM node whose state differs from what its registry row asks."""
        rows = await asyncio.to_thread(self._rows)
        for name in [n for n in self.connected if n not in {row.name for row in rows}]:
            await self._disconnect(name)
        for row in rows:
            if row.name in self._busy:
                continue
            work = self._work_for(row)
            if work is not None:
                self._busy[row.name] = asyncio.create_task(self._run(row.name, work))

    def _work_for(self, row: Node) -> Coroutine[None, None, None] | None:
        if row.state == NodeState.REMOVING:
            return self._remove(row)
        connected = self.connected.get(row.name)
        if connected is not None and not connected.connection.is_closed():
            return None
        if connected is not None:  # its SSH connection dropped: the VM died, or its network did
            if not connected.handle.lost(time.monotonic()):
                return None  # its instances wait for it until the reconciler gives them up
        if row.state == NodeState.FAILED:
            return None
        return self._bring_up(row)

    async def _run(self, name: str, work: Coroutine[None, None, None]) -> None:
        try:
            await work
        except (HypervisorError, EngineError, asyncssh.Error, OSError, ValueError) as exc:
            log.warning("VM node %s: %s", name, exc)
            await asyncio.to_thread(self._record, name, NodeState.FAILED, str(exc))
        finally:
            self._busy.pop(name, None)

    async def _bring_up(self, row: Node) -> None:
        """Define the VM if it is new, boot (or restore) it if it does not run, connect to it either way."""
        self.provisioner = self.provisioner or self._make_provisioner()
        if self.provisioner is None:
            raise HypervisorError(
                f"no node image is built; build it (strata images node-build), then: strata nodes resume {row.name}"
            )
        await self._disconnect(row.name)
        if row.name not in self.driver.names():
            await self.provisioner.create(row.name, flavor(row.flavor or "small"))
        info = await self.driver.info(row.name)
        if info.state == VmState.RUNNING:
            try:
                connection = await self._reconnect(row.name)
            except HypervisorError:
                await self.driver.stop(row.name, timeout=0)  # hung, or not what we think: boot it again
                connection = await self._boot(row.name)
        else:
            if info.state == VmState.PAUSED:
                await self.driver.stop(row.name, timeout=0)
            connection = await self._boot(row.name)
        await self._connected(row, connection)

    async def _boot(self, name: str) -> SSHClientConnection:
        assert self.provisioner is not None
        booted = await self.provisioner.boot(name)
        how = "restored from its template" if booted.restored else "booted cold"
        log.info("VM node %s %s: SSH in %.1f s, Docker in %.1f s", name, how, booted.ssh_seconds, booted.ready_seconds)
        await asyncio.to_thread(self._event, name, booted)
        return booted.connection

    async def _reconnect(self, name: str) -> SSHClientConnection:
        spec = self.driver.spec(name)
        assert self.provisioner is not None
        connection = await connect(
            spec.ssh_port, self.driver.identity(name), self.provisioner.client, RECONNECT_TIMEOUT_SECONDS
        )
        await engine_ready(connection)
        return connection

    async def _connected(self, row: Node, connection: SSHClientConnection) -> None:
        """Forward the guest's Docker socket to a local one, and give the node to the reconciler."""
        socket = self.sockets / f"{row.name}.sock"
        socket.unlink(missing_ok=True)
        listener = await connection.forward_local_path(str(socket), GUEST_DOCKER_SOCKET)
        url = f"unix://{socket}"
        host = GuestHost(self.driver, row.name, connection, self.driver.spec(row.name).ssh_port)
        runtime = DockerRuntime(row.name, url, host)
        handle = NodeHandle(runtime, self.driver.name, self.uri or url, tenant=row.tenant)  # a remote one keeps its URI
        if not await handle.refresh(self.engine):
            listener.close()
            connection.close()
            raise EngineError(f"the Docker engine of {row.name} does not answer through its forwarded socket")
        self.connected[row.name] = _Connected(handle, connection, listener)
        self.attach(handle)
        log.info("VM node %s is ready", row.name)

    async def _remove(self, row: Node) -> None:
        self.detach(row.name)
        await self._disconnect(row.name)
        await self.driver.destroy(row.name)
        await asyncio.to_thread(self._forget, row.name)
        log.info("VM node %s removed", row.name)

    async def _disconnect(self, name: str) -> None:
        connected = self.connected.pop(name, None)
        if connected is None:
            return
        await connected.handle.runtime.close()
        connected.listener.close()
        connected.connection.close()
        (self.sockets / f"{name}.sock").unlink(missing_ok=True)

    def _rows(self) -> list[Node]:
        with db.session(self.engine) as session:
            rows = registry.of_driver(session, self.driver.name)
        return [row for row in rows if (row.docker_url if is_remote(row.docker_url) else None) == self.uri]

    def _record(self, name: str, state: NodeState, message: str | None) -> None:
        with db.session(self.engine) as session:
            node = session.get(Node, name)
            if node is not None and node.state != NodeState.REMOVING:
                registry.register(
                    session,
                    "daemon",
                    Node(name=name, driver=node.driver, docker_url=node.docker_url, state=state, message=message),
                )

    def _event(self, name: str, booted: Booted) -> None:
        with db.session(self.engine) as session:
            audit.record(
                session,
                "daemon",
                "node.boot",
                None,
                node=name,
                restored=booted.restored,
                ssh_seconds=round(booted.ssh_seconds, 2),
                docker_seconds=round(booted.ready_seconds, 2),
            )
            session.commit()

    def _forget(self, name: str) -> None:
        with db.session(self.engine) as session:
            registry.forget(session, name)
