"""The machine of an engine the platform reaches over SSH (a VM node's guest, a remote host): an exec's process
is killed there, and its containers' cgroup files read there, each by one command on the SSH connection."""

import asyncio

import asyncssh
from asyncssh import SSHClientConnection

from hosting.paas.cgroups import guest_command, guest_input, parse_dump
from hosting.paas.docker_runtime import EngineHost
from hosting.paas.runtime import EngineUnavailable

COMMAND_SECONDS = 10.0  # the machine's cgroup files, read in one command


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
        command = self.connection.run(guest_command(), input=guest_input(paths), check=False)
        try:
            result = await asyncio.wait_for(command, COMMAND_SECONDS)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"{self.described} does not answer: {exc or type(exc).__name__}") from None
        return parse_dump(str(result.stdout or ""))
