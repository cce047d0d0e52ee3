"""Remote hosts: the daemon's side of the Docker engines of other machines, reached over SSH as a VM node's is.

Each node of driver `ssh` in the registry is logged in to (`host_login`: its recorded host key only), its engine's
unix socket forwarded to a local one, and handed to the reconciler as a node. Its containers publish on the host's
own loopback, and the front door reaches each published port through an SSH forward on this host's: an app's port is
never open on the host's network, and traffic to it is encrypted on the way.

Level-triggered, as the VM nodes are: each pass compares the registry's rows with the connections. A connection that
drops is set aside (its instances are kept for as long as an unreachable node's, then placed elsewhere) and made
again every pass until the host answers; a host that shows another host key is failed, and not tried again until an
operator resumes it. Removing a host removes this platform's containers and networks from it when it answers.
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from asyncssh import SSHClientConnection, SSHKey, SSHListener
from sqlalchemy import Engine

from hosting.iaas.net import LOOPBACK
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.host_login import HostKeyMismatch, HostUnreachable, login, public_key, shown_key
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.pause import Passes
from hosting.paas.runtime import EngineError, NodeRuntime
from hosting.paas.ssh_machine import SshMachine
from tenants import db
from tenants import nodes as registry
from tenants.enums import NodeState
from tenants.models import Node
from tenants.schemas import NodeCreate
from tenants.ssh_targets import DEFAULT_DOCKER_SOCKET, SSH_DRIVER, SshTarget, parse_target

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 5  # also how often a host that does not answer is tried again


class RemoteMachine(SshMachine):
    """A remote host: containers publish on its loopback, and each published port is reached through a local
    forward of the SSH connection on 127.0.0.1 (made on first use, closed when no container uses the port)."""

    publish_ip = LOOPBACK

    def __init__(self, name: str, connection: SSHClientConnection) -> None:
        super().__init__(f"node {name}", connection)
        self.name = name
        self._forwards: dict[int, SSHListener] = {}  # the host's port -> the listener here
        self._lock = asyncio.Lock()

    async def forward_engine(self, socket: Path, docker_socket: str) -> tuple[DockerRuntime, SSHListener]:
        """The host's engine, its unix socket `docker_socket` forwarded to `socket` here (one left there before is
        replaced), and the forward's listener, for the caller to close with the runtime. Its containers' ports, and
        an exec's kill, go through the same connection: one login a host, the leader's or a standby's."""
        socket.unlink(missing_ok=True)
        listener = await self.connection.forward_local_path(str(socket), docker_socket)
        return DockerRuntime(self.name, f"unix://{socket}", self), listener

    async def endpoint(self, port: int) -> str:
        async with self._lock:
            if port not in self._forwards:
                self._forwards[port] = await self.connection.forward_local_port(LOOPBACK, 0, LOOPBACK, port)
            return f"{LOOPBACK}:{self._forwards[port].get_port()}"

    async def retain(self, ports: set[int]) -> None:
        async with self._lock:
            for port in [p for p in self._forwards if p not in ports]:
                self._forwards.pop(port).close()


@dataclass
class _Connected:
    handle: NodeHandle
    connection: SSHClientConnection
    listener: SSHListener  # the engine's socket, forwarded


class RemoteHosts(Passes):
    """`probe` checks a host before it is recorded; `run` keeps every recorded one connected to the pool."""

    what = "remote hosts pass"
    interval = PASS_INTERVAL_SECONDS

    def __init__(self, engine: Engine, client: SSHKey, platform: str, sockets: Path, pool: NodePool) -> None:
        self.engine = engine
        self.client = client
        self.platform = platform
        self.sockets = sockets
        self.pool = pool
        self.connected: dict[str, _Connected] = {}
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._watches: set[asyncio.Task[None]] = set()
        super().__init__()

    @property
    def public_key(self) -> str:
        """What a host's `authorized_keys` must hold for the platform to log in."""
        return public_key(self.client)

    async def probe(self, spec: NodeCreate) -> str:
        """Log in to the host `spec` names and ask its engine for its capacity, leaving nothing behind; the host key
        to record (`spec.host_key`, which it must show, or else the one it shows). Raises `HostUnreachable` (or
        `EngineError` when no engine answers) with what to do."""
        assert spec.ssh is not None
        target = parse_target(spec.ssh)
        host_key = spec.host_key or await shown_key(target)
        connection = await login(target, self.client, host_key)
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        socket = self.sockets / f".probe-{secrets.token_hex(4)}.sock"  # short: a socket's path is limited
        docker_socket = spec.docker_socket or DEFAULT_DOCKER_SOCKET
        try:
            listener = await connection.forward_local_path(str(socket), docker_socket)
            runtime = DockerRuntime(spec.name, f"unix://{socket}")
            try:
                await runtime.capacity()
            except EngineError as exc:
                raise EngineError(_no_engine(target, docker_socket, exc)) from None
            finally:
                await runtime.close()
                listener.close()
        finally:
            connection.close()
            socket.unlink(missing_ok=True)
        return host_key

    async def run(self, stopping: asyncio.Event) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await self.passes(stopping)
        finally:
            for task in [*self._busy.values(), *self._watches]:
                task.cancel()

    async def close(self) -> None:
        """Let the hosts go (once the reconciler has stopped using them); their containers keep running."""
        for name in list(self.connected):
            await self._disconnect(name)

    async def sync(self) -> None:
        """One pass: connect each host that is not, remove those asked to be, and let go of those forgotten."""
        rows = await asyncio.to_thread(self._rows)
        for name in [n for n in self.connected if n not in {row.name for row in rows}]:
            self.pool.detach(name)
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
        if row.state == NodeState.FAILED:
            return None  # another host key: not tried again until an operator resumes it
        return self._connect(row)

    async def _run(self, name: str, work: Coroutine[None, None, None]) -> None:
        try:
            await work
        except HostKeyMismatch as exc:
            log.warning("remote host %s: %s", name, exc)
            await asyncio.to_thread(self._record, name, NodeState.FAILED, str(exc))
        except (HostUnreachable, EngineError, asyncssh.Error, OSError) as exc:
            log.warning("remote host %s: %s", name, exc)
            message = f"{exc}; trying again every {PASS_INTERVAL_SECONDS} s"
            await asyncio.to_thread(self._record, name, NodeState.UNREACHABLE, message)
        finally:
            self._busy.pop(name, None)

    async def _connect(self, row: Node) -> None:
        """Log in, forward the engine's socket to a local one, and give the node to the reconciler in place of
        the handle of a connection that dropped (set aside until then: its instances are kept meanwhile)."""
        if row.name in self.connected:
            self.pool.set_aside(row.name)
            await self._disconnect(row.name)
        target = parse_target(row.docker_url)
        assert row.host_key is not None and row.docker_socket is not None
        connection = await login(target, self.client, row.host_key)
        try:
            machine = RemoteMachine(row.name, connection)
            runtime, listener = await machine.forward_engine(self.sockets / f"{row.name}.sock", row.docker_socket)
            handle = NodeHandle(runtime, SSH_DRIVER, target.url, tenant=row.tenant)
            if not await handle.refresh(self.engine):
                listener.close()
                await runtime.close()
                raise EngineError(_no_engine(target, row.docker_socket, None))
        except BaseException:
            connection.close()
            raise
        self.connected[row.name] = _Connected(handle, connection, listener)
        watch = asyncio.create_task(self._watch(row.name, connection))
        self._watches.add(watch)
        watch.add_done_callback(self._watches.discard)
        self.pool.attach(handle)
        log.info("remote host %s (%s) is ready", row.name, target)

    async def _watch(self, name: str, connection: SSHClientConnection) -> None:
        """Look again as soon as the connection drops (the host went away, or its network did)."""
        await connection.wait_closed()
        if self.connected.get(name) is not None and self.connected[name].connection is connection:
            log.warning("remote host %s: the SSH connection dropped", name)
            self.nudge()

    async def _remove(self, row: Node) -> None:
        self.pool.detach(row.name)
        connected = self.connected.get(row.name)
        if connected is not None and not connected.connection.is_closed():
            await self._clear(connected.handle.runtime)
        else:
            log.warning(
                "remote host %s is removed without answering: containers of this platform may be left on it", row.name
            )
        await self._disconnect(row.name)
        await asyncio.to_thread(self._forget, row.name)
        log.info("remote host %s removed", row.name)

    async def _clear(self, runtime: NodeRuntime) -> None:
        """Remove this platform's containers and networks from the host: it stops being one of its nodes."""
        for container in await runtime.containers(self.platform):
            await runtime.remove(container.id)
        for network in await runtime.networks(self.platform):
            await runtime.remove_network(network)

    async def _disconnect(self, name: str) -> None:
        connected = self.connected.pop(name, None)
        if connected is None:
            return
        await connected.handle.runtime.close()
        connected.listener.close()
        connected.connection.close()
        with contextlib.suppress(OSError):
            (self.sockets / f"{name}.sock").unlink()

    def _rows(self) -> list[Node]:
        with db.session(self.engine) as session:
            return registry.of_driver(session, SSH_DRIVER)

    def _record(self, name: str, state: NodeState, message: str) -> None:
        """A host the platform cannot use now, and why (its capacity as last known)."""
        with db.session(self.engine) as session:
            node = session.get(Node, name)
            if node is not None and node.state != NodeState.REMOVING:
                registry.register(
                    session,
                    "daemon",
                    Node(
                        name=name, driver=node.driver, docker_url=node.docker_url, state=state, message=message,
                        cpu_millicores=node.cpu_millicores, memory_mib=node.memory_mib,
                    ),
                )  # fmt: skip

    def _forget(self, name: str) -> None:
        with db.session(self.engine) as session:
            registry.forget(session, name)


def _no_engine(target: SshTarget, socket: str, exc: Exception | None) -> str:
    why = f" ({exc})" if exc is not None else ""
    return (
        f"no Docker engine answers on {socket} at {target}{why}: install and start Docker there, give the path of its "
        "socket (--docker-socket), or let the user in to it"
    )
