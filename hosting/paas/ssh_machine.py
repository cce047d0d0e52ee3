"""The machine of an engine the platform reaches over SSH (a VM node's guest, a remote host): an exec's process
is killed there, and its containers' cgroup files and its routes read there, each by one command on the SSH
connection."""

import asyncio

import asyncssh
from asyncssh import SSHClientConnection

from hosting.paas.cgroups import guest_command, guest_input, parse_dump
from hosting.paas.docker_runtime import EngineHost
from hosting.paas.runtime import EngineUnavailable
from hosting.paas.subnets import parse_routes

COMMAND_SECONDS = 10.0  # for one command there


class SshMachine(EngineHost):
    """`kill` and `cgroup_files` over `connection`; where ports publish and how they are reached is the
    subclass's. `described` names the machine in errors."""

    def __init__(self, described: str, connection: SSHClientConnection) -> None:
        self.described = described
        self.connection = connection

    async def kill(self, pid: int) -> None:
        await self.connection.run(f"kill -KILL -{pid} 2>/dev/null || kill -KILL {pid}", check=False)

    async def cgroup_files(self, paths: list[str]) -> dict[str, str]:
        """One command on the machine for all of them, whatever their number (the paths on its stdin)."""
        return parse_dump(await self._output(guest_command(), guest_input(paths)))

    async def routes(self) -> list[str]:
        return parse_routes(await self._output("cat /proc/net/route"))

    async def _output(self, command: str, stdin: str | None = None) -> str:
        try:
            result = await asyncio.wait_for(self.connection.run(command, input=stdin, check=False), COMMAND_SECONDS)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"{self.described} does not answer: {exc or type(exc).__name__}") from None
        return str(result.stdout or "")
