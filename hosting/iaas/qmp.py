"""One QMP session with a running QEMU, through `qemu.qmp`: commands, HMP passthrough, errors as ours.

QEMU serves one QMP client at a time on its socket, so callers hold a session only for what they do.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from qemu.qmp import ExecInterruptedError, QMPClient, QMPError

from hosting.iaas.driver import HypervisorError


class Qmp:
    def __init__(self, client: QMPClient, vm: str) -> None:
        self._client = client
        self._vm = vm

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return await self._client.execute(command, arguments)
        except ExecInterruptedError:
            if command == "quit":
                return None  # QEMU closes the socket as it quits: that is the answer
            raise HypervisorError(f"VM {self._vm}: QEMU went away during {command}") from None
        except QMPError as exc:
            raise HypervisorError(f"VM {self._vm}: {command} failed: {exc}") from None

    async def hmp(self, command_line: str) -> str:
        """A human monitor command (for what QMP lacks, such as `hostfwd_add`); returns its output."""
        return await self.execute("human-monitor-command", {"command-line": command_line})


@asynccontextmanager
async def qmp_session(socket: Path, vm: str) -> AsyncIterator[Qmp]:
    client = QMPClient(vm)
    try:
        await client.connect(str(socket))
    except QMPError as exc:
        raise HypervisorError(f"VM {vm}: no QMP on {socket} ({exc})") from None
    try:
        yield Qmp(client, vm)
    finally:
        try:
            await client.disconnect()
        except (QMPError, EOFError, OSError):
            pass  # after `quit` the other side is gone already
