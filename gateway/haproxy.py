"""The HAProxy process: started in a session of its own, so that it outlives the daemon that started it, and
adopted by the next daemon through its pid file and master CLI.

HAProxy runs in master-worker mode: the master reloads the configuration by starting a new worker, which takes
the listening sockets over from the old one (`expose-fd listeners`), while the old worker finishes its requests
— a reload fails no request. Its stdout is the access log's FIFO (`gateway.accesslog`), its stderr
`haproxy.log`.
"""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from gateway import runtime
from gateway.config import Files

log = logging.getLogger(__name__)

BINARY = "haproxy"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.02


class HAProxyError(Exception):
    """HAProxy would not start, reload or accept a configuration; the message says why."""


class HAProxy:
    def __init__(self, files: Files, error_log: Path) -> None:
        self.files = files
        self.error_log = error_log
        self._child: subprocess.Popen[bytes] | None = None
        self._master: int | None = None  # the master's pid once known: it keeps it across reloads

    def pid(self) -> int | None:
        """The master's pid if it runs with our configuration, else None (a stale pid file is not trusted).
        Known once found: the master rewrites its pid file on every reload, and keeps its pid."""
        for pid in (self._master, self._pid_file()):
            if pid is None:
                continue
            if self._child is not None and self._child.pid == pid and self._child.poll() is not None:
                continue  # our child, exited (and now reaped)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(self.files.config).encode() in cmdline and b"-W" in cmdline:
                self._master = pid
                return pid
        self._master = None
        return None

    def _pid_file(self) -> int | None:
        try:
            return int(self.files.pid.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    async def check(self, config: Path) -> None:
        """Refuse a configuration HAProxy would not load, with its own words."""
        try:
            await _run(BINARY, "-c", "-q", "-f", str(config))
        except HAProxyError as exc:
            raise HAProxyError(f"the front door's configuration is invalid: {exc}") from None

    async def start(self, stdout: int) -> int:
        """Start the master with the configuration on disk, its log lines to `stdout` (the access log's FIFO);
        returns once its worker answers the runtime API."""
        with open(self.error_log, "ab") as errors:
            self._child = subprocess.Popen(
                [BINARY, "-W", "-S", f"{self.files.master_socket},mode,600", "-f", str(self.files.config)]
                + ["-p", str(self.files.pid)],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=errors,
                start_new_session=True,  # a Ctrl-C or a stop of the daemon's group does not reach it
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                raise HAProxyError(f"HAProxy exited with {self._child.returncode}: {self._last_error()}")
            if await self._worker_pid() is not None and await self.answers():
                self._master = self._child.pid
                log.info("front door: HAProxy started (pid %d)", self._child.pid)
                return self._child.pid
            await asyncio.sleep(POLL_SECONDS)
        raise HAProxyError(f"HAProxy did not answer within {START_TIMEOUT_SECONDS:.0f} s: {self._last_error()}")

    async def reload(self) -> None:
        """Load the configuration on disk into a new worker; returns once that worker answers."""
        old = await self._worker_pid()
        failed = _failed_reloads(await self._processes())
        await runtime.command(self.files.master_socket, "reload")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            worker = await self._worker_pid()
            if worker is not None and worker != old:
                return
            if _failed_reloads(await self._processes()) > failed:
                raise HAProxyError(f"HAProxy refused the new configuration: {self._last_error()}")
            await asyncio.sleep(POLL_SECONDS)
        raise HAProxyError(f"HAProxy did not reload within {START_TIMEOUT_SECONDS:.0f} s: {self._last_error()}")

    async def old_workers(self) -> int:
        """Workers of earlier configurations still finishing their requests."""
        processes = await self._processes()
        old = processes.partition("# old workers")[2].partition("#")[0]
        return sum(1 for line in old.splitlines() if line.strip() and line.split()[0].isdigit())

    async def stop(self) -> None:
        """Stop the master and its workers (by the master's pid), waiting for them to end."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._child is not None and self._child.pid == pid:
                if self._child.poll() is not None:
                    return
            elif not Path(f"/proc/{pid}").exists():
                return
            await asyncio.sleep(POLL_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    async def answers(self) -> bool:
        """Whether a master answers on our master CLI (it does through a reload, when its pid file does not)."""
        return "master" in await self._processes()

    async def _processes(self) -> str:
        """The master's `show proc`; empty while it re-executes itself (every reload does)."""
        try:
            return await runtime.command(self.files.master_socket, "show proc")
        except runtime.HAProxyError:
            return ""

    async def _worker_pid(self) -> int | None:
        try:
            info = await runtime.command(self.files.runtime_socket, "show info")
        except runtime.HAProxyError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid: "):
                return int(line.removeprefix("Pid: "))
        return None

    def _last_error(self) -> str:
        try:
            lines = self.error_log.read_text(errors="replace").splitlines()
        except OSError:
            return "no output"
        alerts = [line for line in lines[-20:] if "ALERT" in line]
        return " | ".join(alerts[-3:] or lines[-3:]) or "no output"


def _failed_reloads(processes: str) -> int:
    """The master's count of failed reloads, from `show proc` (`<pid> master <n> [failed: <f>] ...`)."""
    for line in processes.splitlines():
        if " master " in f" {line} " and "[failed: " in line:
            return int(line.partition("[failed: ")[2].partition("]")[0])
    return 0


async def _run(*argv: str) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except FileNotFoundError:
        raise HAProxyError(f"{argv[0]} is not installed: run `make install` (Debian's haproxy)") from None
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        alerts = [line.split(" : ", 1)[-1] for line in text.splitlines() if "ALERT" in line]
        raise HAProxyError(" | ".join(alerts[:3]) or text.strip()[:300])
    return text
