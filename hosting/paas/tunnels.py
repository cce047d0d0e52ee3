"""A standby daemon's own way to the instances on remote hosts, and to their engines.

The leader reaches a remote host's instances through SSH forwards on its own loopback (`remote_hosts`), and records
those as their endpoints: a front door on another host cannot use them, and one on the leader's host would lose
them with the leader. So a standby logs in to each remote host its routes need — with the platform's
`host_client_key` (every daemon's home holds the same one) and only the host key recorded for it — and forwards
each port an instance there publishes (on the host's loopback, its row's `published`) to one of its own. The same
connection forwards the host's Docker socket to one in `sockets` here (as the leader's does), so this daemon's API
reaches the host's engine for what a user asks of an instance there (its logs, a shell in it): `runtime`.

Logins run beside the door's refresh, never in its way: a host not yet connected is left out of this door's routes
until it is (then `connected` is called, so the door reads its routes again), and one that cannot be reached is
tried again every `RETRY_SECONDS`. Whether its instances live is the leader's to judge, not a standby's. A host
with instances is logged in to even if none publishes a port: its engine is wanted all the same.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from asyncssh import SSHKey, SSHListener

from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.host_login import HostUnreachable, login
from hosting.paas.remote_hosts import RemoteMachine
from hosting.paas.runtime import EngineUnavailable, NodeRuntime
from tenants.ssh_targets import parse_target

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class HostAddress:
    """How a remote host is logged in to, as its node row says."""

    name: str
    target: str  # USER@HOST:PORT
    host_key: str
    docker_socket: str  # the engine's, on the host


@dataclass
class _LoggedIn:
    machine: RemoteMachine
    runtime: DockerRuntime
    listener: SSHListener  # the engine's socket, forwarded

    def closed(self) -> bool:
        return self.machine.connection.is_closed()

    async def close(self) -> None:
        try:
            await self.runtime.close()
        finally:
            self.listener.close()
            self.machine.connection.close()


class Tunnels:
    """Forwards of this daemon's own to remote hosts' published ports and engines, their sockets in `sockets`;
    `connected` is called (in the loop) when a host's login succeeded."""

    def __init__(
        self,
        client: SSHKey,
        connected: Callable[[], None],
        sockets: Path,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.connected, self.sockets, self.monotonic = client, connected, sockets, monotonic
        self._logged_in: dict[HostAddress, _LoggedIn] = {}
        self._logins: dict[HostAddress, asyncio.Task[None]] = {}
        self._retry_at: dict[HostAddress, float] = {}
        self._refused: set[str] = set()  # hosts' names whose last login failed (why is in the log)
        self._wanted: set[str] = set()  # the hosts' names last wanted

    def __contains__(self, node: object) -> bool:
        """Whether `node` is a remote host this daemon's door logs in to (it has instances)."""
        return node in self._wanted

    def runtime(self, node: str) -> NodeRuntime:
        """The engine of remote host `node` through this daemon's own login. `EngineUnavailable`, naming the node
        and why, when there is none now (a login under way, or refused): never another daemon's."""
        logged = next((m for h, m in self._logged_in.items() if h.name == node), None)
        if logged is not None and not logged.closed():
            return logged.runtime
        if logged is not None:
            why = "its SSH connection dropped; this daemon logs in again"
        elif node in self._refused:  # what failed (a user, a key, an address) is the operator's, in the log
            why = f"its login failed (this daemon's log says why); tried again every {RETRY_SECONDS:.0f} s"
        elif any(host.name == node for host in self._logins):
            why = "this daemon is logging in to it; ask again in a moment"
        else:
            why = "this daemon is not logged in to it (yet); ask again in a moment"
        raise EngineUnavailable(f"remote host {node} is not reached from this daemon: {why}")

    async def endpoints(
        self, wanted: Mapping[HostAddress, set[int]], *, every: bool = False
    ) -> dict[tuple[str, int], str]:
        """HOST:PORT here for each (host's name, published port) wanted, of the hosts connected now; logins begun
        for the others. When `wanted` is `every` one this door routes to, the hosts and forwards not in it are let
        go."""
        if every:
            self._wanted = {host.name for host in wanted}
            self._refused &= self._wanted
            for host in [h for h in self._logged_in if h not in wanted]:
                await self._logged_in.pop(host).close()
            for host in [h for h in self._logins if h not in wanted]:
                self._logins.pop(host).cancel()
        else:
            self._wanted |= {host.name for host in wanted}
        found: dict[tuple[str, int], str] = {}
        for host, ports in wanted.items():
            logged = self._logged_in.get(host)
            if logged is not None and logged.closed():
                log.warning("the SSH connection to remote host %s dropped; logging in again", host.name)
                await self._logged_in.pop(host).close()
                logged = None
            if logged is None:
                self._log_in(host)
                continue
            try:
                if every:
                    await logged.machine.retain(ports)
                for port in ports:
                    found[(host.name, port)] = await logged.machine.endpoint(port)
            except (asyncssh.Error, OSError) as exc:
                log.warning("no forward to remote host %s: %s", host.name, exc)
                logged.machine.connection.close()  # logged in to again at the next refresh
        return found

    async def close(self) -> None:
        for task in self._logins.values():
            task.cancel()
        for logged in self._logged_in.values():
            await logged.close()
        self._logins.clear()
        self._logged_in.clear()
        self._wanted.clear()

    def _log_in(self, host: HostAddress) -> None:
        if host in self._logins or self.monotonic() < self._retry_at.get(host, 0.0):
            return
        task = asyncio.create_task(self._login(host))
        self._logins[host] = task
        task.add_done_callback(lambda _: self._logins.pop(host, None) if self._logins.get(host) is task else None)

    async def _login(self, host: HostAddress) -> None:
        try:
            connection = await login(parse_target(host.target), self.client, host.host_key)
        except HostUnreachable as exc:
            self._refuse(host, str(exc))
            return
        machine = RemoteMachine(host.name, connection)
        try:
            self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
            socket = self.sockets / f"standby-{host.name}.sock"  # not the leader's: this daemon may lead again
            runtime, listener = await machine.forward_engine(socket, host.docker_socket)
        except (asyncssh.Error, OSError) as exc:
            connection.close()
            self._refuse(host, f"its engine's socket was not forwarded: {exc}")
            return
        except BaseException:  # cancelled (the host no longer wanted, this daemon leads): nothing is left open
            connection.close()
            raise
        self._retry_at.pop(host, None)
        self._refused.discard(host.name)
        with contextlib.suppress(KeyError):
            await self._logged_in.pop(host).close()
        self._logged_in[host] = _LoggedIn(machine, runtime, listener)
        self.connected()

    def _refuse(self, host: HostAddress, why: str) -> None:
        log.warning("remote host %s: %s; trying again in %.0f s", host.name, why, RETRY_SECONDS)
        self._retry_at[host] = self.monotonic() + RETRY_SECONDS
        self._refused.add(host.name)
