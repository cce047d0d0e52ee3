"""`ExecSession` for a Docker engine: `docker exec` through aiodocker's attached stream."""

from collections.abc import Awaitable, Callable
from typing import Any

import aiodocker

from hosting.paas.runtime import EngineError, ExecSession

Kill = Callable[[int], Awaitable[None]]  # SIGKILL a PID of the engine's machine


class DockerExec(ExecSession):
    def __init__(self, execution: Any, stream: Any, kill: Kill) -> None:
        self._exec = execution
        self._stream = stream
        self._kill = kill

    @classmethod
    async def start(cls, container: Any, command: list[str], tty: bool, kill: Kill) -> "DockerExec":
        try:
            execution = await container.exec(command, stdin=True, tty=tty)
            stream = execution.start(detach=False)
            await stream.__aenter__()
        except aiodocker.DockerError as exc:
            raise EngineError(exc.message) from None
        return cls(execution, stream, kill)

    async def read(self) -> tuple[int, bytes] | None:
        message = await self._stream.read_out()
        return None if message is None else (message.stream, message.data)

    async def write(self, data: bytes) -> None:
        await self._stream.write_in(data)

    async def close_input(self) -> None:
        # aiodocker's Stream closes both ways at once; half-close its connection to send EOF only.
        transport = self._stream._resp.connection.transport  # noqa: SLF001
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    async def resize(self, width: int, height: int) -> None:
        try:
            await self._exec.resize(w=width, h=height)
        except aiodocker.DockerError:
            pass  # the command may have ended meanwhile

    async def exit_code(self) -> int | None:
        info = await self._exec.inspect()
        return None if info["Running"] else info["ExitCode"]

    async def kill(self) -> None:
        """SIGKILL the command by the PID the engine reports (a PID of the engine's machine, killed there), and
        the process group it leads, if it leads one (with a terminal it leads a session)."""
        info = await self._exec.inspect()
        pid = info.get("Pid") if info["Running"] else None
        if pid:
            await self._kill(pid)
        await self._stream.close()
