"""A standby daemon's own way to the instances on remote hosts.

The leader reaches a remote host's instances through SSH forwards on its own loopback (`remote_hosts`), and records
those as their endpoints: a front door on another host cannot use them, and one on the leader's host would lose
them with the leader. So a standby logs in to each remote host its routes need — with the platform's
`host_client_key` (every daemon's home holds the same one) and only the host key recorded for it — and forwards
each port an instance there publishes (on the host's loopback, its row's `published`) to one of its own.

Logins run beside the door's refresh, never in its way: a host not yet connected is left out of this door's routes
until it is (then `connected` is called, so the door reads its routes again), and one that cannot be reached is
tried again every `RETRY_SECONDS`. Whether its instances live is the leader's to judge, not a standby's.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncssh
from asyncssh import SSHKey

from hosting.paas.host_login import HostUnreachable, login
from hosting.paas.remote_hosts import RemoteMachine
from tenants.ssh_targets import parse_target

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class HostAddress:
    """How a remote host is logged in to, as its node row says."""

    name: str
    target: str  # USER@HOST:PORT
    host_key: str


class Tunnels:
    """Forwards of this daemon's own to remote hosts' published ports; `connected` is called (in the loop) when a
    host's login succeeded."""

    def __init__(
        self, client: SSHKey, connected: Callable[[], None], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.client, self.connected, self.monotonic = client, connected, monotonic
        self._machines: dict[HostAddress, RemoteMachine] = {}
        self._logins: dict[HostAddress, asyncio.Task[None]] = {}
        self._retry_at: dict[HostAddress, float] = {}

    async def endpoints(
        self, wanted: Mapping[HostAddress, set[int]], *, every: bool = False
    ) -> dict[tuple[str, int], str]:
        """HOST:PORT here for each (host's name, published port) wanted, of the hosts connected now; logins begun
        for the others. When `wanted` is `every` one this door routes to, the hosts and forwards not in it are let
        go."""
        if every:
            for host in [h for h in self._machines if h not in wanted]:
                self._machines.pop(host).connection.close()
            for host in [h for h in self._logins if h not in wanted]:
                self._logins.pop(host).cancel()
        found: dict[tuple[str, int], str] = {}
        for host, ports in wanted.items():
            machine = self._machines.get(host)
            if machine is not None and machine.connection.is_closed():
                log.warning("the SSH connection to remote host %s dropped; logging in again", host.name)
                del self._machines[host]
                machine = None
            if machine is None:
                self._log_in(host)
                continue
            try:
                if every:
                    await machine.retain(ports)
                for port in ports:
                    found[(host.name, port)] = await machine.endpoint(port)
            except (asyncssh.Error, OSError) as exc:
                log.warning("no forward to remote host %s: %s", host.name, exc)
                machine.connection.close()  # logged in to again at the next refresh
        return found

    async def close(self) -> None:
        for task in self._logins.values():
            task.cancel()
        for machine in self._machines.values():
            machine.connection.close()
        self._logins.clear()
        self._machines.clear()

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
            log.warning("remote host %s: %s; trying again in %.0f s", host.name, exc, RETRY_SECONDS)
            self._retry_at[host] = self.monotonic() + RETRY_SECONDS
            return
        self._retry_at.pop(host, None)
        with contextlib.suppress(KeyError):
            self._machines.pop(host).connection.close()
        self._machines[host] = RemoteMachine(host.name, connection)
        self.connected()
